"""The Gradients page's own controls: its small input, the norm, eps, γ/β and the upstream
gradient (parts 1–2); the deep MLP of part 3 and the landscape runs of part 4. The shared
sidebar's batch size and input distribution do not apply here.

:data:`FIELDS` says each control once (widget, range, URL name, all prefixed ``g_`` so they
never collide with the shared controls' parameters); :class:`GradientOptions` is the frozen
value the experiments run with; :func:`problems` says, in words, what cannot run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from normcore.axes import NORM_KINDS
from normcore.lab import limits
from normcore.lab.fields import Field, QueryOptions, Schema
from normcore.lab.norms import NORM_LABELS, divisors
from normcore.lab.settings import EPS_CHOICES, Problem

from normcore.lab.experiments.gradients.flow import FLOW_FIELDS, FlowSettings
from normcore.lab.experiments.gradients.landscape import LANDSCAPE_FIELDS, SCALES, LandscapeSettings

INPUTS = ("example", "random")
INPUT_LABELS = {"example": "Worked example (5×5, columns [1,2,3,4,5]·k)", "random": "Random N(0, 1), your shape"}
UPSTREAMS = ("random", "one_hot", "ones")
UPSTREAM_LABELS = {"random": "Random N(0, 1)", "one_hot": "One-hot (the first value)", "ones": "All ones"}
MODES = ("train", "eval")
MODE_LABELS = {"train": "Training (batch statistics)", "eval": "Eval (running statistics)"}
EXAMPLE_SHAPE = (5, 5, 1, 1)  # the worked example: N = 5 samples of C = 5 features
_SIZE = dict(low=1, high=limits.MAX_GRADIENT_ELEMENTS, step=1, widget="number_input", caps=("gradient_elements",))

FIELDS = Schema((  # parts 1–2 here; parts 3 and 4 beside their settings (flow.py, landscape.py)
    Field("input", "Input", "example", "choice", "The worked example, or a random input of the shape below.",
          choices=INPUTS, labels=INPUT_LABELS, widget="radio", url="g_input"),
    Field("n", "N (samples)", 4, "int", "Samples in the batch (random input).", url="g_n", **_SIZE),
    Field("c", "C (channels)", 2, "int", "Channels per sample (random input).", url="g_c", **_SIZE),
    Field("h", "H", 2, "int", "Height of each map (random input).", url="g_h", **_SIZE),
    Field("w", "W", 1, "int", "Width of each map (random input).", url="g_w", **_SIZE),
    Field("norm", "Normalization", "batch", "choice", "Which values share one statistic.",
          choices=NORM_KINDS, labels=NORM_LABELS, url="g_norm"),
    Field("eps", "eps", 1e-5, "float", "Added to σ² inside the square root.", choices=EPS_CHOICES,
          labels=lambda v: f"{v:.0e}", snap=True, url="g_eps"),
    Field("groups", "Groups G (GroupNorm)", 1, "int", "GroupNorm splits the channels into G groups.",
          1, limits.MAX_GRADIENT_ELEMENTS, 1, url="g_groups"),
    Field("gamma", "γ (every channel)", 1.0, "float", "The scale after normalizing.", -3.0, 3.0, 0.1,
          resolution=2, url="g_gamma"),
    Field("beta", "β (every channel)", 0.0, "float", "The shift after normalizing (RMSNorm has none).",
          -3.0, 3.0, 0.1, resolution=2, url="g_beta"),
    Field("upstream", "Upstream gradient dy", "random", "choice", "The gradient arriving at y from the layers above.",
          choices=UPSTREAMS, labels=UPSTREAM_LABELS, widget="radio", url="g_dy"),
    Field("seed", "Seed", 0, "int", "Seed of the random input and the random dy.", 0, 2**31 - 1, 1,
          widget="number_input", url="g_seed"),
    Field("mode", "Mode of the Jacobian", "train", "choice", "Eval mode normalizes with running statistics.",
          choices=MODES, labels=MODE_LABELS, widget="radio", url="g_mode"),
) + FLOW_FIELDS.fields + LANDSCAPE_FIELDS.fields)
SHAPE_FIELDS = ("n", "c", "h", "w")


@dataclass(frozen=True)
class GradientOptions(QueryOptions):
    """The page's options; defaults are :data:`FIELDS`' defaults. Parts 3 and 4 run with
    :meth:`flow` and :meth:`landscape`, whose own defaults are these."""

    SCHEMA: ClassVar[Schema] = FIELDS
    input: str = FIELDS["input"].default
    n: int = FIELDS["n"].default
    c: int = FIELDS["c"].default
    h: int = FIELDS["h"].default
    w: int = FIELDS["w"].default
    norm: str = FIELDS["norm"].default
    eps: float = FIELDS["eps"].default
    groups: int = FIELDS["groups"].default
    gamma: float = FIELDS["gamma"].default
    beta: float = FIELDS["beta"].default
    upstream: str = FIELDS["upstream"].default
    seed: int = FIELDS["seed"].default
    mode: str = FIELDS["mode"].default
    depth: int = FIELDS["depth"].default
    width: int = FIELDS["width"].default
    activation: str = FIELDS["activation"].default
    gain: float = FIELDS["gain"].default
    flow_norm: str = FIELDS["flow_norm"].default
    steps: int = FIELDS["steps"].default
    flow_lr: float = FIELDS["flow_lr"].default
    land_steps: int = FIELDS["land_steps"].default
    land_every: int = FIELDS["land_every"].default
    land_lr: float = FIELDS["land_lr"].default
    resolution: int = FIELDS["resolution"].default

    def flow(self) -> FlowSettings:
        """Part 3's settings alone: changing another part's control keeps its cached result."""
        return FlowSettings(self.depth, self.width, self.activation, self.gain, self.flow_norm, self.steps, self.flow_lr)

    def landscape(self) -> LandscapeSettings:
        return LandscapeSettings(self.land_steps, self.land_every, self.land_lr, self.resolution)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, C, H, W) of the input: the worked example's, or the chosen one."""
        return EXAMPLE_SHAPE if self.input == "example" else (self.n, self.c, self.h, self.w)



def problems(o: GradientOptions) -> list[Problem]:
    """Every reason these options cannot run, in words that say what to change."""
    n, c, h, w = o.shape
    out = []
    if too_many := limits.gradient_elements(n, c, h, w):
        out.append(Problem("error", too_many, SHAPE_FIELDS))
    if o.norm == "group" and c % o.groups:
        ok = ", ".join(map(str, divisors(c)))
        out.append(Problem("error", f"GroupNorm needs C ({c}) divisible by the groups G ({o.groups}). "
                                    f"Valid G for {c} channels: {ok}.", ("groups", "c")))
    elif o.norm == "group" and n * (c // o.groups) * h * w == 1:
        out.append(Problem("error", "GroupNorm needs more than one value per group across the batch "
                                    f"(N·C/G·H·W = {n}·{c // o.groups}·{h}·{w} = 1), as torch's does. Use fewer "
                                    "groups, more samples or a larger map.", ("n", "c", "h", "w", "groups")))
    if o.norm == "batch" and n * h * w == 1:
        out.append(Problem("error", "BatchNorm in training needs more than one value per channel "
                                    f"(N·H·W = {n}·{h}·{w} = 1). Raise N, H or W.", ("n", "h", "w")))
    if o.norm == "instance" and h * w == 1:
        out.append(Problem("error", "InstanceNorm needs more than one value per map (H·W = 1): each "
                                    "statistic would see a single value. Raise H or W.", ("h", "w")))
    return out


def flow_problems(o: GradientOptions) -> list[Problem]:
    """Why part 3 cannot run with these options, in words."""
    if too_much := limits.flow_work(o.depth, o.width, o.steps):
        return [Problem("error", too_much, ("depth", "width", "steps"))]
    return []


def landscape_problems(o: GradientOptions) -> list[Problem]:
    """Why part 4 cannot run with these options, in words."""
    if o.land_every > o.land_steps:
        return [Problem("warning", f"Probing every {o.land_every} steps in a run of {o.land_steps} steps probes only "
                                 "at the start. Probe more often or train longer.", ("land_every", "land_steps"))]
    if too_many := limits.probe_points(o.land_steps, o.land_every, len(SCALES)):
        return [Problem("error", too_many, ("land_steps", "land_every"))]
    return []
