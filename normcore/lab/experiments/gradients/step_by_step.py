"""Part 1 of the Gradients page as tidy frames: the forward graph's values, the closed form
against autograd (and torch.nn), the terms and identities per statistic group, and the
identity Σ(dx·x̂) as eps sweeps past the variance."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import torch

from normcore.axes import reduction_axes
from normcore.lab.norms import describe_axes
from normcore.lab.settings import EPS_CHOICES

from normcore.lab.experiments.gradients import backprop as B
from normcore.lab.experiments.gradients.options import GradientOptions

MAX_GROUP_ROWS = 16  # statistic groups listed in the terms table (a 64-value LayerNorm has up to 64)
MAX_SWEEP_GROUPS = 6  # groups drawn in the identity-vs-eps chart
SWEEP_EPS = EPS_CHOICES + (3.0, 10.0, 30.0, 100.0)  # past the eps control's 1: up to and past σ²


@dataclass(frozen=True)
class BackpropView:
    axes: str  # one sentence: the statistics and what they are taken over
    values: pd.DataFrame  # per element: position, x, x̂, y, dy, dx (closed form, autograd)
    groups: pd.DataFrame  # per statistic group: M, μ, σ², istd, the terms and the identities
    params: pd.DataFrame  # dγ and dβ summed over their entries: closed form vs autograd
    max_delta: dict[str, float]  # normcore's closed form vs autograd: dx, dγ, dβ
    max_delta_torch: dict[str, float]  # normcore vs torch.nn
    max_sum_dx: float  # max over groups |Σ dx|
    max_identity_gap: float  # max over groups |Σ(dx·x̂) − istd·Σ(dx̂·x̂)·ε/(σ²+ε)|


def _positions(shape) -> pd.DataFrame:
    idx = torch.stack(torch.meshgrid(*(torch.arange(s) for s in shape), indexing="ij"), -1).reshape(-1, 4)
    return pd.DataFrame(idx.numpy(), columns=["n", "c", "h", "w"])


def _group_frame(graph: B.Graph, terms: dict, ident: dict, rms: bool) -> pd.DataFrame:
    frame = pd.DataFrame({
        "group": range(len(graph.istd)), "M": graph.count,
        "μ": float("nan") if rms else graph.mu.numpy(), "σ² (mean square for RMSNorm)": graph.var.numpy(),
        "istd": graph.istd.numpy(), "Σdx̂": terms["sum_d_xhat"].numpy(), "Σ(dx̂·x̂)": terms["sum_d_xhat_xhat"].numpy(),
        "Σdx": ident["sum_dx"].numpy(), "Σ(dx·x̂)": ident["sum_dx_xhat"].numpy(),
        "istd·Σ(dx̂·x̂)·ε/(σ²+ε)": ident["predicted"].numpy(),
    })
    return frame.head(MAX_GROUP_ROWS)


def backprop_view(o: GradientOptions) -> BackpropView:
    """Everything part 1 shows, for valid options (see ``options.problems``)."""
    x, dy = B.make_input(o), B.make_upstream(o)
    graph, auto = B.autograd_grads(x, dy, o)
    ours = B.layer_grads(x, dy, o)
    theirs = B.layer_grads(x, dy, o, library=torch.nn)
    terms = B.closed_form_terms(graph, dy, o)
    ident = B.identities(graph, ours["dx"], terms["sum_d_xhat_xhat"], o.eps)
    values = _positions(o.shape).assign(
        x=x.reshape(-1).numpy(), x_hat=graph.x_hat.reshape(-1).numpy(), y=graph.y.reshape(-1).numpy(),
        dy=dy.reshape(-1).numpy(), dx_closed_form=ours["dx"].reshape(-1).numpy(),
        dx_autograd=auto["dx"].reshape(-1).numpy())
    params = pd.DataFrame([
        {"gradient": f"{k} (Σ over its {ours[k].numel()} entries)", "closed form": float(ours[k].sum()),
         "autograd": float(auto[k].sum())} for k in ("dγ", "dβ") if ours.get(k) is not None])
    rms = o.norm == "rms"
    return BackpropView(
        axes=describe_axes(reduction_axes(o.norm, o.shape, o.groups)).replace(
            "mean/variance pair(s)", "mean-square value(s)" if rms else "mean/variance pair(s)"),
        values=values, groups=_group_frame(graph, terms, ident, rms), params=params,
        max_delta=B.max_abs_delta(ours, auto), max_delta_torch=B.max_abs_delta(ours, theirs),
        max_sum_dx=float(ident["sum_dx"].abs().max()),
        max_identity_gap=float((ident["sum_dx_xhat"] - ident["predicted"]).abs().max()),
    )


def identity_vs_eps(o: GradientOptions, eps_values=SWEEP_EPS) -> pd.DataFrame:
    """Σ(dx·x̂) per group (the first few) as eps sweeps: measured with normcore's backward,
    predicted by istd·Σ(dx̂·x̂)·ε/(σ²+ε); with each group's σ² (mean square for RMSNorm)."""
    x, dy = B.make_input(o), B.make_upstream(o)
    rows = []
    for eps in eps_values:
        oe = replace(o, eps=eps)
        graph, _ = B.autograd_grads(x, dy, oe)
        ours = B.layer_grads(x, dy, oe)
        terms = B.closed_form_terms(graph, dy, oe)
        ident = B.identities(graph, ours["dx"], terms["sum_d_xhat_xhat"], eps)
        for g in range(min(len(graph.istd), MAX_SWEEP_GROUPS)):
            rows.append({"eps": eps, "group": g, "variance": float(graph.var[g]),
                         "measured": float(ident["sum_dx_xhat"][g]), "predicted": float(ident["predicted"][g]),
                         "sum_dx": float(ident["sum_dx"][g])})
    return pd.DataFrame(rows)
