"""What every part of the Gradients page shares: its options store (``OPTIONS``: read from the
URL once, a control drawn bound to it), a table of numbers, and long work with Stop."""

from __future__ import annotations

import streamlit as st

from normcore.lab.experiments import gradients as G
from pages.shared.page_options import PageOptions

OPTIONS = PageOptions(G.GradientOptions, "gradient_options", "grad_")
STOPPED = "gradient_stopped"  # part -> the settings whose run the user stopped
FMT = {"format": "%.6g"}
CHART_PX = 320  # the height of each chart of parts 3–4


def numbers(frame, height="auto"):
    config = {c: st.column_config.NumberColumn(c, **FMT) for c in frame.columns if frame[c].dtype.kind == "f"}
    st.dataframe(frame, hide_index=True, column_config=config, height=height)


def long_run(part: str, settings, compute):
    """``compute(settings)`` (a cached function that shows its own progress), with ▶️ Run and
    ⏹️ Stop. Stop reruns the page, which interrupts the computation (nothing is cached then);
    these settings then wait for ▶️ Run. Returns the result, or None while stopped."""
    run_col, stop_col, note = st.columns([1, 1, 4])
    run = run_col.button("▶️ Run", key=f"grad_run_{part}", width="stretch", help="Compute these settings.")
    stop = stop_col.button("⏹️ Stop", key=f"grad_stop_{part}", width="stretch", help="Stop the computation.")
    note.caption("Computed when the tab opens; the same settings come back from the cache.")
    stopped = st.session_state.setdefault(STOPPED, {})
    if stop:
        stopped[part] = settings
    if run:
        stopped.pop(part, None)
    if stopped.get(part) == settings:
        st.info("⏹️ Stopped. Press ▶️ Run to compute these settings.")
        return None
    return compute(settings)
