"""Running an experiment: :func:`run` trains every variant in turn and records into a
:class:`LiveRun` *as it happens*, so a caller that is interrupted mid-run (the dashboard's
Stop button reruns the script) still holds the partial history. Frames are tidy pandas;
nothing here knows about streamlit.

**One training at a time per process.** torch's CPU thread count is process-wide and a
server runs every session in one process, so each variant (and each warm-up) trains inside
``devices.placed``, which holds the process-wide placement lock: overlapping sessions
neither leave the server at another thread count nor time each other's work. The training
loop itself (``normcore.lab.loop.train``) takes no lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from normcore.lab import datasets, devices, models
from normcore.lab.loop import PROGRESS_COLUMNS, Progress, TrainConfig, TrainResult, train
from normcore.lab.experiments.training.config import ConfigError, RunConfig
from normcore.lab.experiments.training.results import summary_frame, summary_row
from normcore.lab.experiments.training.sweeps import chance_accuracy, largest_trainable_lr, paper_group_norm_errors
from normcore.lab.experiments.training.variants import Variant, plan, train_size

REPORTS_PER_VARIANT = 20  # progress reports (curve points) per variant, about; each costs ~0.15 ms (benchmarks.training)


@dataclass
class LiveRun:
    """An experiment's record, filled while it runs. ``status``: running, finished, stopped
    (by the stop flag or by the caller being interrupted: :meth:`mark_interrupted`)."""

    config: RunConfig
    variants: list[Variant]
    rows: list[dict] = field(default_factory=list)  # one per Progress, tagged with its variant
    results: dict[int, dict] = field(default_factory=dict)  # variant index -> summary row
    status: str = "running"
    message: str = ""
    current: int = 0  # index of the variant being trained
    steps_done: int = 0  # completed optimizer steps over all variants
    total_steps: int = 0
    started: float = field(default_factory=time.perf_counter)
    elapsed_s: float = 0.0
    phase: str = ""  # what it does before training, e.g. warming up a device

    @property
    def fraction(self) -> float:
        return min(1.0, self.steps_done / self.total_steps) if self.total_steps else 0.0

    @property
    def running(self) -> bool:
        return self.status == "running"

    def mark_interrupted(self, why: str) -> None:
        """The run was cut short from outside (e.g. a Stop click reran the page)."""
        if self.running:
            self.status, self.message = "stopped", why
            self.elapsed_s = time.perf_counter() - self.started

    def progress_text(self) -> str:
        """One line for a progress bar: what is training now, or how the run ended."""
        if self.running and self.phase:
            text = self.phase
        elif self.running and not self.rows:  # loading data, building models (one-time imports on a fresh server)
            text = "Starting"
        elif self.running and self.variants:
            current = self.variants[min(self.current, len(self.variants) - 1)]
            text = f"Training {self.current + 1}/{len(self.variants)}: {current.label}"
        else:
            text = self.status.capitalize()
        return f"{text} · {self.elapsed_s:.1f} s"

    def history(self) -> pd.DataFrame:
        columns = ["variant", "label", "norm", "device", "batch_size", "lr", *PROGRESS_COLUMNS]
        return pd.DataFrame(self.rows, columns=columns)

    def summary(self) -> pd.DataFrame:
        """One row per variant that started; one stopped part-way is summed up from its history."""
        rows = [self.results.get(i) for i in range(len(self.variants))]
        history = self.history()
        for i, row in enumerate(rows):
            if row is None and i <= self.current and not self.running and (history["variant"] == i).any():
                rows[i] = summary_row(i, self.variants[i], None, history[history["variant"] == i])
        return summary_frame([r for r in rows if r is not None])

    def chart_frames(self) -> dict:
        """What ``viz.training_charts.live_charts`` draws for this run, as of now (a comparison
        draws only its history, so only a sweep pays for the summary)."""
        frames = dict(mode=self.config.mode, history=self.history(), epochs=max((v.epochs for v in self.variants), default=None),
                      norms=tuple(dict.fromkeys(v.norm for v in self.variants)),
                      devices=tuple(dict.fromkeys(v.target.label for v in self.variants)))
        if self.config.mode != "compare":
            summary = self.summary()
            frames |= dict(summary=summary, largest=largest_trainable_lr(summary, chance_accuracy(self.config)),
                           paper=paper_group_norm_errors())
        return frames

    def tick(self, on_progress: Callable[[LiveRun], None] | None) -> None:
        """Note the time and tell the caller."""
        self.elapsed_s = time.perf_counter() - self.started
        if on_progress is not None:
            on_progress(self)


_WARMED: set[tuple[str, str]] = set()  # (device, model kind) pairs this process has warmed up


def _warm_up(model, data: datasets.Split, target: devices.Target, batch_size: int, steps: int = 3) -> None:
    """A few throwaway steps on ``target`` so one-time costs (thread pools, a CUDA context,
    kernel selection) are not billed to the first variant's samples/s. They are one-time
    per process, so each (device, model kind) is warmed up once."""
    config = TrainConfig(epochs=1, batch_size=batch_size, log_every=steps)
    small = datasets.Split(data.name, data.x_train[: steps * batch_size], data.y_train[: steps * batch_size],
                           data.x_test[:batch_size], data.y_test[:batch_size], data.num_classes)
    with devices.placed(target):  # one training at a time per process (see the module docstring)
        train(model, small, config, device=target.device, threads=target.threads)


def _model_builder(config: RunConfig, data: datasets.Split) -> Callable[[str], models.Classifier]:
    def build(norm: str) -> models.Classifier:
        return models.make_model(
            config.model, norm, config.impl, input_shape=data.input_shape, num_classes=data.num_classes,
            width=config.width, depth=config.depth, num_groups=config.num_groups, momentum=config.momentum,
            eps=config.eps, activation=config.activation, seed=config.seed)
    return build


def _warm_up_devices(live: LiveRun, build, data, on_progress) -> None:
    """Warm up each device of the run once per process, before any clock starts."""
    model = live.config.model
    for device in dict.fromkeys(v.device for v in live.variants):
        if (device, model) in _WARMED:
            continue
        first = next(v for v in live.variants if v.device == device)
        live.phase = f"Warming up on {devices.parse_target(device).label} (once per server process)"
        live.tick(on_progress)
        _warm_up(build(first.norm), data, devices.parse_target(device), first.batch_size)
        _WARMED.add((device, model))
    live.phase = ""


def _train_variant(live: LiveRun, i: int, model, data, on_progress, stop) -> TrainResult:
    """Train variant ``i``, recording each progress report into ``live``."""
    config, v = live.config, live.variants[i]
    steps, done_before = v.steps(train_size(config)), live.steps_done
    train_config = TrainConfig(epochs=v.epochs, batch_size=v.batch_size, lr=v.lr, optimizer=config.optimizer,
                               seed=config.seed, log_every=max(1, steps // REPORTS_PER_VARIANT),
                               probe_layer=min(config.probe_layer, config.depth) - 1)

    def report(p: Progress) -> None:
        live.rows.append(dict(variant=i, label=v.label, norm=v.norm, device=v.device, batch_size=v.batch_size, lr=v.lr) | p.as_row())
        live.steps_done = done_before + p.step
        live.tick(on_progress)

    target = v.target
    with devices.placed(target):  # one training at a time per process (see the module docstring)
        result = train(model, data, train_config, device=target.device, threads=target.threads, callback=report, stop=stop)
    live.steps_done = done_before + steps  # a diverged variant's remaining steps count as done
    return result


def run(
    config: RunConfig,
    live: LiveRun | None = None,
    *,
    on_progress: Callable[[LiveRun], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> LiveRun:
    """Train every variant of ``config`` in turn, recording into ``live`` (a new one if None).

    ``on_progress(live)`` is called after every progress report. If it raises (a page being
    rerun), the exception propagates and ``live`` keeps everything recorded so far.
    Raises :class:`ConfigError` when the configuration has errors (see :func:`plan`).
    """
    variants, problems = plan(config)
    blocking = [p.message for p in problems if p.level == "error"]
    if blocking:
        raise ConfigError(blocking)
    live = live or LiveRun(config, variants)
    live.variants = variants
    live.total_steps = sum(v.steps(train_size(config)) for v in variants)
    data = datasets.load(config.dataset, config.seed, **({"separation": config.separation} if config.dataset == "clusters" else {}))
    build = _model_builder(config, data)
    _warm_up_devices(live, build, data, on_progress)
    for i, v in enumerate(variants):
        live.current = i
        result = _train_variant(live, i, build(v.norm), data, on_progress, stop)
        live.results[i] = summary_row(i, v, result)
        if result.status == "stopped":
            live.status, live.message = "stopped", result.message
            break
    else:
        live.status = "finished"
    live.tick(on_progress)
    return live
