"""Gradients: backprop through a normalization step by step, how the samples of a batch
couple, how gradients flow through a deep network, and whether a norm smooths the landscape.

A thin loop over ``pages.gradients_parts.PARTS``: each tab draws its controls, calls
``normcore.lab.experiments.gradients`` (cached by its settings; only the open tab runs) and
renders what comes back. The page's own controls travel in the URL (``g_*``).
"""

import streamlit as st

from pages.gradients_parts import PARTS, common
from pages.shared import controls
from pages.shared.page_options import sync_url

common.OPTIONS.current()  # first visit: the page's options from the URL (a bad parameter is explained here)
st.title("🧮 Gradients")
st.markdown("How a normalization layer is differentiated, why BatchNorm's outputs depend on the other samples "
            "of the batch, how gradients flow through a deep network with and without a norm, and whether a "
            "norm smooths the loss landscape. Everything here is computed live.")
st.info("This page has its own controls, in each tab. The sidebar's shared controls (batch size, input "
        "distribution, norm, eps) do not apply here.")
controls.sidebar(())  # none of the shared controls: only their URL read-back and Reset
with st.sidebar:
    st.caption("Gradients: this page's controls are on the page; the shared controls do not apply here.")

tabs = st.tabs([p.title for p in PARTS], key="gradient_part", on_change="rerun", bind="query-params")
for tab, part in zip(tabs, PARTS):
    with tab:
        if tab.open:  # only the open tab computes
            part.render()
sync_url(common.OPTIONS)
