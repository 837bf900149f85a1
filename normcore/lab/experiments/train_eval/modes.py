"""A layer's two modes as the scenarios measure them: a training step, a peek at the training
output, the eval output, and how many warm-up steps the running statistics need."""

from __future__ import annotations

import math

import torch

from normcore.functional import batch_norm
from normcore.lab import limits


def has_running_stats(layer) -> bool:
    return getattr(layer, "running_mean", None) is not None


@torch.no_grad()
def train_step(layer, x: torch.Tensor) -> torch.Tensor:
    """One training-mode forward pass: batch statistics, running statistics updated."""
    layer.train()
    return layer(x)


@torch.no_grad()
def train_output(layer, x: torch.Tensor) -> torch.Tensor:
    """The training-mode output, leaving the running statistics as they were (a peek)."""
    saved = [b.clone() for b in layer.buffers()]
    y = train_step(layer, x)
    for b, old in zip(layer.buffers(), saved):
        b.copy_(old)
    return y


@torch.no_grad()
def eval_output(layer, x: torch.Tensor) -> torch.Tensor:
    layer.eval()
    return layer(x)


def mean_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().mean())


def normalize_with(layer, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """What the layer would output in eval if its running statistics were exactly (mean, var)."""
    return batch_norm(x, mean.float(), var.float(), layer.weight, layer.bias, False, 0.0, layer.eps).detach()


def warmup_steps(momentum: float | None) -> int:
    """Warm-up before a measurement: until the initial running values weigh < 1%, i.e.
    (1 − m)^k < 0.01, capped at limits.MAX_WARMUP. A cumulative average (None) forgets them at once
    but averages 50 batches; momentum 0 never moves, so warming up would change nothing."""
    if momentum is None:
        return 50
    k = closed_form_warmup(momentum)
    return 0 if k is None else min(k, limits.MAX_WARMUP)


def closed_form_warmup(momentum: float | None) -> int | None:
    """The first k with (1 − m)^k < 1%; a cumulative average (None) replaces them at step 1."""
    if momentum is None or momentum >= 1.0:
        return 1
    if momentum <= 0.0:
        return None  # never: running statistics that never move
    steps = math.log(0.01) / math.log1p(-momentum)
    if not math.isfinite(steps):
        return None  # a momentum so small that (1 − m)^k never visibly decays
    return math.ceil(steps - 1e-9)  # 1e-9: 0.99 needs 1 step, not 2


def momentum_label(m: float | None) -> str:
    return "None (cumulative)" if m is None else f"PyTorch {m:g}"

