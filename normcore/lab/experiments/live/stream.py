"""The live stream: batches through a normcore layer in training mode, next to its torch.nn
twin fed the same batches, with a bounded history of batch, running and true statistics.

For RMSNorm, which has no mean or variance, the two statistics are its output mean (not 0)
and the mean square it divided by (:data:`STREAM_STATISTICS` says what each chart shows)."""

from __future__ import annotations

from collections import deque
from itertools import islice

import numpy as np
import pandas as pd
import torch

from normcore.lab import limits
from normcore.lab.layers import build_layer
from normcore.lab.populations import draw_batch, drift_offset, make_generator
from normcore.lab.settings import LabSettings

from normcore.lab.experiments.live.options import LiveOptions
from normcore.lab.experiments.live import rms
from normcore.lab.experiments.live.parity import Parity, compare
from normcore.lab.experiments.live.units import per_unit, unit_labels, unit_truth

CHART_WINDOW = 300  # steps shown on the stream charts (the history keeps MAX_STREAM_STEPS)
CHART_UNITS = 4  # lines per stream chart
# Play advances several batches per tick; at large batches fewer, so a tick stays short.
TICK_ELEMENTS = limits.MAX_ELEMENTS
HISTORY_COLUMNS = ("batch_mean", "batch_var", "running_mean", "running_var", "true_mean", "true_var")
# The two stream charts: (statistic in HISTORY_COLUMNS, chart title, y-axis title). RMSNorm
# records its output mean as "mean" and the mean square it divided by as "var".
STREAM_STATISTICS = {
    "default": (("mean", "Mean", "mean"), ("var", "Variance", "variance")),
    "rms": (("mean", "Output mean", "output mean (not 0)"), ("var", "Mean square E[x²]", "mean square")),
}


def stream_statistics(norm: str) -> tuple[tuple[str, str, str], ...]:
    return STREAM_STATISTICS.get(norm, STREAM_STATISTICS["default"])


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
    if new.norm == old.norm and new.norm in ("layer", "rms") and new.spatial != old.spatial:
        reasons.append(f"{new.norm_label}'s shape includes H and W, which changed")
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


class LiveStream:
    """Batches from the lab's distribution through a normcore layer in training mode.

    Each :meth:`step` draws one batch (the population mean possibly drifting), runs it
    through the normcore layer and its torch.nn twin, and records per unit: the batch
    statistics the layer normalized with (biased variance; for the per-sample norms averaged
    over the batch's samples), the running statistics (NaN where none are kept) and the true
    population values. The running variance is the unbiased one (torch's), so it converges
    to ``true_var``; the biased batch variance averages (M − 1)/M of it. For RMSNorm "mean"
    is the output mean and "var" the mean square it divided by (:data:`STREAM_STATISTICS`).
    """

    def __init__(self, settings: LabSettings, options: LiveOptions = LiveOptions(), max_steps: int = limits.MAX_STREAM_STEPS):
        self.settings, self.options, self.max_steps = settings, options, max_steps
        self.reset()

    def reset(self) -> None:
        s = self.settings
        # BatchNorm always keeps running statistics here; InstanceNorm when the option says so.
        track = s.norm == "batch" or self.options.track_running_stats
        self.layer = build_layer(s, track_running_stats=track).train()
        self.twin = build_layer(s, library=torch.nn, track_running_stats=track).train()
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
        if s.norm == "rms":  # its output mean and the mean square (stats.var) it divided by
            batch = (np.array([rms.output_mean(y)]), per_unit(stats.var, units))
            true = rms.population_values(s, o.quiet_channel, offset)
        else:
            batch, true = (per_unit(stats.mean, units), per_unit(stats.var, units)), (truth.mean, truth.var)
        record = np.stack([*batch, *running, *true])
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
