"""Why not BatchNorm in a causal language model: in training mode its statistics pool every
token of every sequence in the batch, so a position's output depends on what it must not see.

Two leaks, each the largest absolute change of logits that should not change:

* **future**: only the tokens after ``position`` change; the logits at positions ≤ ``position``
  (a causal model's earlier predictions) should stay put;
* **batch**: every sequence but the first changes; the first sequence's logits should stay put.

In eval mode BatchNorm uses its running statistics and both leaks are 0, as they are for
LayerNorm in either mode.
"""

from __future__ import annotations

import pandas as pd
import torch

from normcore.lab.text_corpus import load_corpus
from normcore.lab.transformer_norms import TRANSFORMER_NORM_LABELS

from normcore.lab.experiments.transformers.part2_options import NormOptions


@torch.no_grad()
def future_leak(model, tokens: torch.Tensor, position: int, replacement: torch.Tensor) -> float:
    """Largest |Δ logit| at positions ≤ ``position`` when the tokens after it become ``replacement``'s."""
    changed = tokens.clone()
    changed[:, position + 1:] = replacement[:, position + 1:]
    return float((model(tokens)[:, :position + 1] - model(changed)[:, :position + 1]).abs().max())


@torch.no_grad()
def batch_leak(model, tokens: torch.Tensor, replacement: torch.Tensor) -> float:
    """Largest |Δ logit| of the first sequence when every other sequence becomes ``replacement``'s."""
    changed = tokens.clone()
    changed[1:] = replacement[1:]
    return float((model(tokens)[0] - model(changed)[0]).abs().max())


def leak_table(o: NormOptions) -> pd.DataFrame:
    """Both leaks for BatchNorm and LayerNorm models (the comparison's weights, at initialization),
    in training and eval mode, on two validation batches (the second supplies the replacements)."""
    from normcore.lab.experiments.transformers.norm_comparison import norm_config

    corpus = load_corpus()
    tokens, other = (x for x, _ in corpus.batches("validation", 2, o.batch_size, o.context, seed=o.seed))
    rows = []
    for norm in ("batch", "layer"):
        model = norm_config(o, norm).build_model(corpus.vocab_size)
        for mode in ("train", "eval"):
            model.train(mode == "train")
            rows.append(dict(norm=TRANSFORMER_NORM_LABELS[norm], mode=mode,
                             future_leak=future_leak(model, tokens, o.context // 2 - 1, other),
                             batch_leak=batch_leak(model, tokens, other)))
    return pd.DataFrame(rows, columns=["norm", "mode", "future_leak", "batch_leak"])


__all__ = ["batch_leak", "future_leak", "leak_table"]
