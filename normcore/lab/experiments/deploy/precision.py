"""Precision: how far each way of normalizing lands from float64 on the same input.

The input is ``offset + std · z`` (z ~ N(0, 1), drawn in float64) cast to the chosen dtype;
every method then normalizes that *cast* input, and float64 normalizes the very same values
(so the rounding of the input itself is never blamed on a method). Two sweeps: the offset from
0 to 1e8 at std 1, and the std from 1 down to 1e-6 at a fixed offset.

What each method computes, and why it lands where it does, is in :data:`WHY`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch
import torch.nn.functional as F

import normcore
from normcore import functional as NF
from normcore.lab import devices, limits
from normcore.lab.fields import Field, QueryOptions, Schema

SHAPE = (8, 16, 8, 8)  # N, C, H, W: 8,192 values; BatchNorm groups of 512, LayerNorm 1,024, GroupNorm 128
GROUPS = 8
BN_DIMS = (0, 2, 3)
DTYPES = ("float32", "bfloat16", "float16")
FLOAT16_MAX = 65504.0
METHODS = ("torch_bn", "normcore", "torch_ln", "normcore_ln", "torch_gn", "normcore_gn", "naive", "two_pass", "rms",
           "normcore_rms")
METHOD_LABELS = {
    "torch_bn": "torch BatchNorm", "torch_ln": "torch LayerNorm", "torch_gn": f"torch GroupNorm({GROUPS})",
    "normcore": "normcore BatchNorm", "naive": "E[x²] − E[x]² (naive)", "two_pass": "plain two-pass",
    "rms": "RMSNorm (control)", "normcore_ln": "normcore LayerNorm", "normcore_gn": f"normcore GroupNorm({GROUPS})",
    "normcore_rms": "normcore RMSNorm",
}
# normcore's layers as shipped, built in float32 and moved to the input's dtype with .to(): γ/β (and the
# layer) in float16/bfloat16 too, as a model cast with model.half() holds them. torch's counterparts
# above run without γ/β (1 and 0: the same output).
NORMCORE_LAYERS = {
    "normcore_ln": lambda x, eps: normcore.LayerNorm(x.shape[1:], eps=eps),
    "normcore_gn": lambda x, eps: normcore.GroupNorm(GROUPS, x.shape[1], eps=eps),
    "normcore_rms": lambda x, eps: normcore.RMSNorm(x.shape[1:], eps=eps),
}
REFERENCE_OF = {"torch_ln": "ln", "normcore_ln": "ln", "torch_gn": "gn", "normcore_gn": "gn", "rms": "rms",
                "normcore_rms": "rms"}  # every other method normalizes as BatchNorm
WHY = {
    "torch_bn": "torch BatchNorm (CPU): **two-pass in a double accumulator**: the sums are exact enough, but the "
                "mean μ is stored in the input's dtype, and x − μ carries μ's rounding (up to half a spacing at the "
                "offset): the error grows like offset · unit roundoff / std.",
    "torch_ln": "torch LayerNorm: **Welford with cascade sums** (RowwiseMoments) in float32: a running mean and M2, "
                "precise statistics, but the same rounded μ in x − μ: the error grows like offset / std.",
    "torch_gn": f"torch GroupNorm({GROUPS}): **Welford with cascade sums**, as LayerNorm, on smaller groups; again "
                "x − μ through a rounded μ.",
    "normcore": "normcore: **shifted moments**: one value of each group is subtracted first (exact, Sterbenz's "
                "lemma), then two passes on the small differences, and x − μ is computed as (x − s) − mean(x − s), "
                "never through the large μ; half precision is computed in float32. Within ~1e-6 wherever the dtype "
                "holds the input.",
    "naive": "E[x²] − E[x]²: **one pass, catastrophic cancellation**: two numbers near offset² are subtracted, so the "
             "variance loses about log10(offset² / std²) digits and can come out negative (NaN output); in float16 "
             "x² overflows past 65,504.",
    "two_pass": "plain **two-pass** in the dtype: mean, then mean((x − μ)²): never negative, and precise for a "
                "small offset, but μ rounded to the dtype makes x − μ as wrong as torch's.",
    "rms": "RMSNorm, the control: **no mean is subtracted**, so there is no cancellation: x / sqrt(E[x²]) stays "
           "within a few roundings at any offset (until x² overflows in float16).",
    "normcore_ln": "normcore LayerNorm, the layer as shipped (γ, β moved to the dtype with it): **shifted moments, "
                   "computed in float32** in every dtype (x, γ and β cast inside, the output rounded once), so in "
                   "float16/bfloat16 its error is the output's last rounding wherever the dtype holds the input "
                   "(torch's LayerNorm and GroupNorm also compute half in float32 on the CPU: the same; its "
                   "BatchNorm stores μ in the half dtype: 30–100× worse).",
    "normcore_gn": f"normcore GroupNorm({GROUPS}), the layer as shipped: the same shifted moments in float32 on each "
                   "group, the output rounded once to the dtype.",
    "normcore_rms": "normcore RMSNorm, the layer as shipped: x / sqrt(E[x²] + eps) **computed in float32** (γ cast "
                    "with x), as torch's CPU kernel: in float16, E[x²] does not overflow past |x| ≈ 256.",
}
VIEWS = ("offset", "std")
VIEW_LABELS = {"offset": "Offset 0 → 1e8 (std 1)", "std": "Std 1 → 1e-6 (fixed offset)"}

FIELDS = Schema((
    Field("dtype", "dtype", "float32", "choice", "The input's dtype; every method runs in it (float64 is the reference).",
          choices=DTYPES, widget="radio", url="x_dtype"),
    Field("view", "Sweep", "offset", "choice", "Sweep the mean offset at std 1, or the std at a fixed offset.",
          choices=VIEWS, labels=VIEW_LABELS, widget="radio", url="x_view"),
    Field("offset", "Offset of the std sweep", 1e4, "float", "The mean of the input while the std sweeps.",
          choices=(1e2, 1e4, 1e6), labels=lambda v: f"{v:.0e}", snap=True, url="x_offset"),
    Field("eps", "eps", 1e-5, "float", "Added to the variance inside the square root, by every method.",
          choices=(1e-12, 1e-8, 1e-5, 1e-3), labels=lambda v: f"{v:.0e}", snap=True, url="x_eps"),
    Field("per_decade", "Points per decade", 2, "int", "Sweep resolution (each point runs every method).",
          1, limits.MAX_PRECISION_POINTS_PER_DECADE, 1, url="x_points"),
))


@dataclass(frozen=True)
class PrecisionOptions(QueryOptions):
    """The Precision tab's options; defaults are :data:`FIELDS`' defaults."""

    SCHEMA: ClassVar[Schema] = FIELDS

    dtype: str = FIELDS["dtype"].default
    view: str = FIELDS["view"].default
    offset: float = FIELDS["offset"].default
    eps: float = FIELDS["eps"].default
    per_decade: int = FIELDS["per_decade"].default



def sweep_points(view: str, per_decade: int, offset: float = 1e4) -> list[tuple[float, float]]:
    """(offset, std) pairs: offset 0 then 1e0 … 1e8 at std 1, or std 1 … 1e-6 at ``offset``."""
    if view == "offset":
        return [(0.0, 1.0)] + [(10 ** (i / per_decade), 1.0) for i in range(8 * per_decade + 1)]
    return [(offset, 10 ** (-i / per_decade)) for i in range(6 * per_decade + 1)]


def make_input(offset: float, std: float, dtype: str, seed: int = 0) -> torch.Tensor:
    """``offset + std · z`` drawn in float64, then cast to ``dtype``."""
    z = torch.randn(SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return (offset + std * z).to(getattr(torch, dtype))


def input_flag(x: torch.Tensor) -> str:
    """'inf' where the cast input overflowed, 'constant' where a channel rounded to one value, else ''."""
    if not torch.isfinite(x).all():
        return "inf"
    if (x.amax(BN_DIMS) == x.amin(BN_DIMS)).any():
        return "constant"
    return ""


def _bn_running_var(x: torch.Tensor, eps: float):
    """torch's BatchNorm output, and its batch variance (biased) read from a running_var at momentum 1."""
    count = x.numel() // x.shape[1]
    rm, rv = torch.zeros(x.shape[1], dtype=x.dtype), torch.ones(x.shape[1], dtype=x.dtype)
    y = F.batch_norm(x, rm, rv, training=True, momentum=1.0, eps=eps)
    return y, rv.double() * (count - 1) / count


def _from_rstd(rstd: torch.Tensor, eps: float) -> torch.Tensor:
    return rstd.double().pow(-2) - eps  # what the kernel's variance was (meaningful while σ² ≫ eps)


def run_method(method: str, x: torch.Tensor, eps: float):
    """(normalized output, variance of each group or None) of ``method`` on ``x``, in x's dtype."""
    n, c = x.shape[:2]
    if method == "torch_bn":
        return _bn_running_var(x, eps)
    if method == "torch_ln":
        y, _, rstd = torch.native_layer_norm(x, x.shape[1:], None, None, eps)
        return y, _from_rstd(rstd, eps)
    if method == "torch_gn":
        y, _, rstd = torch.native_group_norm(x, None, None, n, c, x[0, 0].numel(), GROUPS, eps)
        return y, _from_rstd(rstd, eps)
    if method == "normcore":
        y, stats = NF.batch_norm(x, None, None, training=True, eps=eps, return_stats=True)
        return y, stats.var.double()
    if method in NORMCORE_LAYERS:
        return _normcore_layer(method, x, eps)
    if method == "rms":
        return F.rms_norm(x, x.shape[1:], eps=eps), None
    mean = x.mean(BN_DIMS, keepdim=True)
    if method == "naive":
        var = (x * x).mean(BN_DIMS, keepdim=True) - mean * mean
    elif method == "two_pass":
        var = (x - mean).square().mean(BN_DIMS, keepdim=True)
    else:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    return (x - mean) * torch.rsqrt(var + eps), var.double().flatten()


def _normcore_layer(method: str, x: torch.Tensor, eps: float):
    """normcore's layer on ``x``, the layer moved to x's dtype; its variance per group (RMSNorm: None)."""
    layer = NORMCORE_LAYERS[method](x, eps).to(x.dtype)
    with torch.no_grad():
        y = layer(x)
    return y, None if method == "normcore_rms" else layer.last_stats.var.double().flatten()


def reference(method: str, x: torch.Tensor, eps: float) -> torch.Tensor:
    """The same normalization as ``method``, in float64 by torch's float64 kernels (the oracle)."""
    x64, kind = x.double(), REFERENCE_OF.get(method)
    if kind == "ln":
        return F.layer_norm(x64, x64.shape[1:], eps=eps)
    if kind == "gn":
        return F.group_norm(x64, GROUPS, eps=eps)
    if kind == "rms":
        return F.rms_norm(x64, x64.shape[1:], eps=eps)
    return F.batch_norm(x64, None, None, training=True, eps=eps)


def relative_error(y: torch.Tensor, y64: torch.Tensor) -> float:
    """max |y − y₆₄| over the float64 output's root mean square (its scale: 1 while σ² ≫ eps)."""
    scale = y64.square().mean().sqrt().item()
    if scale == 0.0:
        return float("nan")
    delta = (y.double() - y64).abs()
    return float("inf") if not torch.isfinite(delta).all() else delta.max().item() / scale


def measure_point(offset: float, std: float, dtype: str, eps: float, seed: int = 0) -> list[dict]:
    """One row per method at one (offset, std): its error, its smallest variance, the float64 one."""
    x = make_input(offset, std, dtype, seed)
    flag = input_flag(x)
    ref_var = x.double().var(BN_DIMS, unbiased=False).min().item()
    rows = []
    for method in METHODS:
        y, var = run_method(method, x, eps)
        rows.append({
            "offset": offset, "std": std, "dtype": dtype, "method": method, "label": METHOD_LABELS[method],
            "error": relative_error(y, reference(method, x, eps)),
            "variance": math.nan if var is None else var.min().item(),
            "negative": False if var is None else bool((var < 0).any()),
            "reference_variance": ref_var, "input": flag,
        })
    return rows


def sweep(view: str, dtype: str, eps: float = 1e-5, per_decade: int = 2, offset: float = 1e4) -> pd.DataFrame:
    """Every method at every point of one sweep; column ``x`` is the swept value (offset or std)."""
    rows = [r for off, std in sweep_points(view, per_decade, offset) for r in measure_point(off, std, dtype, eps)]
    frame = pd.DataFrame(rows)
    frame["x"] = frame[view]
    return frame


ONE_THREAD = devices.Target("cpu", 1)  # 8,192 values a call: threads only add overhead (10x on a loaded machine)


def run(o: PrecisionOptions) -> pd.DataFrame:
    with devices.placed(ONE_THREAD):
        return sweep(o.view, o.dtype, o.eps, o.per_decade, o.offset)


@dataclass(frozen=True)
class Overflow:
    """Where E[x²] stops fitting in float16, and what accumulating in float32 gives there."""

    threshold: float  # |x| above which x² > 65,504
    offset: float  # the first swept offset at which the naive float16 variance is not finite
    naive_variance: float  # the naive method's variance there, in float16 (inf or NaN)
    fixed_variance: float  # the same formula with x cast to float32 first
    reference_variance: float  # float64, on the same float16 input


def float16_overflow(per_decade: int = 2, eps: float = 1e-5) -> Overflow | None:
    """Sweep the offset in float16 and find the first point where the naive variance overflows."""
    with devices.placed(ONE_THREAD):
        return _first_overflow(per_decade, eps)


def _first_overflow(per_decade: int, eps: float) -> Overflow | None:
    for offset, std in sweep_points("offset", per_decade):
        x = make_input(offset, std, "float16")
        if not torch.isfinite(x).all():
            return None  # the input itself overflowed first
        _, var = run_method("naive", x, eps)
        if not torch.isfinite(var).all():
            x32 = x.float()
            m = x32.mean(BN_DIMS)
            fixed = ((x32 * x32).mean(BN_DIMS) - m * m).double()
            return Overflow(math.sqrt(FLOAT16_MAX), offset, var.max().item(), fixed.min().item(),
                            x.double().var(BN_DIMS, unbiased=False).min().item())
    return None


def table(dtypes=DTYPES, ratios=(1e2, 1e4, 1e6), eps: float = 1e-5) -> pd.DataFrame:
    """The closing-note table: each method's error per dtype at offset/std = each ratio (std 1), and at the
    issue's point (offset 1e4, std 1e-2, also a ratio of 1e6)."""
    points = [(r, 1.0) for r in ratios] + [(1e4, 1e-2)]
    rows = [
        {"dtype": dtype, "point": f"offset {off:g}, std {std:g}" + (f" ({r['input']})" if r["input"] else ""),
         "method": r["label"], "error": r["error"]}
        for dtype in dtypes for off, std in points for r in measure_point(off, std, dtype, eps)
    ]
    return pd.DataFrame(rows).pivot_table(index=["dtype", "point"], columns="method", values="error", sort=False)
