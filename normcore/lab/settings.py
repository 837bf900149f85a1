"""The shared lab settings: one definition of every shared control, its default and range.

UI-free. The dashboard's widgets are generated from :data:`FIELDS`, experiments take a
:class:`LabSettings`, and a view is shared by link through :func:`to_query` /
:func:`from_query`. Defaults are torch's defaults where torch has one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from normcore.axes import NORM_KINDS
from normcore.ema import keras_momentum_from_torch
from normcore.lab import limits
from normcore.lab.fields import Field, Schema
from normcore.lab.norms import NORM_LABELS, divisors

# eps is chosen on a log scale: 1e-8, 3e-8, 1e-7, ..., 3e-1, 1.
EPS_CHOICES = tuple(float(f"{m}e{k}") for k in range(-8, 0) for m in (1, 3)) + (1.0,)
MOMENTUM_CONVENTIONS = ("pytorch", "keras")
CONVENTION_LABELS = {
    "pytorch": "PyTorch: running = (1 − m)·running + m·batch",
    "keras": "Keras / d2l: running = m·running + (1 − m)·batch",
}


def _momentum_label(m) -> str:
    return "None (cumulative average)" if m is None else f"{m:g}"


FIELDS = Schema((
    Field("norm", "Normalization", "batch", "choice",
          "Which values share one mean and variance (RMSNorm: one mean square, no mean).",
          choices=NORM_KINDS, labels=NORM_LABELS),
    Field("batch_size", "Batch size N", 32, "int", "Samples per batch.", 1, limits.MAX_BATCH_SIZE, 1,
          caps=("elements_per_batch",)),
    Field("channels", "Channels C", 4, "int", "Feature maps per sample.", 1, limits.MAX_CHANNELS, 1,
          caps=("elements_per_batch",)),
    Field("spatial", "Spatial size H = W", 8, "int", "Height and width of each feature map.", 1, limits.MAX_SPATIAL, 1,
          caps=("elements_per_batch",)),
    Field("momentum", "Momentum", 0.1, "float", "Weight of the EMA update (convention shown below).", 0.0, 1.0, 0.01,
          nullable=True, resolution=4, labels=_momentum_label),
    Field("momentum_convention", "Momentum convention", "pytorch", "choice", "Which framework's meaning of momentum.",
          choices=MOMENTUM_CONVENTIONS, labels=CONVENTION_LABELS, widget="radio"),
    Field("eps", "eps", 1e-5, "float", "Added to the variance inside the square root.", choices=EPS_CHOICES,
          labels=lambda v: f"{v:.0e}", snap=True),
    Field("num_groups", "Groups G (GroupNorm)", 2, "int", "GroupNorm splits the channels into G groups.",
          1, limits.MAX_CHANNELS, 1),
    Field("affine", "Affine (γ, β)", True, "bool", "Learnable per-channel scale and shift after normalizing."),
    Field("seed", "Seed", 0, "int", "Random seed for the input batches.", 0, 2**31 - 1, 1, widget="number_input"),
    Field("mean_offset", "Mean offset", 0.0, "float", "Mean of every channel.", -100.0, 100.0, 0.1, widget="number_input"),
    Field("scale", "Scale (std)", 1.0, "float", "Standard deviation of every channel.", 0.01, 100.0, 0.1,
          widget="number_input"),
    Field("channel_spread", "Channel-to-channel spread", 0.0, "float", "How much channel means and stds differ.",
          0.0, 10.0, 0.1),
    Field("outlier_fraction", "Outlier fraction", 0.0, "float", "Share of values replaced by large outliers.",
          0.0, 0.5, 0.01),
))


@dataclass(frozen=True)
class LabSettings:
    """Everything the shared sidebar controls, with :data:`FIELDS`' defaults. ``momentum`` is
    always stored in PyTorch's convention (weight of the new batch); ``None`` means a
    cumulative average."""

    norm: str = FIELDS["norm"].default
    batch_size: int = FIELDS["batch_size"].default
    channels: int = FIELDS["channels"].default
    spatial: int = FIELDS["spatial"].default  # H = W
    momentum: float | None = FIELDS["momentum"].default
    momentum_convention: str = FIELDS["momentum_convention"].default  # how the momentum control is shown
    eps: float = FIELDS["eps"].default
    num_groups: int = FIELDS["num_groups"].default
    affine: bool = FIELDS["affine"].default
    seed: int = FIELDS["seed"].default
    # Input distribution: channel c has mean mean_offset + channel_spread·z_c and std scale·s_c
    mean_offset: float = FIELDS["mean_offset"].default
    scale: float = FIELDS["scale"].default
    channel_spread: float = FIELDS["channel_spread"].default
    outlier_fraction: float = FIELDS["outlier_fraction"].default

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch_size, self.channels, self.spatial, self.spatial)

    @property
    def num_elements(self) -> int:
        return math.prod(self.input_shape)

    @property
    def norm_label(self) -> str:
        return NORM_LABELS[self.norm]

    def momentum_text(self) -> str:
        """The momentum in both conventions, e.g. 'PyTorch 0.1 = Keras/d2l 0.9'."""
        if self.momentum is None:
            return "None: cumulative average (factor 1/num_batches_tracked)"
        return f"PyTorch {self.momentum:g} = Keras/d2l {keras_momentum_from_torch(self.momentum):g}"


DEFAULTS = LabSettings()


@dataclass(frozen=True)
class Problem:
    """Something about a combination of settings the user should read. ``level`` is
    ``"error"`` (the affected view cannot run) or ``"warning"`` (it runs, but read this).
    ``fields`` names the settings it is about: a view that does not read all of them (a
    scenario that sweeps the batch size itself) has nothing to say about it."""

    level: str
    message: str
    fields: tuple[str, ...] = ()


def problems(s: LabSettings, training: bool = True) -> list[Problem]:
    """Every reason the current settings cannot run (or deserve a warning), in words."""
    out: list[Problem] = []
    if too_many := limits.elements_per_batch(s.batch_size, s.channels, s.spatial):
        out.append(Problem("error", too_many, ("batch_size", "channels", "spatial")))
    if s.norm == "group" and s.channels % s.num_groups:
        ok = ", ".join(str(d) for d in divisors(s.channels))
        out.append(Problem("error", (
            f"GroupNorm needs the channel count to be divisible by the number of groups: "
            f"num_channels ({s.channels}) must be divisible by num_groups ({s.num_groups}). "
            f"Valid group counts for {s.channels} channels: {ok}."
        ), ("norm", "channels", "num_groups")))
    values_per_channel = s.batch_size * s.spatial * s.spatial
    if s.norm == "batch" and training and values_per_channel == 1:
        out.append(Problem("error", (
            "Expected more than 1 value per channel when training (this is torch's error). "
            "With batch size 1 and a 1×1 map, each channel's batch mean is the value itself and its variance "
            "is 0, so BatchNorm would output 0 for everything. Use batch size ≥ 2, a larger spatial size, "
            "or a norm that does not depend on the batch (LayerNorm, GroupNorm)."
        ), ("norm", "batch_size", "spatial")))
    elif s.norm == "batch" and training and s.batch_size == 1:
        out.append(Problem("warning", (
            "Batch size 1: BatchNorm's statistics now come from one sample's spatial positions only, "
            "so it behaves like InstanceNorm in training but not in eval."
        ), ("norm", "batch_size")))
    if s.norm == "instance" and s.spatial == 1:
        out.append(Problem("error", (
            "Expected more than 1 spatial element when training (torch's error): InstanceNorm averages "
            "over each sample's H×W positions, and a 1×1 map has only one. Increase the spatial size."
        ), ("norm", "spatial")))
    if s.norm == "rms" and s.channels * s.spatial**2 == 1:
        out.append(Problem("warning", (
            "RMSNorm over one value per sample (1 channel, a 1×1 map): each output is x/√(x² + eps), so ±1 "
            "whatever x is (LayerNorm would output 0). Use more channels or a larger spatial size."
        ), ("norm", "channels", "spatial")))
    if s.norm == "group" and s.channels % s.num_groups == 0 and s.batch_size * (s.channels // s.num_groups) * s.spatial**2 == 1:
        out.append(Problem("error", "Expected more than 1 value per group (torch's error): increase the batch, spatial size "
                           "or channels per group.", ("norm", "batch_size", "channels", "num_groups", "spatial")))
    return out


def errors(s: LabSettings, training: bool = True) -> list[str]:
    return [p.message for p in problems(s, training) if p.level == "error"]


# ---------------------------------------------------------------------------------------
# Sharing a view by link: settings <-> URL query parameters (the schema does the work)
# ---------------------------------------------------------------------------------------


def to_query(s: LabSettings) -> dict[str, str]:
    """Only the settings that differ from the defaults, as strings (a short URL)."""
    return FIELDS.to_query(asdict(s))


def from_query(params: dict) -> tuple[LabSettings, list[str]]:
    """Settings from URL parameters. Unknown names are ignored; a bad value falls back to
    its default and yields a message saying which parameter was wrong and why."""
    values, messages = FIELDS.from_query(params)
    return replace(DEFAULTS, **values), messages


def as_dict(s: LabSettings) -> dict:
    return asdict(s)
