"""Loss along lines and planes in weight space, and the weight-space arithmetic behind them.

Weights are ``Params``: a dict of name -> tensor, as ``model.named_parameters()`` gives them.

* :func:`line_slice`: the loss along w(α) = (1 − α)·start + α·end (Goodfellow et al. 2015,
  "Qualitatively characterizing neural network optimization problems"; Im et al. 2016);
* :func:`plane_slice`: the loss on center + a·d₁ + b·d₂ (Li et al. 2018, "Visualizing the Loss
  Landscape of Neural Nets"), with directions from :func:`random_direction`: Gaussian,
  normalized filter by filter (each output unit's row) to the norm of that filter's weights,
  and zero for every 1-d parameter (biases, and BatchNorm's γ and β, left unperturbed);
* :func:`model_loss` / :func:`model_loss_and_grad`: a model's loss at given weights on one
  fixed batch, **in train mode** (BatchNorm normalizes with that batch's statistics), on
  copies of its buffers, so its running statistics are never touched.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call

Params = dict[str, torch.Tensor]


def params_of(model: nn.Module) -> Params:
    """A detached copy of the model's weights."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def combine(*terms: tuple[float, Params]) -> Params:
    """Σ coefficient·params over ``terms`` (all with the same names and shapes)."""
    names = terms[0][1].keys()
    return {n: sum(c * p[n] for c, p in terms) for n in names}


def norm(p: Params) -> float:
    """The Euclidean norm of all the tensors together, as one vector."""
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in p.values())))


def line_slice(loss: Callable[[Params], float], start: Params, end: Params, alphas: Iterable[float]) -> pd.DataFrame:
    """The loss at (1 − α)·start + α·end for each α: α = 0 is ``start``, 1 is ``end``."""
    rows = [dict(alpha=float(a), loss=loss(combine((1 - a, start), (a, end)))) for a in alphas]
    return pd.DataFrame(rows)


def plane_slice(loss: Callable[[Params], float], center: Params, d1: Params, d2: Params,
                coords: Iterable[float]) -> pd.DataFrame:
    """The loss at center + a·d1 + b·d2 on the grid coords × coords."""
    coords = [float(c) for c in coords]
    rows = [dict(a=a, b=b, loss=loss(combine((1.0, center), (a, d1), (b, d2)))) for a in coords for b in coords]
    return pd.DataFrame(rows)


def filter_normalized(direction: Params, weights: Params) -> Params:
    """Li et al.'s filter normalization: each row of a ≥2-d tensor (one output unit's filter)
    rescaled to that row's norm in ``weights``; 1-d tensors (biases, norm γ/β) set to zero."""
    out = {}
    for name, d in direction.items():
        w = weights[name]
        if d.dim() < 2:
            out[name] = torch.zeros_like(d)
            continue
        d_rows, w_rows = d.flatten(1), w.flatten(1)
        scale = w_rows.norm(dim=1, keepdim=True) / d_rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
        out[name] = (d_rows * scale).view_as(d)
    return out


def random_direction(weights: Params, seed: int) -> Params:
    """A Gaussian direction, filter-normalized to ``weights`` (the same seed, the same direction)."""
    g = torch.Generator().manual_seed(int(seed))
    raw = {n: torch.randn(w.shape, generator=g, dtype=w.dtype) for n, w in weights.items()}
    return filter_normalized(raw, weights)


def _call(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    buffers = {n: b.clone() for n, b in model.named_buffers()}  # train mode updates these: copies
    return functional_call(model, {**params, **buffers}, (x,))


def model_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[Params], float]:
    """Cross-entropy of ``model`` at given weights on the batch (x, y), in train mode."""
    model.train()

    @torch.no_grad()
    def loss(params: Params) -> float:
        return float(nn.functional.cross_entropy(_call(model, params, x), y))

    return loss


def model_loss_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[Params], tuple[float, Params]]:
    """(loss, ∇loss) of ``model`` at given weights on the batch (x, y), in train mode."""
    model.train()

    def loss_and_grad(params: Params) -> tuple[float, Params]:
        leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
        loss = nn.functional.cross_entropy(_call(model, leaves, x), y)
        grads = torch.autograd.grad(loss, list(leaves.values()))
        return float(loss.detach()), dict(zip(leaves, (g.detach() for g in grads)))

    return loss_and_grad


def grid(resolution: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return np.linspace(low, high, int(resolution))
