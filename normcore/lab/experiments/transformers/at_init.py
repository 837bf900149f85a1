"""At initialization: where the norm sits, and the gradients each block gets (Xiong et al. 2020).

One backward pass per (placement, seed) of a freshly initialised :class:`TinyGPT` on random
tokens (uniform over the corpus's characters), next-token loss; read per block
(``probes.probe_rows``): the FFN output weight's gradient norm (Xiong's Fig. 3) and the
residual stream's norm after the block. Nothing trains.

* :func:`block_gradients`: every block at one depth, for post-, pre- and peri-LN;
* :func:`depth_sweep`: the last block's gradient for each placement at several depths, for
  each init, and post / pre against √L (Theorem 1: post-LN's gradient near the output is
  larger by about √L under Xavier init).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import pandas as pd
import torch

from normcore.lab import devices
from normcore.lab.text_corpus import load_corpus
from normcore.lab.transformer import INIT_LABELS, PLACEMENT_LABELS, PLACEMENTS

from normcore.lab.experiments.transformers.options import INIT_FIELDS, InitOptions
from normcore.lab.experiments.transformers.probes import probe_rows
from normcore.lab.experiments.transformers.run_config import LMRunConfig
from normcore.lab.experiments.transformers.training import next_token_loss

SWEEP_DEPTHS = (2, 3, 6, 12, 24, 48)  # the depth chart's x (capped at the options' max_depth)
SWEEP_PLACEMENTS = PLACEMENTS  # post, pre and peri (the ratio is post / pre)
ONE_THREAD = devices.Target("cpu", 1)  # small matrices: one thread beats two, most of all on a busy machine
Progress = Callable[[float], None]  # the fraction of the work done, 0 to 1


def random_tokens(vocab_size: int, batch_size: int, context: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets): uniform random token ids, the targets shifted by one."""
    g = torch.Generator().manual_seed(10_000 + int(seed))
    tokens = torch.randint(vocab_size, (batch_size, context + 1), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


def _config(options: InitOptions, placement: str, depth: int, init: str, seed: int) -> LMRunConfig:
    return LMRunConfig(norm=options.norm, placement=placement, init=init, impl=options.impl, eps=options.eps,
                       d_model=options.width, n_heads=options.heads, n_layers=depth, context=options.context,
                       batch_size=options.batch_size, seed=seed)


def init_profile(config: LMRunConfig, vocab_size: int) -> list[dict]:
    """Probe rows (one per block) of one backward pass at initialization, in train mode."""
    model = config.build_model(vocab_size).train()
    x, y = random_tokens(vocab_size, config.batch_size, config.context, config.seed)
    with model.recording():
        loss = next_token_loss(model(x), y)
    loss.backward()
    return probe_rows(model, step=0)


def _profiles(options: InitOptions, placements, depths, inits, on_progress: Progress | None = None) -> pd.DataFrame:
    """Probe rows of every (init, depth, placement, seed); ``on_progress(fraction)`` after each
    backward pass, the fraction counted in blocks differentiated (a deep model counts more)."""
    vocab = load_corpus().vocab_size
    rows, done, total = [], 0, len(inits) * len(placements) * options.seeds * sum(depths)
    with devices.placed(ONE_THREAD):
        for init in inits:
            for depth in depths:
                for placement in placements:
                    for seed in range(options.seeds):
                        for row in init_profile(_config(options, placement, depth, init, seed), vocab):
                            rows.append(dict(init=init, depth=depth, placement=placement, seed=seed) | row)
                        done += depth
                        if on_progress is not None:
                            on_progress(done / total)
    frame = pd.DataFrame(rows)
    frame["placement_label"] = frame["placement"].map(PLACEMENT_LABELS)
    return frame


def _mean_over_seeds(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    values = ["ffn_grad_norm", "grad_norm", "residual_norm"]
    return frame.groupby(keys + ["placement_label"], sort=False, as_index=False)[values].mean()


@dataclass(frozen=True)
class BlockGradients:
    """Per (placement, block): the FFN output weight's gradient norm, the whole block's, and the
    residual stream's norm, each the mean over seeds; ``sentence`` says what they show."""

    blocks: pd.DataFrame
    sentence: str


def block_gradients(options: InitOptions, on_progress: Progress | None = None) -> BlockGradients:
    """Every block at ``options.depth`` for post-, pre- and peri-LN (the first view)."""
    frame = _profiles(options, PLACEMENTS, (options.depth,), (options.init,), on_progress)
    blocks = _mean_over_seeds(frame, ["placement", "block"])
    return BlockGradients(blocks, block_sentence(blocks, options))


def block_sentence(blocks: pd.DataFrame, options: InitOptions) -> str:
    last = blocks[blocks["block"] == options.depth].set_index("placement")["ffn_grad_norm"]
    first = blocks[blocks["block"] == 1].set_index("placement")["ffn_grad_norm"]
    post, pre, peri = (float(last[p]) for p in ("post", "pre", "peri"))
    trend = {p: float(last[p] / first[p]) for p in ("post", "pre")}
    return (f"At depth {options.depth} ({INIT_LABELS[options.init]} init), the last block's FFN output weight gets a "
            f"gradient of norm {post:.3g} with post-LN, {pre:.3g} with pre-LN and {peri:.3g} with peri-LN: post / pre = "
            f"{post / pre:.2g}, against √L = {math.sqrt(options.depth):.2g}. From the first block to the last, the "
            f"gradient changes ×{trend['post']:.2g} with post-LN and ×{trend['pre']:.2g} with pre-LN.")


@dataclass(frozen=True)
class DepthSweep:
    """``last_block``: per (init, depth, placement), the last block's FFN gradient norm (mean over
    seeds); ``ratios``: per (init, depth), post / pre and √depth; ``residual``: the residual
    stream's norm per block at the largest depth; a sentence about the ratios and one about the stream."""

    last_block: pd.DataFrame
    ratios: pd.DataFrame
    residual: pd.DataFrame
    sentence: str
    residual_sentence: str


def sweep_depths(max_depth: int) -> tuple[int, ...]:
    return tuple(d for d in SWEEP_DEPTHS if d <= max_depth) or (max_depth,)


def sweep_options(options: InitOptions) -> InitOptions:
    """The options :func:`depth_sweep` reads (its cache key): it runs both inits, so not the chosen one."""
    return replace(options, init=INIT_FIELDS["init"].default)


def depth_sweep(options: InitOptions, inits=("xavier", "gpt2"), on_progress: Progress | None = None) -> DepthSweep:
    """Each placement at each of :func:`sweep_depths` up to ``options.depth``, for each init;
    ``on_progress(fraction)`` as it goes."""
    depths = sweep_depths(options.depth)
    frame = _profiles(options, SWEEP_PLACEMENTS, depths, inits, on_progress)
    last = _mean_over_seeds(frame[frame["block"] == frame["depth"]], ["init", "depth", "placement"])
    wide = last.pivot_table(index=["init", "depth"], columns="placement", values="ffn_grad_norm").reset_index()
    ratios = pd.DataFrame({"init": wide["init"], "depth": wide["depth"], "ratio": wide["post"] / wide["pre"],
                           "sqrt_depth": wide["depth"] ** 0.5})
    ratios["init_label"] = ratios["init"].map(INIT_LABELS)
    last["init_label"] = last["init"].map(INIT_LABELS)
    deepest = frame[frame["depth"] == depths[-1]]
    residual = _mean_over_seeds(deepest, ["init", "placement", "block"])
    residual["init_label"] = residual["init"].map(INIT_LABELS)
    return DepthSweep(last, ratios, residual, sweep_sentence(ratios), residual_sentence(residual))


def sweep_sentence(ratios: pd.DataFrame) -> str:
    parts = []
    for init, group in ratios.groupby("init", sort=False):
        low, high = group.iloc[0], group.iloc[-1]
        parts.append(f"with {INIT_LABELS[init]} init, post / pre goes from {low.ratio:.2g} at depth {int(low.depth)} "
                     f"to {high.ratio:.2g} at depth {int(high.depth)} (√L: {low.sqrt_depth:.2g} to {high.sqrt_depth:.2g})")
    return "The last block's FFN gradient, post-LN over pre-LN: " + "; ".join(parts) + "."


def residual_sentence(residual: pd.DataFrame) -> str:
    """How the residual stream's norm changes from the first block to the last, per init and placement."""
    parts = []
    for init, group in residual.groupby("init", sort=False):
        growth = ", ".join(f"{PLACEMENT_LABELS[p]} {g.residual_norm.iloc[0]:.3g} → {g.residual_norm.iloc[-1]:.3g}"
                           for p, g in group.sort_values("block").groupby("placement", sort=False))
        parts.append(f"with {INIT_LABELS[init]} init, {growth}")
    depth = int(residual["block"].max())
    return f"The residual stream's mean norm per token, from block 1 to block {depth}: " + "; ".join(parts) + "."


__all__ = ["BlockGradients", "DepthSweep", "SWEEP_DEPTHS", "block_gradients", "depth_sweep", "init_profile",
           "random_tokens", "sweep_depths", "sweep_options"]
