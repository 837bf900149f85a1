"""Accuracy against the per-worker batch for local BN, SyncBN and GroupNorm, beside the
GroupNorm paper's table (reused from the training page's sweeps).

    python -m normcore.lab.experiments.data_parallel [--workers 2] [--epochs 2] [--batches 2,4,8,16,32,64]

Every (batch, norm) pair is one run on the same spawned workers (``run_series``), the
learning rate fixed, so the per-worker batch is the only thing that changes. The page's
"Run the batch sweep" fills a :class:`SweepRecord` (a point per finished run, as it arrives)
through :func:`run_page_sweep`, under ``limits.MAX_SWEEP_RUN_S`` and the one-run-per-server lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from normcore.lab import limits
from normcore.lab.distributed import DDP_NORMS, EpochReport, RunResult, StepProgress
from normcore.lab.distributed.launch import run_series
from normcore.lab.experiments.training import paper_group_norm_errors, paper_table
from normcore.lab.experiments.data_parallel.comparison import STATUS_WORDS
from normcore.lab.experiments.data_parallel.options import SWEEP_BATCHES, SweepSettings, sweep_configs
from normcore.lab.experiments.data_parallel.tables import SHORT

BATCHES = tuple(int(b) for b in SWEEP_BATCHES)
SHAPE_NOTE = (
    "Compare the **shape**, not the level: the lab's numbers are the digits MLP's (or CNN's) test error after a few "
    "epochs on 1,347 images; the paper's are ImageNet ResNet-50 top-1 error after full training. Both show local "
    "BN getting worse as the per-worker (per-GPU) batch shrinks, while SyncBN (statistics of the global batch) "
    "and GroupNorm (per sample) do not depend on it.")


@dataclass
class SweepRecord:
    """The live record of one batch sweep: a point per finished (batch, norm) run, as it arrives."""

    options: SweepSettings
    points: list = field(default_factory=list)  # dicts: per_worker_batch, norm (short name), test error (%)
    status: str = "running"  # then one of RunResult's statuses, or "interrupted"
    message: str = ""
    index: int = 0  # the run training now
    step: tuple = (0, 1)  # (step, steps) of its current epoch
    epoch: int = 0  # its epochs finished
    wall_s: float = float("nan")
    reported: bool = False  # a worker has reported (they are up)
    started: float = field(default_factory=time.perf_counter)

    @property
    def configs(self):
        return sweep_configs(self.options)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def fraction(self) -> float:
        runs = len(self.options.batches) * len(DDP_NORMS)
        partial = (self.epoch + self.step[0] / self.step[1]) / self.options.epochs if self.running else 0.0
        return min(1.0, (len(self.points) + partial) / runs) if runs else 1.0

    def progress_text(self) -> str:
        runs = len(self.options.batches) * len(DDP_NORMS)
        if not self.running:
            return f"{STATUS_WORDS.get(self.status, self.status)}: {len(self.points)} of {runs} runs in {self.wall_s:.1f} s."
        elapsed = time.perf_counter() - self.started
        if not self.reported:
            return f"Starting {self.options.workers} worker processes… {elapsed:.0f} s"
        config = self.configs[min(self.index, runs - 1)]
        return (f"Run {len(self.points) + 1}/{runs}: {SHORT[config.norm]} at batch {config.per_worker_batch} per "
                f"worker, step {self.step[0]}/{self.step[1]} · {elapsed:.0f} s")

    def record(self, index: int, event) -> dict | None:
        """File a worker's report; the new point when a (batch, norm) run finished its last epoch."""
        self.reported = True
        if index != self.index:
            self.index, self.epoch, self.step = index, 0, (0, 1)
        if isinstance(event, StepProgress):
            self.step = (event.step, max(1, event.steps))
        elif isinstance(event, EpochReport):
            self.epoch, self.step = event.epoch, (0, 1)
            config = self.configs[index]
            if event.epoch == config.epochs:
                point = {"per_worker_batch": config.per_worker_batch, "norm": SHORT[config.norm],
                         "test error": 100 * (1 - event.test_accuracy)}
                self.points.append(point)
                self.epoch = 0  # counted as a point now
                return point
        return None

    def finish(self, results: list[RunResult]) -> None:
        worst = next((r for r in results if r.status != "finished"), results[0])
        self.status, self.message = worst.status, worst.message
        wall = results[0].wall_s  # NaN when it never started (busy, invalid)
        self.wall_s = wall if wall == wall else time.perf_counter() - self.started

    def mark_interrupted(self, message: str) -> None:
        """The page's script run ended mid-sweep (Stop, a changed control): the workers were ended."""
        self.status, self.message = "interrupted", message
        self.wall_s = time.perf_counter() - self.started

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.points, columns=["per_worker_batch", "norm", "test error"])


def run_page_sweep(record: SweepRecord, on_progress: Callable[[SweepRecord], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, *,
                   time_cap_s: float = limits.MAX_SWEEP_RUN_S) -> SweepRecord:
    """Train every (batch, norm) of ``record.options`` on one set of workers (one sweep per server at
    a time, with the page's run: status "busy" otherwise); ``on_progress(record)`` after each report."""

    def report(index: int, event) -> None:
        record.record(index, event)
        if on_progress is not None:
            on_progress(record)

    record.finish(run_series(record.configs, report, should_stop, time_cap_s=time_cap_s))
    if on_progress is not None:
        on_progress(record)
    return record


def run_sweep(workers: int = 2, epochs: int = 2, batches=BATCHES, on_result=None) -> pd.DataFrame:
    """Test error (%) by per-worker batch (rows) and norm (columns); ``on_result(config, error)``."""
    record = SweepRecord(SweepSettings(workers, "mlp", 64, 2, 0.05, 0, epochs, tuple(batches)))

    def report(index: int, event) -> None:
        point = record.record(index, event)
        if point is not None and on_result:
            on_result(record.configs[index], point["test error"])

    results = run_series(record.configs, report, time_cap_s=3600.0)
    for r in results:
        if r.status != "finished":
            raise RuntimeError(f"{r.config.norm} at {r.config.per_worker_batch}: {r.status}: {r.message}")
    return record.frame()


def error_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-worker batch × norm, test error in % (NaN for a run not finished)."""
    table = frame.pivot_table(index="per_worker_batch", columns="norm", values="test error", aggfunc="first")
    table = table.reindex(columns=[SHORT[n] for n in DDP_NORMS])
    table.columns.name = "norm"
    return table


def paper_curves() -> pd.DataFrame:
    """The GroupNorm paper's BN and GN curves (top-1 error % by images per GPU), in the lab's norm names."""
    paper = paper_group_norm_errors()
    paper = paper[paper["norm"].isin(("batch", "group"))]
    return pd.DataFrame({"per_worker_batch": paper["batch_size"].to_numpy(),
                         "norm": paper["norm"].map({"batch": "BatchNorm (per GPU)", "group": "GroupNorm"}).to_numpy(),
                         "top-1 error": paper["top1_error"].to_numpy()})


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m normcore.lab.experiments.data_parallel", description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    a = p.parse_args(argv)
    batches = tuple(int(b) for b in a.batches.split(","))
    print(f"{a.workers} workers (gloo, CPU), digits MLP, {a.epochs} epochs, lr 0.05; test error (%) of worker 0's model")
    frame = run_sweep(a.workers, a.epochs, batches,
                      on_result=lambda c, e: print(f"  batch {c.per_worker_batch:>3} per worker, {SHORT[c.norm]:<9}: {e:.1f}", flush=True))
    print("\nThis lab (digits, test error %, by batch per worker):")
    print(error_table(frame).round(1).to_string())
    print("\nGroupNorm paper (ImageNet ResNet-50 top-1 error %, by images per GPU):")
    print(paper_table().to_string())
    return 0
