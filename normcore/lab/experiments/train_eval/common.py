"""What every train-vs-eval scenario shares: the result it returns, the layer it measures,
the two modes, the seeded batches and the work cap."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import pandas as pd
import torch

from ... import limits
from ...fields import Field, Schema
from ...populations import draw_batch, make_generator
from normcore.functional import batch_norm
from ...layers import SAME, build_layer  # noqa: F401  (SAME: re-exported by the package)
from ...settings import FIELDS, LabSettings, Problem, problems

PROBE_SEED = 7919  # the probe batch has its own generator, so it never appears in the stream
NO_PARAMS = Schema(())


# ---------------------------------------------------------------------------------------
# What a scenario returns, and how a page finds it
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Headline:
    label: str
    value: str
    help: str = ""


@dataclass
class ScenarioResult:
    """Tidy frames for the chart, one headline number, and messages to show above it.

    ``messages`` use :class:`~normcore.lab.settings.Problem` levels, plus ``"info"``. An empty
    ``frames`` means the scenario could not run with these settings (the messages say why).
    """

    frames: dict[str, pd.DataFrame]
    headline: Headline | None
    messages: list[Problem] = field(default_factory=list)
    table: pd.DataFrame | None = None
    table_caption: str = ""


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    icon: str
    explanation: str  # markdown
    run: Callable[..., ScenarioResult]
    # The scenario's own controls (the shared ones come from the sidebar): one field each,
    # named like run's keyword arguments.
    params: Schema = NO_PARAMS
    # The name of an expensive part in RESOURCES (the trained digits model), built once per
    # setting and shared by every scenario that names it; then run(s, resource, **params).
    resource: str | None = None
    # The shared settings it reads. A problem with settings it does not read (the digits
    # network has its own widths, so no channel count) is not this scenario's to report.
    reads: tuple[str, ...] = tuple(FIELDS)

    def defaults(self) -> dict:
        return self.params.defaults()

    def concerns(self, problem: Problem) -> bool:
        """Whether ``problem`` is about settings this scenario reads (then it must show it)."""
        return set(problem.fields) <= set(self.reads)


def number_field(name: str, label: str, default: int | float, low, high, step, help: str = "", caps=()) -> Field:
    """A scenario's numeric control: a whole number if the default is an int, else a float."""
    kind = "int" if isinstance(default, int) else "float"
    return Field(name, label, default, kind, help, low=low, high=high, step=step, caps=caps)


def blocked(messages: list[Problem]) -> ScenarioResult:
    return ScenarioResult({}, None, messages)


# ---------------------------------------------------------------------------------------
# Layers and the two modes
# ---------------------------------------------------------------------------------------


def has_running_stats(layer) -> bool:
    return getattr(layer, "running_mean", None) is not None


@torch.no_grad()
def train_step(layer, x: torch.Tensor) -> torch.Tensor:
    """One training-mode forward pass: batch statistics, running statistics updated."""
    layer.train()
    return layer(x)


@torch.no_grad()
def train_output(layer, x: torch.Tensor) -> torch.Tensor:
    """The training-mode output, leaving the running statistics as they were (a peek)."""
    saved = [b.clone() for b in layer.buffers()]
    y = train_step(layer, x)
    for b, old in zip(layer.buffers(), saved):
        b.copy_(old)
    return y


@torch.no_grad()
def eval_output(layer, x: torch.Tensor) -> torch.Tensor:
    layer.eval()
    return layer(x)


def mean_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().mean())


def normalize_with(layer, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """What the layer would output in eval if its running statistics were exactly (mean, var)."""
    return batch_norm(x, mean.float(), var.float(), layer.weight, layer.bias, False, 0.0, layer.eps).detach()


def warmup_steps(momentum: float | None) -> int:
    """Warm-up before a measurement: until the initial running values weigh < 1%, i.e.
    (1 − m)^k < 0.01, capped at limits.MAX_WARMUP. A cumulative average (None) forgets them at once
    but averages 50 batches; momentum 0 never moves, so warming up would change nothing."""
    if momentum is None:
        return 50
    k = closed_form_warmup(momentum)
    return 0 if k is None else min(k, limits.MAX_WARMUP)


def closed_form_warmup(momentum: float | None) -> int | None:
    """The first k with (1 − m)^k < 1%; a cumulative average (None) replaces them at step 1."""
    if momentum is None or momentum >= 1.0:
        return 1
    if momentum <= 0.0:
        return None  # never: running statistics that never move
    steps = math.log(0.01) / math.log1p(-momentum)
    if not math.isfinite(steps):
        return None  # a momentum so small that (1 − m)^k never visibly decays
    return math.ceil(steps - 1e-9)  # 1e-9: 0.99 needs 1 step, not 2


def stream(s: LabSettings, steps: int, offset: float = 0.0, scale_factor: float = 1.0, batch_size: int | None = None):
    """The seeded stream of training batches every scenario warms its layers up on."""
    gen = make_generator(s.seed)
    for _ in range(steps):
        yield draw_batch(s, gen, offset, scale_factor, batch_size)


def probe_batch(s: LabSettings, offset: float = 0.0, scale_factor: float = 1.0, batch_size: int | None = None) -> torch.Tensor:
    return draw_batch(s, make_generator(s.seed + PROBE_SEED), offset, scale_factor, batch_size)


def settings_problems(s: LabSettings, training: bool = True) -> tuple[list[Problem], bool]:
    found = problems(s, training)
    return found, any(p.level == "error" for p in found)


def stand_in(s: LabSettings, what: str) -> tuple[LabSettings, list[Problem]]:
    """LayerNorm, GroupNorm and RMSNorm keep no running statistics, so a running-statistics scenario
    measures their (zero) gap and then shows BatchNorm, with every other setting kept."""
    if s.norm in ("batch", "instance"):
        return s, []
    errors = [p for p in problems(s) if p.level == "error"]
    if errors:
        note = Problem("info", f"The chart shows BatchNorm with your other settings ({s.norm_label} cannot run, see above).")
        return replace(s, norm="batch"), errors + [note]
    layer = build_layer(s, track_running_stats=True)
    probe = probe_batch(s)
    gap = mean_abs_diff(train_output(layer, probe), eval_output(layer, probe))
    return replace(s, norm="batch"), [Problem("info", (
        f"{s.norm_label} keeps no running statistics, so {what} cannot affect it: its train/eval gap on "
        f"this scenario's probe is {gap:g} (exactly). The chart shows BatchNorm with your other settings."
    ))]


def momentum_label(m: float | None) -> str:
    return "None (cumulative)" if m is None else f"PyTorch {m:g}"


def capped_steps(steps: int, values_per_step: int, messages: list[Problem], what: str = "steps") -> int:
    """``steps``, or fewer (with a warning) if they would push more than the work cap through."""
    allowed, warning = limits.scenario_steps(steps, values_per_step, what)
    if warning:
        messages.append(Problem("warning", warning))
    return allowed


def torch_single_sample_error(channels: int) -> str:
    """torch's own message for training BatchNorm on one value per channel, e.g. (1, C)."""
    try:
        torch.nn.functional.batch_norm(torch.zeros(1, channels), None, None, training=True)
    except ValueError as exc:
        return str(exc)
    return ""  # a future torch that accepted it would show no message


# ---------------------------------------------------------------------------------------
# An expensive part several scenarios share
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """An expensive part some scenarios share: ``build(config(s), on_progress)`` runs once per
    distinct config (a page caches it); ``on_progress`` gets the fraction done."""

    config: Callable[[LabSettings], dict]
    build: Callable[..., Any]
    message: str
