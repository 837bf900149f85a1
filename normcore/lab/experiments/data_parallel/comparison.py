"""The live record of one page run (:class:`Comparison`), how it is run (:func:`run`), and the
cache of finished ones (:class:`FinishedDataParallelRuns`).

The page's run trains each chosen normalization in turn on one set of spawned workers
(``normcore.lab.distributed.run_series``: the processes start once). Workers report plain
numbers through a queue; :func:`run` files them here, so a page that reruns mid-run (Stop, a
closed tab) still has what arrived.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from normcore.lab.distributed import EpochReport, RunResult, StepProgress
from normcore.lab.distributed.launch import run_series
from normcore.lab.finished_cache import FinishedCache
from normcore.lab.experiments.data_parallel.options import DataParallelOptions, run_configs

STATUS_WORDS = {"finished": "Finished", "stopped": "Stopped", "failed": "Failed", "timed out": "Timed out",
                "busy": "Not started", "invalid": "Not started", "interrupted": "Interrupted"}


@dataclass
class Comparison:
    options: DataParallelOptions
    norms: tuple = ()
    epochs: dict = field(default_factory=dict)  # norm -> [EpochReport]
    status: str = "running"  # then one of RunResult's statuses, or "interrupted"
    message: str = ""
    current: str = ""  # the norm training now
    step: tuple = (0, 1)  # (step, steps) of the current epoch
    spawn_s: float = float("nan")
    wall_s: float = float("nan")
    worker_pids: tuple = ()
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        self.norms = tuple(c.norm for c in run_configs(self.options))
        self.epochs = {n: [] for n in self.norms}

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def fraction(self) -> float:
        """Share of the epochs over all norms done, counting the current epoch's steps."""
        total = len(self.norms) * self.options.epochs
        done = sum(len(v) for v in self.epochs.values())
        step, steps = self.step
        partial = step / steps if self.running and self.current else 0.0
        return min(1.0, (done + partial) / total) if total else 1.0

    def progress_text(self) -> str:
        if not self.running:
            return f"{STATUS_WORDS.get(self.status, self.status)} in {self.wall_s:.1f} s" + \
                (f" (workers up in {self.spawn_s:.1f} s)." if self.spawn_s == self.spawn_s else ".")
        elapsed = time.perf_counter() - self.started
        if not self.current:
            return f"Starting {self.options.workers} worker processes… {elapsed:.0f} s"
        epoch = len(self.epochs[self.current]) + 1
        return (f"{self.current}: epoch {min(epoch, self.options.epochs)}/{self.options.epochs}, step {self.step[0]}/"
                f"{self.step[1]} · {elapsed:.0f} s")

    def record(self, index: int, event) -> None:
        self.current = self.norms[index]
        if isinstance(event, StepProgress):
            self.step = (event.step, event.steps)
        elif isinstance(event, EpochReport):
            self.epochs[self.current].append(event)
            self.step = (0, 1)

    def finish(self, results: list[RunResult]) -> None:
        worst = next((r for r in results if r.status != "finished"), results[0])
        self.status, self.message = worst.status, worst.message
        self.spawn_s, self.wall_s = results[0].spawn_s, results[0].wall_s
        self.worker_pids = tuple(results[0].worker_pids)

    def mark_interrupted(self, message: str) -> None:
        """The page's script run ended mid-run (Stop, a changed control, a closed tab): the
        workers were ended as the exception passed through the runner."""
        self.status, self.message = "interrupted", message
        self.wall_s = time.perf_counter() - self.started


def run(comparison: Comparison, on_progress: Callable[[Comparison], None] | None = None,
        should_stop: Callable[[], bool] | None = None, **limits_) -> Comparison:
    """Train every norm of ``comparison.options`` on one set of workers; ``on_progress(comparison)``
    after each report. ``limits_``: ``run_series``'s ``time_cap_s`` / ``collective_timeout_s``."""

    def report(index: int, event) -> None:
        comparison.record(index, event)
        if on_progress is not None:
            on_progress(comparison)

    results = run_series(run_configs(comparison.options), report, should_stop, **limits_)
    comparison.finish(results)
    if on_progress is not None:
        on_progress(comparison)
    return comparison


class FinishedDataParallelRuns(FinishedCache):
    """Finished comparisons (or sweeps) by their options' key; shared by sessions."""

    def __init__(self, max_entries: int = 16):
        super().__init__(lambda item: item.options.key, lambda options: options.key, max_entries)
