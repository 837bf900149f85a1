"""What the Transformers page's tabs share: a tab's options with the shared sidebar's batch
size and eps in them, the norm control with its note, and long work under a progress bar."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from normcore.lab.experiments.transformers.options import NORM_NOTE
from pages.shared import controls
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


def with_progress(text: str, compute):
    """``compute(on_progress)`` under a progress bar that goes when it returns."""
    bar = st.progress(0.0, text=text)
    result = compute(lambda done: bar.progress(min(done, 1.0), text=text))
    bar.empty()
    return result
