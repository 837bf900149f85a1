"""The experiments behind the Live statistics page. UI-free: settings in, tidy frames out.

* :func:`diagram_frame`: which values of an (N, C, H·W) block share one mean and variance.
* :func:`one_batch`: one batch before and after normalizing: histograms, a per-channel table
  of moments, and the output std of channel 0 as eps grows (measured vs theory).
* :class:`LiveStream`: batches streaming through a normcore layer in training mode, next to
  its torch.nn twin fed the same batches; a bounded history of batch, running and true
  statistics, and the live parity between the two.
* :class:`LiveOptions`: the page's own controls (quiet channel, drift, speed) and their URL form.

A *unit* is what a histogram or a line on the stream charts stands for: a channel for
BatchNorm and InstanceNorm, a group of channels for GroupNorm, all channels for LayerNorm.
It is the set of channels whose values are standardized together (per sample, for the
per-sample norms).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields, replace
from itertools import islice

import numpy as np
import pandas as pd
import torch

import normcore
from normcore import functional as F
from normcore.lab import limits
from normcore.lab.populations import DRIFTS, draw_batch, drift_offset, make_generator, population_stats
from normcore.lab.settings import EPS_CHOICES, LabSettings
from normcore.ema import batch_mean_standard_error, ema_half_life
from normcore.axes import statistic_ids

# What the diagram draws at most: enough to see the pattern, few enough to read.
DIAGRAM_SAMPLES, DIAGRAM_CHANNELS, DIAGRAM_POSITIONS = 4, 8, 6
HISTOGRAM_UNITS = 6  # histograms drawn for the first units only
HISTOGRAM_BINS = 40
CHART_WINDOW = 300  # steps shown on the stream charts (the history keeps MAX_STREAM_STEPS)
CHART_UNITS = 4  # lines per stream chart
# Play advances several batches per tick; at large batches fewer, so a tick stays short.
TICK_ELEMENTS = limits.MAX_ELEMENTS
PARITY_TOLERANCE = 1e-4  # relative to max(1, |torch value|): float32 rounding is ~1e-7

# One line per norm for the page: what shares a statistic, and why running statistics are kept or not.
SHARING = {
    "batch": "BatchNorm: one mean and variance **per channel**, over every sample and position of the batch.",
    "layer": "LayerNorm: one mean and variance **per sample**, over all its channels and positions.",
    "group": "GroupNorm: one mean and variance **per sample and group** of C/G channels.",
    "instance": "InstanceNorm: one mean and variance **per sample and channel**, over its positions only.",
}
RUNNING_STATS = {
    "batch": "BatchNorm normalizes with the batch's statistics in training, so evaluation (one image at a "
    "time, no batch) needs estimates of them: it keeps running averages and uses those after model.eval().",
    "layer": "LayerNorm keeps no running statistics: each sample is normalized with its own mean and variance, "
    "which exist at evaluation time too, so training and evaluation do exactly the same thing.",
    "group": "GroupNorm keeps no running statistics: each sample's groups are normalized with their own mean "
    "and variance, available at evaluation time too, so training and evaluation do the same thing.",
    "instance": "InstanceNorm is per sample, so it needs no running statistics, and torch keeps none by default "
    "(track_running_stats=False). Turn them on to see them; eval then uses them instead of each sample's own.",
}

UNIT_WORD = {"batch": "channel", "instance": "channel", "group": "group", "layer": "sample (all channels)"}

# --------------------------------------------------------------------------------------
# Units: which channels are standardized together, and their true statistics
# --------------------------------------------------------------------------------------


def unit_channels(s: LabSettings) -> list[list[int]]:
    """The channels of each unit, in order."""
    if s.norm == "layer":
        return [list(range(s.channels))]
    if s.norm == "group":
        k = s.channels // s.num_groups
        return [list(range(g * k, (g + 1) * k)) for g in range(s.num_groups)]
    return [[c] for c in range(s.channels)]


def unit_labels(s: LabSettings, quiet_channel: bool = False) -> list[str]:
    if s.norm == "layer":
        return ["all channels"]
    if s.norm == "group":
        return [f"group {g} (ch {m[0]})" if len(m) == 1 else f"group {g} (ch {m[0]}–{m[-1]})" for g, m in enumerate(unit_channels(s))]
    return [f"channel {c}" + (" (quiet)" if quiet_channel and c == 0 else "") for c in range(s.channels)]


def values_per_stat(s: LabSettings) -> int:
    """How many values one mean/variance is taken over (M)."""
    hw = s.spatial * s.spatial
    return {"batch": s.batch_size * hw, "layer": s.channels * hw, "group": s.channels // s.num_groups * hw, "instance": hw}[s.norm]


@dataclass(frozen=True)
class UnitTruth:
    """Population values per unit (float64 arrays): the mean and variance of the pooled values
    of the unit's channels, and the standard error of one statistic's mean."""

    mean: np.ndarray
    var: np.ndarray
    standard_error: np.ndarray


def unit_truth(s: LabSettings, quiet_channel: bool = False, offset: float = 0.0) -> UnitTruth:
    """Closed forms from :func:`normcore.lab.populations.population_stats`.

    A unit pooling channels with means μ_c and variances σ_c² (equal counts each) has mean
    μ̄ = avg μ_c and variance V = avg σ_c² + avg (μ_c − μ̄)². Its mean over M values, M/k
    from each of its k channels, has standard error sqrt(avg σ_c² / M): the channel mix is
    fixed, so only the within-channel noise counts.
    """
    mu, var = (t.numpy() for t in population_stats(s, offset, quiet_channel=quiet_channel))
    m = values_per_stat(s)
    means, variances, errors = [], [], []
    for members in unit_channels(s):
        mu_u, var_u = mu[members], var[members]
        means.append(mu_u.mean())
        variances.append(var_u.mean() + ((mu_u - mu_u.mean()) ** 2).mean())
        errors.append(batch_mean_standard_error(math.sqrt(var_u.mean()), m))
    return UnitTruth(np.array(means), np.array(variances), np.array(errors))


# --------------------------------------------------------------------------------------
# 1. Which values share one mean and variance
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagram:
    frame: pd.DataFrame  # sample, channel, position, statistic (0.. in order of appearance), shares
    shown: tuple[int, int, int]  # (samples, channels, positions) drawn
    full: tuple[int, int, int]  # (N, C, H·W) of the real batch

    @property
    def caption(self) -> str:
        (n, c, p), (fn, fc, fp) = self.shown, self.full
        cut = (n, c, p) != (fn, fc, fp)
        what = f"{n} of {fn} samples, {c} of {fc} channels, {p} of {fp} positions" if cut else "the whole batch"
        return f"Drawn: {what}. Cells with the same colour and number share one mean and variance."


def diagram_frame(s: LabSettings) -> Diagram:
    """One row per drawn cell of the (N, C, H·W) block, coloured by the statistic it shares.

    The ids come from ``normcore.axes.statistic_ids``; only the first few samples,
    channels and positions are drawn. All channels go into the ids (GroupNorm's groups
    depend on C), and the ids of the first samples and positions do not depend on how many
    follow, so the cut block has exactly the full block's ids.
    """
    n, c, p = min(s.batch_size, DIAGRAM_SAMPLES), min(s.channels, DIAGRAM_CHANNELS), min(s.spatial**2, DIAGRAM_POSITIONS)
    ids = statistic_ids(s.norm, (n, s.channels, p), s.num_groups)[:, :c, :]
    sample, channel, position = np.meshgrid(np.arange(n), np.arange(c), np.arange(p), indexing="ij")
    raw = ids.numpy().ravel()
    _, first = np.unique(raw, return_index=True)
    renumber = {v: i for i, v in enumerate(raw[np.sort(first)])}  # 0, 1, 2 ... as they appear
    frame = pd.DataFrame({
        "sample": sample.ravel(), "channel": channel.ravel(), "position": position.ravel(),
        "statistic": [renumber[v] for v in raw], "shares": values_per_stat(s),
    })
    return Diagram(frame, (n, c, p), (s.batch_size, s.channels, s.spatial**2))


# --------------------------------------------------------------------------------------
# Layers: a normcore layer and its torch.nn twin, built from the same settings
# --------------------------------------------------------------------------------------


def build_layer(s: LabSettings, track_running_stats: bool = False, library=normcore) -> torch.nn.Module:
    """The layer the settings describe, from ``normcore`` or ``torch.nn`` (same signatures)."""
    if s.norm == "batch":
        return library.BatchNorm2d(s.channels, eps=s.eps, momentum=s.momentum, affine=s.affine)
    if s.norm == "layer":
        return library.LayerNorm((s.channels, s.spatial, s.spatial), eps=s.eps, elementwise_affine=s.affine)
    if s.norm == "group":
        return library.GroupNorm(s.num_groups, s.channels, eps=s.eps, affine=s.affine)
    return library.InstanceNorm2d(s.channels, eps=s.eps, momentum=s.momentum, affine=s.affine, track_running_stats=track_running_stats)


def per_unit(stat: torch.Tensor, units: int) -> np.ndarray:
    """A layer's statistics averaged over samples to one value per unit: BN's (C,) stays,
    IN's (N, C), GN's (N, G) and LN's (N,) are averaged over N."""
    return stat.double().reshape(-1, units).mean(0).numpy()


# --------------------------------------------------------------------------------------
# 2. One batch, before and after
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchView:
    histogram: pd.DataFrame  # unit, stage ("before"/"after"), bin_start, bin_end, count
    moments: pd.DataFrame  # channel, unit, mean/var before and after (biased, float64)
    eps_curve: pd.DataFrame  # eps, measured, theory: channel 0's output std
    units_shown: int
    units_total: int


def _histogram_rows(values: np.ndarray, unit: str, stage: str) -> pd.DataFrame:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:  # a constant unit: one narrow bin
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(low, high))
    return pd.DataFrame({"unit": unit, "stage": stage, "bin_start": edges[:-1], "bin_end": edges[1:], "count": counts})


def _channel0_output(x: torch.Tensor, s: LabSettings, eps: float) -> torch.Tensor:
    """Channel 0 of normcore's normalized output (training mode, no affine) at this eps.

    Only the values channel 0 shares statistics with are passed: channel 0 alone for BN and
    IN, its group for GN (as a one-group GroupNorm), the whole sample for LN.
    """
    if s.norm == "batch":
        return F.batch_norm(x[:, :1], None, None, training=True, eps=eps)[:, 0]
    if s.norm == "instance":
        return F.instance_norm(x[:, :1], eps=eps)[:, 0]
    if s.norm == "group":
        return F.group_norm(x[:, : s.channels // s.num_groups], 1, eps=eps)[:, 0]
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
    """
    _, var = population_stats(s, quiet_channel=quiet_channel)
    truth = unit_truth(s, quiet_channel)
    s0, se2, v = float(var[0]), float(truth.standard_error[0]) ** 2, float(truth.var[0])
    return math.sqrt(s0 * (1 - 1 / _channel0_values_per_stat(s)) / (v - se2 + eps))


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


def one_batch(s: LabSettings, quiet_channel: bool = False) -> BatchView:
    """The first batch of the stream (same seed) through a fresh normcore layer in training mode."""
    x = draw_batch(s, make_generator(s.seed), quiet_channel=quiet_channel)
    layer = build_layer(s).train()
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
    var_in, mean_in = torch.var_mean(xd.transpose(0, 1).reshape(s.channels, -1), dim=1, correction=0)
    var_out, mean_out = torch.var_mean(yd.transpose(0, 1).reshape(s.channels, -1), dim=1, correction=0)
    moments = pd.DataFrame({
        "channel": range(s.channels), "unit": [unit_of[c] for c in range(s.channels)],
        "mean_before": mean_in.numpy(), "var_before": var_in.numpy(),
        "mean_after": mean_out.numpy(), "var_after": var_out.numpy(),
    })
    return BatchView(histogram, moments, eps_curve(x, s, quiet_channel), shown, len(labels))


# --------------------------------------------------------------------------------------
# 3. The live stream
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveOptions:
    """The Live statistics page's own controls (the shared ones live in LabSettings)."""

    quiet_channel: bool = False
    drift: str = "none"
    drift_size: float = 2.0  # in units of the input's std (the Scale control)
    drift_period: int = 200  # steps
    track_running_stats: bool = False  # InstanceNorm only; torch's default is False
    steps_per_tick: int = 1  # batches per Play tick

    RANGES = {"drift_size": (0.0, 10.0), "drift_period": (20, 1000), "steps_per_tick": (1, 50)}
    URL_NAMES = {
        "quiet_channel": "quiet", "drift": "drift", "drift_size": "drift_size",
        "drift_period": "drift_period", "track_running_stats": "in_running", "steps_per_tick": "speed",
    }

    def to_query(self) -> dict[str, str]:
        """The options that differ from the defaults, as URL parameters."""
        default, out = LiveOptions(), {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                out[self.URL_NAMES[f.name]] = str(value).lower() if isinstance(value, bool) else str(value)
        return out

    @classmethod
    def from_query(cls, params: dict) -> tuple[LiveOptions, list[str]]:
        """Options from URL parameters; a bad value keeps its default and yields a message."""
        default, values, messages = cls(), {}, []
        for f in fields(cls):
            url = cls.URL_NAMES[f.name]
            if url not in params:
                continue
            raw = params[url]
            raw = str(raw[-1] if isinstance(raw, (list, tuple)) else raw).strip()
            try:
                values[f.name] = cls._parse(f.name, raw, getattr(default, f.name))
            except ValueError as exc:
                messages.append(f"Ignored URL parameter {url}={raw!r}: {exc}. Using the default {getattr(default, f.name)!r}.")
        return replace(default, **values), messages

    @classmethod
    def _parse(cls, name: str, raw: str, default):
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return raw.lower() in ("true", "1")
        if name == "drift":
            if raw not in DRIFTS:
                raise ValueError(f"expected one of {', '.join(DRIFTS)}")
            return raw
        value = int(raw) if isinstance(default, int) else float(raw)
        low, high = cls.RANGES[name]
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"expected a value from {low:g} to {high:g}")
        return value


def restart_reason(old: LabSettings, old_options: LiveOptions, new: LabSettings, new_options: LiveOptions) -> str | None:
    """Why new settings need a new layer (and so a fresh stream), or None if the stream can go on.

    Momentum, eps, batch size, drift and the input distribution apply to the running layer,
    so the user sees the running statistics react; a different layer shape cannot.
    """
    reasons = []
    if new.norm != old.norm:
        reasons.append(f"the normalization is now {new.norm_label}")
    if new.channels != old.channels:
        reasons.append(f"the channel count changed from {old.channels} to {new.channels}")
    if new.norm == old.norm == "group" and new.num_groups != old.num_groups:
        reasons.append(f"the group count changed from {old.num_groups} to {new.num_groups}")
    if new.norm == old.norm == "layer" and new.spatial != old.spatial:
        reasons.append("LayerNorm's shape includes H and W, which changed")
    if new.affine != old.affine:
        reasons.append("the layer " + ("now has" if new.affine else "no longer has") + " an affine γ, β")
    if new.seed != old.seed:
        reasons.append("a new seed starts a new stream of batches")
    if new.norm == old.norm == "instance" and new_options.track_running_stats != old_options.track_running_stats:
        reasons.append("InstanceNorm's track_running_stats changed")
    if not reasons:
        return None
    return "The stream restarted: " + "; ".join(reasons) + "."


def steps_per_tick(s: LabSettings, options: LiveOptions) -> int:
    """Batches per Play tick: the chosen speed, fewer at large batches so a tick stays short."""
    return max(1, min(options.steps_per_tick, TICK_ELEMENTS // max(s.num_elements, 1)))


@dataclass(frozen=True)
class Parity:
    """Max |normcore − torch.nn| on the same batch: output, running mean, running variance
    (None where the layer keeps no running statistics)."""

    output: float
    running_mean: float | None
    running_var: float | None
    ok: bool

    @property
    def summary(self) -> str:
        gaps = [("output", self.output), ("running mean", self.running_mean), ("running var", self.running_var)]
        text = " · ".join(f"{name} {gap:.1e}" for name, gap in gaps if gap is not None)
        return ("✅" if self.ok else "⚠️") + " normcore vs torch.nn, max |Δ| this step: " + text


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    # In the inputs' own dtype: two float32 values this close subtract exactly (Sterbenz), and
    # a float64 copy of a batch at the caps costs more than the whole comparison.
    return float((a - b).abs_().max())


def compare(layer: torch.nn.Module, twin: torch.nn.Module, y: torch.Tensor, y_twin: torch.Tensor) -> Parity:
    out, ok = _max_abs(y, y_twin), True
    ok &= out <= PARITY_TOLERANCE * max(1.0, float(y_twin.abs().max()))
    found = {}
    for name in ("running_mean", "running_var"):
        mine, theirs = getattr(layer, name, None), getattr(twin, name, None)
        if mine is None or theirs is None:
            found[name] = None
            continue
        found[name] = _max_abs(mine, theirs)
        ok &= found[name] <= PARITY_TOLERANCE * max(1.0, float(theirs.abs().max()))
    return Parity(out, found["running_mean"], found["running_var"], bool(ok))


HISTORY_COLUMNS = ("batch_mean", "batch_var", "running_mean", "running_var", "true_mean", "true_var")


class LiveStream:
    """Batches from the lab's distribution through a normcore layer in training mode.

    Each :meth:`step` draws one batch (the population mean possibly drifting), runs it
    through the normcore layer and its torch.nn twin, and records per unit: the batch
    statistics the layer normalized with (biased variance; for the per-sample norms averaged
    over the batch's samples), the running statistics (NaN where none are kept) and the true
    population values. The running variance is the unbiased one (torch's), so it converges
    to ``true_var``; the biased batch variance averages (M − 1)/M of it.
    """

    def __init__(self, settings: LabSettings, options: LiveOptions = LiveOptions(), max_steps: int = limits.MAX_STREAM_STEPS):
        self.settings, self.options, self.max_steps = settings, options, max_steps
        self.reset()

    def reset(self) -> None:
        s, track = self.settings, self.options.track_running_stats
        self.layer = build_layer(s, track).train()
        self.twin = build_layer(s, track, library=torch.nn).train()
        self.generator = make_generator(s.seed)
        self.steps = 0
        self._records: deque[tuple[int, np.ndarray]] = deque(maxlen=self.max_steps)
        self.parity: Parity | None = None
        self.worst_output_gap = 0.0

    def update(self, settings: LabSettings, options: LiveOptions) -> str | None:
        """Take new settings: restart if the layer must change (returns the note why),
        otherwise carry on with the new eps / momentum / distribution."""
        reason = restart_reason(self.settings, self.options, settings, options)
        self.settings, self.options = settings, options
        if reason:
            self.reset()
            return reason
        for layer in (self.layer, self.twin):
            layer.eps = settings.eps
            if hasattr(layer, "momentum"):
                layer.momentum = settings.momentum
        return None

    @property
    def keeps_running_stats(self) -> bool:
        return getattr(self.layer, "running_mean", None) is not None

    @property
    def num_batches_tracked(self) -> int | None:
        tracked = getattr(self.layer, "num_batches_tracked", None)
        return None if tracked is None else int(tracked)

    def offset(self, step: int) -> float:
        o = self.options
        return drift_offset(o.drift, step, o.drift_size * self.settings.scale, o.drift_period)

    def step(self, count: int = 1) -> None:
        for _ in range(count):
            self._step()

    def _step(self) -> None:
        s, o = self.settings, self.options
        offset = self.offset(self.steps)
        x = draw_batch(s, self.generator, offset=offset, quiet_channel=o.quiet_channel)
        with torch.no_grad():
            y, y_twin = self.layer(x), self.twin(x)
        truth = unit_truth(s, o.quiet_channel, offset)
        units = len(truth.mean)
        stats = self.layer.last_stats
        nan = np.full(units, np.nan)
        running = (self.layer.running_mean.double().numpy(), self.layer.running_var.double().numpy()) if self.keeps_running_stats else (nan, nan)
        record = np.stack([per_unit(stats.mean, units), per_unit(stats.var, units), *running, truth.mean, truth.var])
        self.steps += 1
        self._records.append((self.steps, record))
        self.parity = compare(self.layer, self.twin, y, y_twin)
        self.worst_output_gap = max(self.worst_output_gap, self.parity.output)

    def history(self, last: int | None = None, max_units: int | None = None) -> pd.DataFrame:
        """Tidy history: one row per (step, unit) with :data:`HISTORY_COLUMNS`, oldest first.

        ``last`` keeps only the last steps, ``max_units`` only the first units.
        """
        labels = unit_labels(self.settings, self.options.quiet_channel)
        labels = labels[:max_units] if max_units else labels
        records = list(islice(self._records, max(0, len(self._records) - last), None)) if last else list(self._records)
        if not records:
            return pd.DataFrame(columns=["step", "unit", *HISTORY_COLUMNS])
        steps = np.array([r[0] for r in records])
        values = np.stack([r[1][:, : len(labels)] for r in records])  # (steps, columns, units)
        frame = pd.DataFrame({
            "step": np.repeat(steps, len(labels)),
            "unit": np.tile(labels, len(records)),
        })
        for i, name in enumerate(HISTORY_COLUMNS):
            frame[name] = values[:, i, :].ravel()
        return frame


def series_frame(history: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """Long form of ``history`` for one statistic ("mean" or "var"): step, unit, series, value,
    with series "batch", "running" and "true" (rows with no value, e.g. no running stats, dropped)."""
    # Built with numpy rather than DataFrame.melt: this runs on every Play tick.
    blocks = [(name, history[f"{name}_{statistic}"].to_numpy()) for name in ("batch", "running", "true")]
    blocks = [(name, values) for name, values in blocks if not np.isnan(values).all()]
    n = len(history)
    long = pd.DataFrame({
        "step": np.tile(history["step"].to_numpy(), len(blocks)),
        "unit": np.tile(history["unit"].to_numpy(), len(blocks)),
        "series": np.repeat([name for name, _ in blocks], n),
        "value": np.concatenate([values for _, values in blocks]) if blocks else np.array([], dtype=float),
    })
    return long.dropna(subset=["value"]).reset_index(drop=True)


def readouts(stream: LiveStream) -> list[tuple[str, str, str]]:
    """The stream's three numbers, each (label, value, one-line explanation)."""
    s, o = stream.settings, stream.options
    tracked, half_life = stream.num_batches_tracked, ema_half_life(s.momentum)
    if tracked is None:
        counted = "No running statistics are kept, so there is nothing to count."
    elif s.norm == "instance":
        counted = "torch's InstanceNorm updates its running statistics but never counts its batches."
    else:
        counted = "Batches averaged into the running statistics so far."
    labels, errors = unit_labels(s, o.quiet_channel), unit_truth(s, o.quiet_channel).standard_error
    u = 1 if o.quiet_channel and len(labels) > 1 else 0  # a typical unit, not the quiet one
    return [
        ("num_batches_tracked", "—" if tracked is None else str(tracked), counted),
        ("EMA half-life", "∞" if math.isinf(half_life) else f"{half_life:.1f} steps",
         f"After this many batches an old batch's weight in the running average has halved ({s.momentum_text()})."),
        ("Std error of a batch mean", f"{errors[u]:.3g}",
         f"σ/√M for {labels[u]}, M = {values_per_stat(s):,} values per statistic: how far one batch's mean "
         "typically lands from the true mean."),
    ]
