"""One batch before and after normalizing: histograms per unit, a per-channel table of
moments (for RMSNorm a per-sample table, :mod:`.rms`), and the output std of channel 0 as
eps grows (measured vs theory)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from normcore import functional as F
from normcore.lab.layers import build_layer
from normcore.lab.populations import draw_batch, make_generator, population_stats
from normcore.lab.settings import EPS_CHOICES, LabSettings

from normcore.lab.experiments.live.rms import COLUMNS as RMS_COLUMNS, TABLE_TITLE as RMS_TABLE_TITLE, RmsView, rms_view
from normcore.lab.experiments.live.units import unit_channels, unit_labels, unit_truth

HISTOGRAM_UNITS = 6  # histograms drawn for the first units only
HISTOGRAM_BINS = 40
EXAMPLE_INPUT = {"mean_offset": 3.0, "scale": 2.0, "channel_spread": 1.0}  # an offset, spread-out input to try
MOMENTS_TITLE = "Mean and variance per channel (biased, computed in float64 from this batch)"
MOMENTS_COLUMNS = {c: c.replace("_", " ") for c in ("mean_before", "var_before", "mean_after", "var_after")}
EPS_CAPTIONS = {
    "default": "eps is added to the variance: an output std of 1/√(1 + eps/σ²) (dashed: theory for this setup, "
    "dots: measured with normcore, within each group that shares statistics). It matters only once eps "
    "nears the variance: turn on the quiet channel and move eps towards 1e-4. Under GN and LN channel 0 "
    "shares its statistics with louder channels and is squashed whatever eps is.",
    "rms": "RMSNorm adds eps to the mean square μ² + σ²: channel 0's output std is σ₀/√(μ² + σ² + eps) (dashed: "
    "theory for this setup, dots: measured with normcore, within each sample). eps matters only once it nears "
    "the mean square; a mean offset squashes the spread whatever eps is, since μ² is in the divisor.",
}


@dataclass(frozen=True)
class BatchView:
    histogram: pd.DataFrame  # unit, stage ("before"/"after"), bin_start, bin_end, count
    moments: pd.DataFrame  # channel, unit, mean/var before and after (biased, float64)
    eps_curve: pd.DataFrame  # eps, measured, theory: channel 0's output std
    units_shown: int
    units_total: int
    shape: tuple[int, int, int, int]  # (N, C, H, W) of the batch
    norm: str = "batch"
    rms: RmsView | None = None  # RMSNorm only: the per-sample table, LayerNorm beside it, the note

    @property
    def caption(self) -> str:
        shown = f"The first {self.units_shown} of {self.units_total} are shown. " if self.units_shown < self.units_total else ""
        affine = "γ = 1; RMSNorm has no β" if self.norm == "rms" else "γ = 1, β = 0"
        return (f"{shown}The first batch of the stream below, {'×'.join(map(str, self.shape))}, "
                f"through a fresh layer in training mode ({affine}).")

    @property
    def table(self) -> tuple[str, pd.DataFrame, dict[str, str]]:
        """The statistics table: its title, its rows and the labels of its number columns."""
        if self.rms is not None:
            return RMS_TABLE_TITLE, self.rms.per_sample, RMS_COLUMNS
        return MOMENTS_TITLE, self.moments, MOMENTS_COLUMNS

    @property
    def widths(self) -> tuple[int, int] | None:
        """The statistics table's and the eps chart's shares of the page width, side by side;
        None: one above the other (RMSNorm's per-sample table needs the whole width)."""
        return None if self.rms is not None else (3, 2)

    @property
    def eps_caption(self) -> str:
        return EPS_CAPTIONS.get(self.norm, EPS_CAPTIONS["default"])


def is_standard_normal(s: LabSettings) -> bool:
    """Every channel's input is N(0, 1) already (no offset, unit scale, no spread): normalizing
    it shows little, so the page offers :data:`EXAMPLE_INPUT`."""
    return (s.mean_offset, s.scale, s.channel_spread) == (0.0, 1.0, 0.0)


def _histogram_rows(values: np.ndarray, unit: str, stage: str) -> pd.DataFrame:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:  # a constant unit: one narrow bin
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(low, high))
    return pd.DataFrame({"unit": unit, "stage": stage, "bin_start": edges[:-1], "bin_end": edges[1:], "count": counts})


def _channel0_output(x: torch.Tensor, s: LabSettings, eps: float) -> torch.Tensor:
    """Channel 0 of normcore's normalized output (training mode, no affine) at this eps.

    Only the values channel 0 shares statistics with are passed: channel 0 alone for BN and
    IN, its group for GN (as a one-group GroupNorm), the whole sample for LN and RMSNorm.
    """
    if s.norm == "batch":
        return F.batch_norm(x[:, :1], None, None, training=True, eps=eps)[:, 0]
    if s.norm == "instance":
        return F.instance_norm(x[:, :1], eps=eps)[:, 0]
    if s.norm == "group":
        return F.group_norm(x[:, : s.channels // s.num_groups], 1, eps=eps)[:, 0]
    if s.norm == "rms":
        return F.rms_norm(x, x.shape[1:], eps=eps)[:, 0]
    return F.layer_norm(x, x.shape[1:], eps=eps)[:, 0]


def _channel0_values_per_stat(s: LabSettings) -> int:
    """How many of channel 0's values one statistic group holds: N·H·W for BN, H·W otherwise."""
    return s.batch_size * s.spatial**2 if s.norm == "batch" else s.spatial**2


def eps_theory(s: LabSettings, quiet_channel: bool, eps: float) -> float:
    """Expected spread of channel 0's normalized values within a statistic group, at this eps.

    Channel 0 (std σ_0, M_0 of its values per group) is divided by sqrt(v + eps), where v is
    the biased variance of its unit: M values with population variance V, whose mean has
    standard error SE² = avg σ_c² / M, so E[v] = V − SE². Channel 0's own values keep a
    biased variance σ_0² (1 − 1/M_0). Hence

        sqrt(σ_0² (1 − 1/M_0) / (V − SE² + eps)).

    For BN and IN the unit is channel 0 alone (V − SE² = σ_0² (1 − 1/M)): this is
    1 / sqrt(1 + eps / σ_0²) up to the factor (1 − 1/M). For GN and LN the other channels
    make V large, so a quiet channel is squashed whatever eps is.

    RMSNorm divides by sqrt(q + eps), q the sample's mean square, whose expectation is
    exactly the unit's μ̄² + V (no bias term): sqrt(σ_0² (1 − 1/M_0) / (μ̄² + V + eps)).
    """
    _, var = population_stats(s, quiet_channel=quiet_channel)
    truth = unit_truth(s, quiet_channel)
    s0, se2, v = float(var[0]), float(truth.standard_error[0]) ** 2, float(truth.var[0])
    divisor = v + float(truth.mean[0]) ** 2 if s.norm == "rms" else v - se2
    return math.sqrt(s0 * (1 - 1 / _channel0_values_per_stat(s)) / (divisor + eps))


def channel0_spread(y0: torch.Tensor, s: LabSettings) -> float:
    """Measured: the std of channel 0's output values (N, H, W) within each statistic group,
    root-mean-square over the groups (one group for BN, one per sample otherwise). Within a
    group is what the layer standardizes; it leaves out how each sample's group mean moves."""
    y0 = y0.double()
    if s.norm == "batch":
        return float(y0.std(correction=0))
    return float(y0.var(dim=(1, 2), correction=0).mean().sqrt())


def eps_curve(x: torch.Tensor, s: LabSettings, quiet_channel: bool = False) -> pd.DataFrame:
    """Channel 0's output spread for every eps on the slider: measured with normcore on this
    batch (:func:`channel0_spread`) and :func:`eps_theory`."""
    rows = []
    for eps in EPS_CHOICES:
        measured = channel0_spread(_channel0_output(x, s, eps), s)
        rows.append((eps, measured, eps_theory(s, quiet_channel, eps)))
    return pd.DataFrame(rows, columns=["eps", "measured", "theory"])


def _moments(xd: torch.Tensor, yd: torch.Tensor, unit_of: dict[int, str]) -> pd.DataFrame:
    """Per channel: its unit, and the biased mean and variance before and after."""
    channels = xd.shape[1]
    var_in, mean_in = torch.var_mean(xd.transpose(0, 1).reshape(channels, -1), dim=1, correction=0)
    var_out, mean_out = torch.var_mean(yd.transpose(0, 1).reshape(channels, -1), dim=1, correction=0)
    return pd.DataFrame({
        "channel": range(channels), "unit": [unit_of[c] for c in range(channels)],
        "mean_before": mean_in.numpy(), "var_before": var_in.numpy(),
        "mean_after": mean_out.numpy(), "var_after": var_out.numpy(),
    })


def one_batch(s: LabSettings, quiet_channel: bool = False) -> BatchView:
    """The first batch of the stream (same seed) through a fresh normcore layer in training mode
    (which normalizes with the batch's own statistics, running statistics kept or not)."""
    x = draw_batch(s, make_generator(s.seed), quiet_channel=quiet_channel)
    layer = build_layer(s, track_running_stats=False).train()
    with torch.no_grad():
        y = layer(x)
    xd, yd = x.double(), y.double()
    labels, members = unit_labels(s, quiet_channel), unit_channels(s)
    shown = min(len(labels), HISTOGRAM_UNITS)
    histogram = pd.concat([
        _histogram_rows(t[:, members[u]].numpy().ravel(), labels[u], stage)
        for u in range(shown) for t, stage in ((xd, "before"), (yd, "after"))
    ], ignore_index=True)
    unit_of = {c: labels[u] for u, m in enumerate(members) for c in m}
    rms = rms_view(s, x, y, layer.last_stats.var) if s.norm == "rms" else None  # var: the mean square it divided by
    return BatchView(histogram, _moments(xd, yd, unit_of), eps_curve(x, s, quiet_channel), shown, len(labels),
                     tuple(x.shape), s.norm, rms)
