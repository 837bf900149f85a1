"""The normalizations a :class:`~normcore.lab.transformer.TinyGPT` can use, from normcore or torch.nn.

=======  ==========================================  =====================================
norm     normcore                                     torch
=======  ==========================================  =====================================
layer    normcore.LayerNorm                           torch.nn.LayerNorm
rms      normcore.RMSNorm                             torch.nn.RMSNorm
batch    normcore.BatchNorm1d over batch × time       torch.nn.BatchNorm1d over batch × time
dyt      normcore.DynamicTanh                         normcore.DynamicTanh (torch has none)
none     torch.nn.Identity                            torch.nn.Identity
=======  ==========================================  =====================================

``eps=None`` keeps each layer's torch default (1e-5 for LayerNorm and BatchNorm; RMSNorm's
None, the dtype's machine epsilon). DynamicTanh and the identity take no eps.

BatchNorm in a causal decoder is the odd one out: its statistics pool every token of every
sequence in the batch, so in training a token's output depends on later tokens (part 2 of the
page shows what that costs). :class:`TimeBatchNorm` flattens (B, T, C) to (B·T, C) for it.
"""

from __future__ import annotations

import torch
from torch import nn

import normcore

NORMS = ("layer", "rms", "dyt", "none", "batch")
TRANSFORMER_NORM_LABELS = {"layer": "LayerNorm", "rms": "RMSNorm", "dyt": "Dynamic Tanh", "none": "No normalization",
               "batch": "BatchNorm (over batch × time)"}
IMPLS = ("normcore", "torch")
QK_NORMS = (None, "layer", "rms")


class TimeBatchNorm(nn.Module):
    """BatchNorm1d over every (sample, position) of a (B, T, C) input: statistics per channel
    across the batch and the sequence. The inner layer is ``self.bn`` (its state_dict keys are
    ``bn.weight``, ``bn.running_mean`` ...)."""

    def __init__(self, bn: nn.Module):
        super().__init__()
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def make_norm(norm: str, width: int, impl: str = "normcore", eps: float | None = None,
              dyt_alpha: float = 0.5) -> nn.Module:
    """One normalization of ``width`` features (the last dim) of the kind ``norm``
    (``dyt_alpha``: DynamicTanh's initial α)."""
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}; choose one of {', '.join(NORMS)}.")
    if impl not in IMPLS:
        raise ValueError(f"Unknown impl {impl!r}; choose normcore or torch.")
    if norm == "none":
        return nn.Identity()
    if norm == "dyt":
        return normcore.DynamicTanh(width, dyt_alpha)
    lib = normcore if impl == "normcore" else nn
    if norm == "rms":
        return lib.RMSNorm(width, eps=eps)
    kwargs = {} if eps is None else {"eps": eps}
    if norm == "layer":
        return lib.LayerNorm(width, **kwargs)
    return TimeBatchNorm(lib.BatchNorm1d(width, **kwargs))


__all__ = ["IMPLS", "NORMS", "TRANSFORMER_NORM_LABELS", "QK_NORMS", "TimeBatchNorm", "make_norm"]
