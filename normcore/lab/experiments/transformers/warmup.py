"""Warm-up: post-LN and pre-LN trained at one learning rate, each with and without a linear
warm-up (four runs, the same weights and batches for all: one seed).

Xiong et al. 2020 found that post-LN trained with Adam and no warm-up trains far worse, and
that pre-LN needs no warm-up: at initialization post-LN's gradients near the output are
large (the at-initialization tab), so the first full-size steps do damage a warm-up avoids.
:func:`run_warmup` records into a :class:`WarmupComparison` while it trains (live curves, Stop
keeps the partial record); finished runs come from the shared cache on a rerun.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from normcore.lab import devices, limits
from normcore.lab.finished_cache import FinishedCache
from normcore.lab.transformer import PLACEMENT_LABELS

from normcore.lab.experiments.transformers.live_runs import LiveRuns
from normcore.lab.experiments.transformers.options import WarmupOptions
from normcore.lab.experiments.transformers.run_config import LMRunConfig
from normcore.lab.experiments.transformers.training import LMRun, lm_run_cache, train_lm

VARIANTS = (("post", False), ("post", True), ("pre", False), ("pre", True))  # (placement, with warm-up)
ONE_THREAD = devices.Target("cpu", 1)  # at this size one thread is as fast as two, and leaves the other core free
FINISHED_RUNS = lm_run_cache()  # shared by every caller in the process (a server's sessions)
PAPER_FINDING = ("Xiong et al. 2020: post-LN trained with Adam and no learning-rate warm-up trains far worse than with "
                 "warm-up; pre-LN trains well without one.")
REPORTS_PER_RUN = 20  # loss points per curve, about


def variant_label(placement: str, warmup: bool, warmup_steps: int) -> str:
    return f"{PLACEMENT_LABELS[placement]}, " + (f"{warmup_steps}-step warm-up" if warmup else "no warm-up")


def finished_comparisons(max_entries: int = 16) -> FinishedCache:
    """Finished comparisons by their options (a page's cache of whole results; the runs in them
    are also in :data:`FINISHED_RUNS`)."""
    return FinishedCache(lambda comparison: comparison.options, lambda options: options, max_entries)


def run_configs(o: WarmupOptions) -> list[LMRunConfig]:
    """The four runs' configurations, in :data:`VARIANTS` order."""
    return [LMRunConfig(norm=o.norm, placement=placement, impl=o.impl, eps=o.eps, d_model=o.width, n_heads=o.heads,
                        n_layers=o.depth, context=o.context, batch_size=o.batch_size, steps=o.steps, lr=o.lr,
                        warmup_steps=o.warmup_steps if warmup else 0, clip=o.clip or None, seed=o.seed,
                        log_every=max(1, o.steps // REPORTS_PER_RUN), probe_every=max(1, o.steps // 10))
            for placement, warmup in VARIANTS]


@dataclass
class WarmupComparison(LiveRuns):
    """The four runs as they train: ``runs`` grows as each starts. ``status``: running, then
    finished or stopped (by Stop, by the time cap, or :meth:`mark_interrupted`)."""

    options: WarmupOptions
    runs: list[LMRun] = field(default_factory=list)

    def planned_runs(self) -> int:
        return len(VARIANTS)

    def planned_steps(self) -> int:
        return len(VARIANTS) * self.options.steps

    def run_label(self, run: LMRun) -> str:
        return variant_label(run.config.placement, run.config.warmup_steps > 0, self.options.warmup_steps)

    def curves(self) -> pd.DataFrame:
        """Tidy loss curves: one row per (run, report)."""
        frames = [run.history().assign(label=self.run_label(run), placement=PLACEMENT_LABELS[run.config.placement],
                                       warmup=run.config.warmup_steps > 0) for run in self.runs]
        columns = ["label", "placement", "warmup", "step", "loss", "lr", "wall_s"]
        return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)

    def summary(self) -> pd.DataFrame:
        """One row per run: the last report's training loss, the validation loss, how it ended."""
        return pd.DataFrame([dict(label=self.run_label(r), placement=PLACEMENT_LABELS[r.config.placement],
                                  warmup=r.config.warmup_steps > 0, final_loss=r.final_loss,
                                  validation_loss=r.validation_loss, status=r.status, steps=r.steps,
                                  train_time_s=r.train_time_s) for r in self.runs])

    def sentence(self) -> str:
        """What the finished runs show, beside Xiong et al.'s finding."""
        final = {(r.config.placement, r.config.warmup_steps > 0): r for r in self.runs if r.status == "finished"}
        if len(final) < len(VARIANTS):
            ended = "; ".join(f"{self.run_label(r)}: {r.message}" for r in self.runs if r.status == "diverged")
            return (ended + " " if ended else "The comparison needs all four runs to finish. ") + PAPER_FINDING
        loss = {k: r.final_loss for k, r in final.items()}
        gap_post, gap_pre = loss["post", False] - loss["post", True], loss["pre", False] - loss["pre", True]
        o = self.options
        measured = (f"Here, at learning rate {o.lr:g} over {o.steps} steps, post-LN ends at training loss "
                    f"{loss['post', False]:.2f} without warm-up and {loss['post', True]:.2f} with a {o.warmup_steps}-step "
                    f"warm-up; pre-LN at {loss['pre', False]:.2f} and {loss['pre', True]:.2f}. ")
        if gap_post > 0.1 and gap_post > 2 * abs(gap_pre):
            verdict = "As in the paper, post-LN needs the warm-up and pre-LN does not."
        elif gap_post > 0.1:
            verdict = "Both placements gain from the warm-up here, unlike the paper, where pre-LN does not need it."
        else:
            verdict = ("Unlike the paper, post-LN does not need the warm-up at these settings: try a higher learning "
                       "rate, a shallower model or fewer steps.")
        return measured + verdict + " " + PAPER_FINDING


def run_warmup(o: WarmupOptions, *, on_progress: Callable[[WarmupComparison], None] | None = None,
               stop: Callable[[], bool] | None = None, cache=FINISHED_RUNS, environ=os.environ,
               live: WarmupComparison | None = None) -> WarmupComparison:
    """Train (or take from ``cache``) the four runs; ``on_progress(comparison)`` after each report.
    The four runs together stop at the wall-clock cap :func:`limits.transformer_run_seconds`.
    ``live``: an empty record of ``o`` to fill, so a caller interrupted mid-run keeps what it holds."""
    comparison, cap = live if live is not None else WarmupComparison(o), limits.transformer_run_seconds(environ)

    def report(run: LMRun) -> None:
        comparison.elapsed_s = time.perf_counter() - comparison.started
        if on_progress is not None:
            on_progress(comparison)

    for config in run_configs(o):
        finished = cache.get(config) if cache is not None else None
        if finished is not None:
            comparison.runs.append(finished)
            continue
        run = LMRun(config)  # shown (empty) while its first steps train
        comparison.runs.append(run)
        with devices.placed(ONE_THREAD):
            trained = train_lm(config, on_progress=lambda r, i=len(comparison.runs) - 1: _replace(comparison, i, r, report),
                               stop=stop, max_seconds=max(0.0, cap - (time.perf_counter() - comparison.started)))
        comparison.runs[-1] = trained
        if cache is not None:
            cache.put(trained)
        if trained.status == "stopped":
            comparison.status, comparison.message = "stopped", trained.message
            break
    comparison.status = "finished" if comparison.status == "running" else comparison.status
    report(comparison.runs[-1])
    return comparison


def _replace(comparison: WarmupComparison, i: int, run: LMRun, report) -> None:
    comparison.runs[i] = run
    report(run)


__all__ = ["FINISHED_RUNS", "PAPER_FINDING", "VARIANTS", "WarmupComparison", "finished_comparisons", "run_configs", "run_warmup", "variant_label"]
