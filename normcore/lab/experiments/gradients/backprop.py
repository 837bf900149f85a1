"""Backprop through one normalization, step by step, in float64.

The forward is written out as the graph x → μ, σ² → x̂ → y with plain torch ops over the
statistic groups of the chosen norm (``normcore.statistic_ids``), and differentiated by
autograd. Next to it: the gradients of normcore's layer (its closed-form backward,
``normcore/backward.py`` and ``normcore/rms_backward.py``) and of torch.nn's twin, the terms
of the closed form per statistic group, and the two identities the closed form obeys:

* Σ dx = 0 in every group (no gradient along the mean), except RMSNorm, which has no mean;
* Σ (dx · x̂) = istd · Σ(dx̂ · x̂) · ε / (σ² + ε) (σ² is the mean square for RMSNorm).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

import normcore
from normcore.axes import reduction_axes, statistic_ids

from normcore.lab.experiments.gradients.options import GradientOptions

DTYPE = torch.float64


def make_input(o: GradientOptions) -> torch.Tensor:
    """The worked example (x[i, k] = (i + 1)·(k + 1)) or N(0, 1) values of the chosen shape."""
    if o.input == "example":
        n, c = o.shape[:2]
        rows = torch.arange(1, n + 1, dtype=DTYPE).view(n, 1)
        return (rows * torch.arange(1, c + 1, dtype=DTYPE).view(1, c)).view(o.shape)
    return torch.randn(o.shape, generator=torch.Generator().manual_seed(o.seed), dtype=DTYPE)


def make_upstream(o: GradientOptions) -> torch.Tensor:
    """dy: random N(0, 1) (its own seed), one-hot on the first value, or all ones."""
    if o.upstream == "ones":
        return torch.ones(o.shape, dtype=DTYPE)
    if o.upstream == "one_hot":
        dy = torch.zeros(o.shape, dtype=DTYPE)
        dy.view(-1)[0] = 1.0
        return dy
    return torch.randn(o.shape, generator=torch.Generator().manual_seed(o.seed + 1), dtype=DTYPE)


def build_layer(o: GradientOptions, library=normcore) -> torch.nn.Module:
    """The chosen norm from ``library`` (normcore or torch.nn), float64, γ and β filled in.
    BatchNorm keeps running statistics with momentum 1, so one training step leaves this
    batch's statistics as its running ones (what eval mode then uses)."""
    n, c, h, w = o.shape
    layer = {
        "batch": lambda: library.BatchNorm2d(c, eps=o.eps, momentum=1.0),
        "instance": lambda: library.InstanceNorm2d(c, eps=o.eps, affine=True),
        "layer": lambda: library.LayerNorm((c, h, w), eps=o.eps),
        "group": lambda: library.GroupNorm(o.groups, c, eps=o.eps),
        "rms": lambda: library.RMSNorm((c, h, w), eps=o.eps),
    }[o.norm]().to(DTYPE)
    with torch.no_grad():
        layer.weight.fill_(o.gamma)
        if getattr(layer, "bias", None) is not None:
            layer.bias.fill_(o.beta)
    return layer


@dataclass(frozen=True)
class Graph:
    """The forward's intermediate values, each per element except μ, σ², istd (per group)."""

    ids: torch.Tensor  # the statistic group of each element, x's shape
    count: int  # M, values per group
    mu: torch.Tensor  # per group (zeros for RMSNorm)
    var: torch.Tensor  # per group: σ² (biased), or RMSNorm's mean square
    istd: torch.Tensor  # per group: 1 / sqrt(σ² + ε)
    x_hat: torch.Tensor
    y: torch.Tensor


def _group_mean(values: torch.Tensor, ids: torch.Tensor, groups: int, count: int) -> torch.Tensor:
    return torch.zeros(groups, dtype=values.dtype).index_add(0, ids.reshape(-1), values.reshape(-1)) / count


def forward_graph(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor | None, o: GradientOptions) -> Graph:
    """x → μ, σ² → x̂ → y in plain torch ops (differentiable); γ/β broadcast against x."""
    ids = statistic_ids(o.norm, x.shape, o.groups).reshape(x.shape)
    groups, count = int(ids.max()) + 1, reduction_axes(o.norm, x.shape, o.groups).values_per_stat
    if o.norm == "rms":
        mu = torch.zeros(groups, dtype=x.dtype)
        var = _group_mean(x * x, ids, groups, count)  # the mean square
    else:
        mu = _group_mean(x, ids, groups, count)
        var = _group_mean((x - mu[ids]) ** 2, ids, groups, count)
    istd = torch.rsqrt(var + o.eps)
    x_hat = (x - mu[ids]) * istd[ids]
    y = gamma * x_hat + (0 if beta is None else beta)
    return Graph(ids, count, mu, var, istd, x_hat, y)


def _affine_view(param: torch.Tensor, o: GradientOptions) -> torch.Tensor:
    return param if o.norm in ("layer", "rms") else param.view(1, -1, 1, 1)  # (C,H,W) or per channel


def autograd_grads(x: torch.Tensor, dy: torch.Tensor, o: GradientOptions) -> tuple[Graph, dict]:
    """The graph's values, and dx, dγ, dβ by autograd through it."""
    layer = build_layer(o)
    x = x.clone().requires_grad_(True)
    gamma = layer.weight.detach().clone().requires_grad_(True)
    beta = None if getattr(layer, "bias", None) is None else layer.bias.detach().clone().requires_grad_(True)
    graph = forward_graph(x, _affine_view(gamma, o), None if beta is None else _affine_view(beta, o), o)
    graph.y.backward(dy)
    grads = {"dx": x.grad, "dγ": gamma.grad, "dβ": None if beta is None else beta.grad}
    detached = replace(graph, **{k: getattr(graph, k).detach() for k in ("mu", "var", "istd", "x_hat", "y")})
    return detached, grads


def layer_grads(x: torch.Tensor, dy: torch.Tensor, o: GradientOptions, library=normcore) -> dict:
    """dx, dγ, dβ from ``library``'s layer in training mode (normcore: its closed form)."""
    layer = build_layer(o, library)
    x = x.clone().requires_grad_(True)
    layer(x).backward(dy)
    bias = getattr(layer, "bias", None)
    return {"dx": x.grad, "dγ": layer.weight.grad, "dβ": None if bias is None else bias.grad}


def closed_form_terms(graph: Graph, dy: torch.Tensor, o: GradientOptions) -> dict:
    """The closed form assembled from its terms, per statistic group:
    dx = (istd/M)·(M·dx̂ − Σdx̂ − x̂·Σ(dx̂·x̂)), dx̂ = γ·dy (RMSNorm: no Σdx̂ term)."""
    ids, groups, m = graph.ids, len(graph.istd), graph.count
    d_xhat = o.gamma * dy
    sum_d_xhat = _group_mean(d_xhat, ids, groups, 1)  # Σ dx̂ (= γ·Σ dy): the path through μ
    sum_d_xhat_xhat = _group_mean(d_xhat * graph.x_hat, ids, groups, 1)  # Σ(dx̂·x̂): the path through σ²
    through_mean = 0 if o.norm == "rms" else sum_d_xhat[ids]
    dx = (graph.istd / m)[ids] * (m * d_xhat - through_mean - graph.x_hat * sum_d_xhat_xhat[ids])
    return {"sum_d_xhat": sum_d_xhat, "sum_d_xhat_xhat": sum_d_xhat_xhat, "dx": dx}


def identities(graph: Graph, dx: torch.Tensor, sum_d_xhat_xhat: torch.Tensor, eps: float) -> dict:
    """Per group: Σdx, Σ(dx·x̂), and the prediction istd·Σ(dx̂·x̂)·ε/(σ²+ε)."""
    groups = len(graph.istd)
    return {
        "sum_dx": _group_mean(dx, graph.ids, groups, 1),
        "sum_dx_xhat": _group_mean(dx * graph.x_hat, graph.ids, groups, 1),
        "predicted": graph.istd * sum_d_xhat_xhat * eps / (graph.var + eps),
    }


def max_abs_delta(a: dict, b: dict) -> dict[str, float]:
    """max |a − b| for each gradient both have."""
    return {k: float((a[k] - b[k]).abs().max()) for k in a if a[k] is not None and b.get(k) is not None}
