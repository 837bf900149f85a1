"""Long work a page runs on request: finished results come from a cache every session shares;
otherwise the run starts, shows its progress, can be stopped, and is stored once it finishes.

    RUNS = CachedRun("dp_live", D.FinishedDataParallelRuns)

    RUNS.mark_cut_short(stop_clicked, "Stopped by you.", "Interrupted: a control changed.")
    shown, ran = RUNS.result(options, run_clicked, D.Comparison, lambda record: ...train it...)
    show_status(message_box, shown, shown.options == options, "These results are from earlier settings.")

The record being trained is kept in ``st.session_state`` before the work starts, so when a
click on Stop (or any control) reruns the script mid-run, the next run finds what arrived so
far and marks it stopped (:meth:`mark_cut_short`). A record reaches the shared cache only when its
status is "finished" (``normcore.lab.finished_cache.FinishedCache``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import streamlit as st

from normcore.lab.finished_cache import FinishedCache


@st.cache_resource(show_spinner=False)
def _finished(name: str, _make: Callable[[], FinishedCache]) -> FinishedCache:
    """One cache of finished results per ``name``, shared by every session of this server."""
    return _make()


@dataclass(frozen=True)
class CachedRun:
    """``store``: the session_state key of the record the page shows; ``make_cache``: builds the
    shared cache of finished records (a ``FinishedCache``), once per server."""

    store: str
    make_cache: Callable[[], FinishedCache]

    @property
    def finished(self) -> FinishedCache:
        return _finished(self.store, self.make_cache)

    def mark_cut_short(self, stop_clicked: bool, stopped: str, interrupted: str) -> None:
        """A record the last script run left running was cut short: mark it stopped, saying
        ``stopped`` (a click on Stop) or ``interrupted`` (any other control)."""
        record = st.session_state.get(self.store)
        if record is not None and record.running:
            record.mark_interrupted(stopped if stop_clicked else interrupted)

    def result(self, query, run: bool, start: Callable[[Any], Any], train: Callable[[Any], Any]) -> tuple[Any, bool]:
        """The record to show for ``query`` (None: it cannot run) and whether it was trained
        just now. With ``run``: the finished record from the cache, else ``start(query)``, kept
        in the session, trained by ``train(record)`` and stored. Without: the cached record if
        these settings ran before (in any session), else the one shown last."""
        shown = st.session_state.get(self.store)
        if query is None:
            return shown, False
        cached = self.finished.get(query)
        if cached is None and run:
            record = st.session_state[self.store] = start(query)
            train(record)
            self.finished.put(record)
            return record, True
        if cached is not None:
            st.session_state[self.store] = cached
            return cached, False
        return shown, False


def show_status(box, record, current: bool, earlier: str, stopped_note: str = "") -> None:
    """Say in ``box`` what the record shown is: from ``earlier`` settings (not ``current``),
    failed, or stopped (then ``stopped_note`` follows its message); nothing when it finished."""
    if not current:
        box.warning(earlier)
    elif record.status in ("failed", "timed out"):
        box.error(f"💥 {record.message}")
    elif record.status in ("stopped", "interrupted", "busy"):
        box.warning(f"⏹️ {record.message}{stopped_note}")
