"""The seeded batches every scenario draws (a training stream and a probe batch of its own), and
what a scenario says before it measures: the settings' problems, BatchNorm standing in for a
norm without running statistics, the step cap, torch's own message for one value per channel."""

from __future__ import annotations

from dataclasses import replace

import torch

from normcore.lab import limits
from normcore.lab.layers import SAME, build_layer  # noqa: F401  (SAME: re-exported by the package)
from normcore.lab.populations import draw_batch, make_generator
from normcore.lab.settings import LabSettings, Problem, problems
from normcore.lab.experiments.train_eval.modes import eval_output, mean_abs_diff, train_output

PROBE_SEED = 7919  # the probe batch has its own generator, so it never appears in the stream


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

