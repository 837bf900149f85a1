"""The Live statistics page's own controls (the shared ones are ``LabSettings``): a quiet
channel, a drifting population mean, InstanceNorm's running statistics and the Play speed.

:data:`FIELDS` says each control once (widget, range, URL name); :class:`LiveOptions` is
the frozen value the stream runs with, read from and written to the URL through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from normcore.lab import limits
from normcore.lab.fields import Field, QueryOptions, Schema
from normcore.lab.populations import DRIFT_LABELS, DRIFTS, QUIET_STD

FIELDS = Schema((
    Field("quiet_channel", f"Add a quiet channel (channel 0 gets std {QUIET_STD:g}, variance {QUIET_STD**2:g})",
          False, "bool", url="quiet"),
    Field("drift", "Drift of the population mean", "none", "choice", choices=DRIFTS, labels=DRIFT_LABELS),
    Field("drift_size", "Drift size (× input std)", 2.0, "float", low=0.0, high=10.0, step=0.5),
    Field("drift_period", "Drift period (steps)", 200, "int", low=20, high=limits.MAX_DRIFT_PERIOD, step=10),
    Field("track_running_stats", "InstanceNorm: track_running_stats", False, "bool", url="in_running"),
    Field("steps_per_tick", "Batches per Play tick", 1, "int", low=1, high=limits.MAX_STEPS_PER_TICK, step=1,
          url="speed"),
))
DRIFT_SHAPE = ("drift_size", "drift_period")  # the options that mean something only with a drift
STREAM_OPTIONS = ("drift", *DRIFT_SHAPE, "steps_per_tick")  # drawn side by side above the stream


@dataclass(frozen=True)
class LiveOptions(QueryOptions):
    """The page's options as the stream uses them; defaults are :data:`FIELDS`' defaults."""

    SCHEMA: ClassVar[Schema] = FIELDS
    quiet_channel: bool = FIELDS["quiet_channel"].default
    drift: str = FIELDS["drift"].default
    drift_size: float = FIELDS["drift_size"].default  # in units of the input's std (the Scale control)
    drift_period: int = FIELDS["drift_period"].default  # steps
    track_running_stats: bool = FIELDS["track_running_stats"].default  # InstanceNorm only; torch's default
    steps_per_tick: int = FIELDS["steps_per_tick"].default  # batches per Play tick
