"""The single-process reference: gradient accumulation over k micro-batches of B against one
batch of k·B, for BatchNorm and GroupNorm.

Accumulating the gradients of k micro-batches (each loss divided by k) gives the gradient of
the k·B samples' mean loss only when each sample's output does not depend on the others: true
for GroupNorm, false for BatchNorm, which normalizes each micro-batch with its own statistics.
That is exactly DDP with local BN over k workers of B each; one batch of k·B is what SyncBN
reproduces.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from normcore.lab import datasets, models

K_VALUES = (1, 2, 4, 8)
NORM_NAMES = {"batch": "BatchNorm", "group": "GroupNorm"}


def _gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, micro_batches: int) -> torch.Tensor:
    """The flattened gradient of the mean loss, accumulated over ``micro_batches`` equal parts."""
    model.zero_grad(set_to_none=True)
    for xs, ys in zip(x.chunk(micro_batches), y.chunk(micro_batches)):
        (nn.functional.cross_entropy(model(xs), ys) / micro_batches).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def accumulation_table(per_batch: int, model: str = "mlp", width: int = 64, depth: int = 2, seed: int = 0,
                       k_values=K_VALUES, groups: int = 4) -> pd.DataFrame:
    """For each norm and k: how far k accumulated micro-batches of ``per_batch`` are from one
    batch of k·``per_batch`` (relative gradient difference), on the same fresh model and samples."""
    split = datasets.load_digits_split(seed)
    rows = []
    for norm, name in NORM_NAMES.items():
        net = models.make_model(model, norm=norm, impl="normcore", width=width, depth=depth, num_groups=groups,
                                seed=seed).double().train()
        for k in k_values:
            n = k * per_batch
            x, y = split.x_train[:n].double(), split.y_train[:n]
            one = _gradient(net, x, y, 1)
            accumulated = _gradient(net, x, y, k)
            rows.append({"Normalization": name, "k micro-batches": k, "Samples": n,
                         "Relative gradient difference": ((accumulated - one).norm() / one.norm()).item()})
    return pd.DataFrame(rows)
