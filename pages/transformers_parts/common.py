"""What the Transformers page's tabs share: a tab's options with the shared sidebar's batch
size and eps in them, the norm control with its note, and long work under a progress bar."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from normcore.lab.experiments.transformers.options import NORM_NOTE
from pages.shared import controls
from pages.shared.cached_run import show_status
from pages.shared.page_options import PageOptions

CHART_PX = 340  # a chart's height on the page: its plot (transformer_charts.HEIGHT), title and legend


def with_sidebar(options):
    """``options`` with the fields its class takes from the shared sidebar (``FROM_SIDEBAR``)."""
    s = controls.current()
    return replace(options, **{name: getattr(s, name) for name in type(options).FROM_SIDEBAR})


def norm_control(store: PageOptions, where=st) -> None:
    """The tab's own normalization control, saying why it is not the sidebar's."""
    store.option("norm", where)
    where.caption(NORM_NOTE)


def run_and_stop(runs, run_label: str, stop_key: str, blocked: bool, how_long: str) -> bool:
    """The tab's Run and Stop buttons (a click on Stop, or any control, cuts the record left
    running short: ``runs.mark_cut_short``); whether Run was clicked."""
    b1, b2, b3 = st.columns([2, 1, 4])
    run_clicked = b1.button(run_label, type="primary", disabled=blocked, width="stretch")
    stop_clicked = b2.button("⏹️ Stop", key=stop_key, width="stretch", help="Stops the run in progress; finished runs stay.")
    b3.caption(how_long)
    runs.mark_cut_short(stop_clicked, "Stopped by you.", "Interrupted: a control changed while it trained.")
    return run_clicked


def show_record(view, live, o, message_box, run_label: str) -> None:
    """A record's final charts, and what it is: from earlier settings, or stopped (finished runs kept)."""
    view.draw(live)
    show_status(message_box, live, live.options == o, f"These runs are from earlier settings; press {run_label} for "
                "the current ones.", " The runs that finished are kept.")
