"""What the page says about a stream: its three numbers, and why a layer keeps running
statistics or not."""

from __future__ import annotations

import math

from normcore.ema import ema_half_life
from normcore.lab.norms import NORM_LABELS

from normcore.lab.experiments.live import rms
from normcore.lab.experiments.live.stream import LiveStream
from normcore.lab.experiments.live.units import unit_labels, unit_truth, values_per_stat

RUNNING_STATS = {
    "batch": "BatchNorm normalizes with the batch's statistics in training, so evaluation (one image at a "
    "time, no batch) needs estimates of them: it keeps running averages and uses those after model.eval().",
    "layer": "LayerNorm keeps no running statistics: each sample is normalized with its own mean and variance, "
    "which exist at evaluation time too, so training and evaluation do exactly the same thing.",
    "group": "GroupNorm keeps no running statistics: each sample's groups are normalized with their own mean "
    "and variance, available at evaluation time too, so training and evaluation do the same thing.",
    "instance": "InstanceNorm is per sample, so it needs no running statistics, and torch keeps none by default "
    "(track_running_stats=False). Turn them on to see them; eval then uses them instead of each sample's own.",
    "rms": "RMSNorm keeps no running statistics: each sample is divided by its own root mean square, which "
    "exists at evaluation time too, so training and evaluation do exactly the same thing.",
}
STREAM_CAPTIONS = {
    "default": "Thin: this batch's statistic (for per-sample norms averaged over the batch). Thick: running "
    "estimate. Dashed: the true population value. Batch variance is the biased one the layer divides by.",
    "rms": "Left: the output mean per sample, averaged over the batch (thin), and the population's "
    "μ/√(μ² + σ² + eps) (dashed): RMSNorm's output is centred only when its input is. Right: the mean square "
    "E[x²] it divided by (thin) and the population's μ² + σ² (dashed). No running estimate: it keeps none.",
}


def stream_caption(norm: str) -> str:
    return STREAM_CAPTIONS.get(norm, STREAM_CAPTIONS["default"])


def _third(stream: LiveStream, labels: list[str], u: int) -> tuple[str, str, str]:
    """The standard error of a batch mean, or for RMSNorm (which uses no mean) its output mean."""
    s, o = stream.settings, stream.options
    if s.norm == "rms":
        predicted, _ = rms.population_values(s, o.quiet_channel, stream.offset(max(stream.steps - 1, 0)))
        return ("Output mean (population)", f"{predicted[0]:.3g}",
                "μ/√(μ² + σ² + eps) for the population's μ and σ² over a sample: RMSNorm subtracts no mean, "
                "so its output mean is 0 only when the input's is.")
    error = unit_truth(s, o.quiet_channel).standard_error[u]
    return ("Std error of a batch mean", f"{error:.3g}",
            f"σ/√M for {labels[u]}, M = {values_per_stat(s):,} values per statistic: how far one batch's mean "
            "typically lands from the true mean.")


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
    labels = unit_labels(s, o.quiet_channel)
    u = 1 if o.quiet_channel and len(labels) > 1 else 0  # a typical unit, not the quiet one
    if tracked is None:
        half_life_text = "—"
        half_life_note = f"{NORM_LABELS[s.norm]} keeps no running average here, so momentum does not apply."
    else:
        half_life_text = "∞" if math.isinf(half_life) else f"{half_life:.1f} steps"
        half_life_note = f"After this many batches an old batch's weight in the running average has halved ({s.momentum_text()})."
    return [
        ("num_batches_tracked", "—" if tracked is None else str(tracked), counted),
        ("EMA half-life", half_life_text, half_life_note),
        _third(stream, labels, u),
    ]
