"""A page made of tabs, one module each: the open tab's module renders, the others do not run."""

from __future__ import annotations

import importlib

import streamlit as st


def render_open_tab(tabs, package: str, key: str) -> None:
    """``tabs``: (title, module in ``package``) pairs; the open tab (bound to the URL as ``key``)
    calls its module's ``render()``."""
    shown = st.tabs([title for title, _ in tabs], key=key, on_change="rerun", bind="query-params")
    for tab, (_, module) in zip(shown, tabs):
        with tab:
            if tab.open:  # only the open tab runs its experiment
                importlib.import_module(f"{package}.{module}").render()
