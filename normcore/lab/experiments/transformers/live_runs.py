"""What a record of several LM runs trained one after the other shares with a page: whether it is
still running, how far it got, and being cut short from outside (a page's Stop)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from normcore.lab.finished_cache import FinishedCache


@dataclass(kw_only=True)
class LiveRuns:
    """Base of a dataclass record with ``options`` and its LM runs (:meth:`lm_runs`): how it
    ended (``status``: running, then finished or stopped; ``message``) and how long it took;
    :meth:`planned_runs` and :meth:`planned_steps` say how many runs and steps it will train,
    :meth:`run_label` names a run in the progress text."""

    status: str = "running"
    message: str = ""
    started: float = field(default_factory=time.perf_counter)
    elapsed_s: float = 0.0

    def lm_runs(self) -> list:
        return list(self.runs)

    def planned_runs(self) -> int:
        raise NotImplementedError

    def planned_steps(self) -> int:
        raise NotImplementedError

    def run_label(self, run) -> str:
        raise NotImplementedError

    def progress_text(self) -> str:
        runs = self.lm_runs()
        if self.status == "running" and runs:
            return f"Training {len(runs)}/{self.planned_runs()}: {self.run_label(runs[-1])} · {self.elapsed_s:.1f} s"
        return f"{self.status.capitalize()} · {self.elapsed_s:.1f} s"

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def fraction(self) -> float:
        done = sum(run.steps or (run.rows[-1]["step"] if run.rows else 0) for run in self.lm_runs())
        return min(1.0, done / max(1, self.planned_steps()))

    def mark_interrupted(self, why: str) -> None:
        """Cut short from outside: the record and the run that was training end as stopped, that
        run at its last report; finished runs stay as they are."""
        if self.status != "running":
            return
        self.status, self.message = "stopped", why
        for run in self.lm_runs():
            if run.status == "running":
                run.status, run.message, run.steps = "stopped", why, int(run.rows[-1]["step"]) if run.rows else 0


def finished_records(max_entries: int = 16) -> FinishedCache:
    """Finished records by their options (a page's cache of whole results)."""
    return FinishedCache(lambda record: record.options, lambda options: options, max_entries)


__all__ = ["LiveRuns", "finished_records"]
