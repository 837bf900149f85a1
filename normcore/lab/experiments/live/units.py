"""Units: which values share one mean and variance, and the true statistics of each unit.

A *unit* is what a histogram or a line on the stream charts stands for: a channel for
BatchNorm and InstanceNorm, a group of channels for GroupNorm, all channels for LayerNorm
and RMSNorm (which share LayerNorm's values but take only their mean square).
It is the set of channels whose values are standardized together (per sample, for the
per-sample norms). :func:`diagram_frame` draws which values of an (N, C, H·W) block share
one statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from normcore.axes import statistic_ids
from normcore.ema import batch_mean_standard_error
from normcore.lab.populations import population_stats
from normcore.lab.settings import LabSettings

# What the diagram draws at most: enough to see the pattern, few enough to read.
DIAGRAM_SAMPLES, DIAGRAM_CHANNELS, DIAGRAM_POSITIONS = 4, 8, 6

# One line per norm for the page: what shares a statistic.
SHARING = {
    "batch": "BatchNorm: one mean and variance **per channel**, over every sample and position of the batch.",
    "layer": "LayerNorm: one mean and variance **per sample**, over all its channels and positions.",
    "group": "GroupNorm: one mean and variance **per sample and group** of C/G channels.",
    "instance": "InstanceNorm: one mean and variance **per sample and channel**, over its positions only.",
    "rms": "RMSNorm: one **mean square** E[x²] **per sample**, over all its channels and positions, the values "
    "LayerNorm uses. It divides by √(E[x²] + eps) and subtracts no mean, so there is no variance to share.",
}

UNIT_WORD = {"batch": "channel", "instance": "channel", "group": "group", "layer": "sample (all channels)",
             "rms": "sample (all channels)"}
PER_SAMPLE_ALL = ("layer", "rms")  # one statistic per sample over (C, H, W)
# What one shared statistic is, in the diagram: its name and the symbol in each cell.
STATISTIC_NAME = {"rms": ("mean square", "ms")}
SHARED_STATISTIC = ("mean and variance", "μ")


def unit_channels(s: LabSettings) -> list[list[int]]:
    """The channels of each unit, in order."""
    if s.norm in PER_SAMPLE_ALL:
        return [list(range(s.channels))]
    if s.norm == "group":
        k = s.channels // s.num_groups
        return [list(range(g * k, (g + 1) * k)) for g in range(s.num_groups)]
    return [[c] for c in range(s.channels)]


def unit_labels(s: LabSettings, quiet_channel: bool = False) -> list[str]:
    if s.norm in PER_SAMPLE_ALL:
        return ["all channels"]
    if s.norm == "group":
        return [f"group {g} (ch {m[0]})" if len(m) == 1 else f"group {g} (ch {m[0]}–{m[-1]})" for g, m in enumerate(unit_channels(s))]
    return [f"channel {c}" + (" (quiet)" if quiet_channel and c == 0 else "") for c in range(s.channels)]


def values_per_stat(s: LabSettings) -> int:
    """How many values one mean/variance is taken over (M)."""
    hw = s.spatial * s.spatial
    return {"batch": s.batch_size * hw, "layer": s.channels * hw, "rms": s.channels * hw,
            "group": s.channels // s.num_groups * hw, "instance": hw}[s.norm]


def per_unit(stat: torch.Tensor, units: int) -> np.ndarray:
    """A layer's statistics averaged over samples to one value per unit: BN's (C,) stays,
    IN's (N, C), GN's (N, G) and LN's and RMSNorm's (N,) are averaged over N."""
    return stat.double().reshape(-1, units).mean(0).numpy()


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


@dataclass(frozen=True)
class Diagram:
    frame: pd.DataFrame  # sample, channel, position, statistic (0.. in order of appearance), shares
    shown: tuple[int, int, int]  # (samples, channels, positions) drawn
    full: tuple[int, int, int]  # (N, C, H·W) of the real batch
    norm: str = "batch"

    @property
    def symbol(self) -> str:
        """What each cell is labelled with, before its statistic's number: μ, or ms for a mean square."""
        return STATISTIC_NAME.get(self.norm, SHARED_STATISTIC)[1]

    @property
    def caption(self) -> str:
        (n, c, p), (fn, fc, fp) = self.shown, self.full
        cut = (n, c, p) != (fn, fc, fp)
        what = f"{n} of {fn} samples, {c} of {fc} channels, {p} of {fp} positions" if cut else "the whole batch"
        name = STATISTIC_NAME.get(self.norm, SHARED_STATISTIC)[0]
        return (f"Drawn: {what}. Cells with the same colour and number share one {name}. "
                f"Each statistic here is taken over {int(self.frame['shares'].iloc[0]):,} values of the batch.")


def diagram_frame(s: LabSettings) -> Diagram | None:
    """One row per drawn cell of the (N, C, H·W) block, coloured by the statistic it shares;
    None while GroupNorm's group count does not divide the channel count (no groups to draw).

    The ids come from ``normcore.axes.statistic_ids``; only the first few samples,
    channels and positions are drawn. All channels go into the ids (GroupNorm's groups
    depend on C), and the ids of the first samples and positions do not depend on how many
    follow, so the cut block has exactly the full block's ids.
    """
    if s.norm == "group" and s.channels % s.num_groups:
        return None
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
    return Diagram(frame, (n, c, p), (s.batch_size, s.channels, s.spatial**2), s.norm)
