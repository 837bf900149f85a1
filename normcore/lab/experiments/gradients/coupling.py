"""Part 2 of the Gradients page: how the samples of a batch couple, through the Jacobian.

∂y_i/∂x_j is taken with ``torch.autograd.functional.jacobian`` (one backward per output
value) on a *copy* of the layer, so the layer's running statistics are never touched; in
training the copy also stops tracking them. (``torch.func.jacrev`` gives the same matrix,
but its first call in a process costs ~3 s here, over the page's first-render budget; and
under it a layer may not update its running statistics in place.)

* BatchNorm shares its statistics across the batch: the Jacobian has off-diagonal blocks
  between samples, each entry −γ·istd·(1 + x̂ᵢx̂ⱼ)/M (same channel), shrinking like 1/N,
  while the total a sample receives from its batch-mates does not shrink.
* LayerNorm, GroupNorm, InstanceNorm and RMSNorm are block-diagonal per sample.
* In eval mode the statistics are constants: the coupling vanishes.
* A batch of two, one value per channel: y = ±d/√(d² + ε), d half the difference.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import pandas as pd
import torch

from normcore.lab.experiments.gradients import backprop as B
from normcore.lab.experiments.gradients.options import GradientOptions

SWEEP_SIZES = (2, 4, 8, 16, 32, 64)  # batch sizes of the 1/N sweep (one value per channel: N values)
HALF_DIFFERENCES = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0)  # d in the batch-of-two table


def jacobian(layer: torch.nn.Module, x: torch.Tensor, mode: str = "train") -> torch.Tensor:
    """∂y_i/∂x_j as a (numel, numel) matrix, from a copy of ``layer`` in ``mode``."""
    twin = copy.deepcopy(layer)
    twin.train(mode == "train")
    if mode == "train" and hasattr(twin, "track_running_stats"):
        twin.track_running_stats = False  # batch statistics; the copy's buffers stay as they were
    return torch.autograd.functional.jacobian(twin, x.detach()).reshape(x.numel(), x.numel())


def layer_with_running_stats(o: GradientOptions, x: torch.Tensor) -> torch.nn.Module:
    """The chosen layer after one training step on ``x`` (BatchNorm: momentum 1, so its running
    statistics are this batch's, with the unbiased variance, as torch keeps them)."""
    layer = B.build_layer(o)
    with torch.no_grad():
        layer(x)
    return layer


@dataclass(frozen=True)
class Blocks:
    """The Jacobian split into sample blocks: within a sample, and across samples."""

    max_within: float
    max_across: float
    frame: pd.DataFrame  # i, j, value, sample_i, sample_j, for the heatmap


def blocks(jac: torch.Tensor, n: int) -> Blocks:
    d = jac.shape[0] // n
    sample = torch.arange(jac.shape[0]) // d
    across = sample.view(-1, 1) != sample.view(1, -1)
    i, j = torch.meshgrid(torch.arange(jac.shape[0]), torch.arange(jac.shape[0]), indexing="ij")
    frame = pd.DataFrame({"i": i.reshape(-1).numpy(), "j": j.reshape(-1).numpy(), "value": jac.reshape(-1).numpy(),
                          "sample_i": sample[i.reshape(-1)].numpy(), "sample_j": sample[j.reshape(-1)].numpy()})
    return Blocks(float(jac[~across].abs().max()), float(jac[across].abs().max()) if across.any() else 0.0, frame)


def coupling_view(o: GradientOptions) -> Blocks:
    """The Jacobian of the chosen layer on the page's input, in the chosen mode."""
    x = B.make_input(o)
    return blocks(jacobian(layer_with_running_stats(o, x), x, o.mode), o.shape[0])


def cross_sample_theory(x: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """BatchNorm on (N,) values: −γ·istd·(1 + x̂ᵢx̂ⱼ)/N for i ≠ j (the off-diagonal entries)."""
    n = x.numel()
    var = x.var(unbiased=False)
    istd = (var + eps).rsqrt()
    x_hat = (x - x.mean()) * istd
    return -gamma * istd * (1 + torch.outer(x_hat, x_hat)) / n


def coupling_vs_batch_size(o: GradientOptions, sizes=SWEEP_SIZES) -> pd.DataFrame:
    """BatchNorm on N samples of one value: the mean |cross-sample entry| (measured and theory)
    and the total |coupling| one sample receives from its N − 1 batch-mates, as N grows."""
    rows = []
    for n in sizes:
        on = replace(o, norm="batch", input="random", n=n, c=1, h=1, w=1)
        x = B.make_input(on)
        jac = jacobian(B.build_layer(on), x, "train")
        off = ~torch.eye(n, dtype=torch.bool)
        theory = cross_sample_theory(x.reshape(-1), o.gamma, o.eps)
        rows.append({"N": n, "mean |cross-sample entry|": float(jac[off].abs().mean()),
                     "theory −γ·istd·(1+x̂ᵢx̂ⱼ)/N": float(theory[off].abs().mean()),
                     "total from batch-mates": float((jac.abs() * off).sum(1).mean())})
    return pd.DataFrame(rows)


def batch_of_two(o: GradientOptions, half_differences=HALF_DIFFERENCES) -> pd.DataFrame:
    """BatchNorm on two samples of one value, a ± d: y₁ measured and ±d/√(d²+ε), and the
    largest |∂y/∂x|: near 0 once d² ≫ ε (the output is ±1 whatever the input)."""
    rows = []
    for d in half_differences:
        on = replace(o, norm="batch", input="random", n=2, c=1, h=1, w=1, gamma=1.0, beta=0.0)
        x = torch.tensor([3.0 + d, 3.0 - d], dtype=B.DTYPE).view(2, 1, 1, 1)
        layer = B.build_layer(on)
        with torch.no_grad():
            y = layer(x).reshape(-1)
        jac = jacobian(layer, x, "train")
        rows.append({"d": d, "y₁ measured": float(y[0]), "d/√(d²+ε)": d / (d * d + o.eps) ** 0.5,
                     "max |∂y/∂x|": float(jac.abs().max())})
    return pd.DataFrame(rows)
