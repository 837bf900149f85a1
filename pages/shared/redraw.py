"""Redrawing a page while something long runs: how often, and what.

A live view (a progress bar and a few charts) redrawn on every progress report would cost
more than the work it shows. :class:`DrawBudget` decides when a redraw is due;
:class:`LiveView` is what a page draws into and follows a run with. No streamlit import:
the boxes are whatever placeholders the caller passes (``st.empty()`` on a page, the same in
a benchmark), so a benchmark measures exactly the page's loop.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

LIVE_DRAW_EVERY_S = 0.5  # redraw live charts at most this often...
LIVE_DRAW_SHARE = 0.05  # ...and spend at most this share of the run's time drawing them
PROGRESS_EVERY_S = 0.1  # a progress bar between redraws: at most this often
WAIT_TICK_S = 0.5  # while waiting on worker processes, the progress bar is redrawn this often (and Stop noticed)


class DrawBudget:
    """When to redraw live charts: at most every ``LIVE_DRAW_EVERY_S``, and only while the
    time spent drawing stays under ``LIVE_DRAW_SHARE`` of the time elapsed, so a page's
    live view costs a bounded share of the work however fast the steps are. The final
    state (``live.running`` false) is always drawn. Something cheap that should look live
    (a progress bar, which also lets a page notice a Stop click) runs at most every
    ``PROGRESS_EVERY_S``."""

    def __init__(self, every_s: float = LIVE_DRAW_EVERY_S, share: float = LIVE_DRAW_SHARE,
                 progress_every_s: float = PROGRESS_EVERY_S):
        self.every_s, self.share, self.progress_every_s = every_s, share, progress_every_s
        self.started = self.last = self.last_progress = time.perf_counter()
        self.spent = 0.0

    def draw(self, live, draw: Callable[[Any], None], every_report: Callable[[Any], None] | None = None) -> bool:
        """Call ``draw`` if it is due (True if it was called); else ``every_report``, if that is due."""
        now = time.perf_counter()
        due = now - self.last >= self.every_s and self.spent <= self.share * (now - self.started)
        if due or not live.running:
            draw(live)
            self.last = self.last_progress = time.perf_counter()
            self.spent += self.last - now
            return True
        if every_report is not None and now - self.last_progress >= self.progress_every_s:
            every_report(live)
            self.last_progress = time.perf_counter()
            self.spent += self.last_progress - now
        return False


class LiveView:
    """A progress bar and chart boxes showing a run (anything with ``fraction``,
    ``progress_text()`` and ``running``); ``charts(live)`` gives one Vega-Lite spec per box;
    ``height``: the charts' (inside ``st.tabs``, "content" drew them a few pixels high)."""

    def __init__(self, progress_box, chart_boxes: Sequence, charts: Callable[[Any], Iterable[dict]],
                 height: int | str = "content"):
        self.progress_box, self.chart_boxes, self.charts = progress_box, tuple(chart_boxes), charts
        self.height = height

    def progress(self, live) -> None:
        self.progress_box.progress(live.fraction, text=live.progress_text())

    def draw(self, live) -> None:
        self.progress(live)
        for box, spec in zip(self.chart_boxes, self.charts(live)):
            box.vega_lite_chart(spec, width="stretch", height=self.height)

    def follow(self, live, start: Callable[[Callable[[Any], None]], Any]):
        """Show ``live`` while ``start(on_progress)`` runs it: the progress bar at once, the
        charts under a fresh :class:`DrawBudget` (the final state is drawn by the last report)."""
        self.progress(live)
        budget = DrawBudget()
        return start(lambda lv: budget.draw(lv, self.draw, self.progress))

    def stop_check(self, live, every_s: float = WAIT_TICK_S) -> Callable[[], bool]:
        """``should_stop`` for a runner that waits on worker processes: it redraws the progress
        bar every ``every_s``, which is where Streamlit raises its stop exception after a click
        on Stop or a closed tab. It never asks to stop by itself."""
        last = [0.0]

        def should_stop() -> bool:
            if time.perf_counter() - last[0] >= every_s:
                self.progress(live)
                last[0] = time.perf_counter()
            return False
        return should_stop
