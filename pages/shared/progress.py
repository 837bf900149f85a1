"""A progress bar around one piece of work that reports how far it got."""

from __future__ import annotations

import streamlit as st


def with_progress(text: str, compute):
    """``compute(on_progress)`` under a progress bar that goes when it returns."""
    bar = st.progress(0.0, text=text)
    result = compute(lambda done: bar.progress(min(done, 1.0), text=text))
    bar.empty()
    return result
