"""Deploy & port: getting a normalized model out of the lab and into production.

A thin loop over ``TABS``: each tab is one module of ``pages/deploy_port_parts`` whose ``render()``
draws that tab's controls, calls ``normcore.lab.experiments.deploy`` and shows what comes
back. Only the open tab runs.
"""

import importlib

import streamlit as st

from pages.shared import controls

TABS = (  # (title, module in pages/deploy_port_parts)
    ("🧩 Fold BatchNorm", "fold"),
    ("🔁 Port between frameworks", "port"),
    ("🎯 Precision", "precision"),
)

controls.sidebar(())  # none of the shared controls: only their URL read-back and Reset
with st.sidebar:
    st.caption("Deploy & port: this page's controls are in its tabs; the shared controls do not apply here.")
st.title("🚀 Deploy & port")
st.markdown(
    "What happens to normalization layers on the way to production: **folding** BatchNorm into the "
    "layer before it, **porting** between PyTorch and Keras/TensorFlow conventions, and the "
    "**precision** each way of computing the statistics keeps."
)
tabs = st.tabs([title for title, _ in TABS], key="deploy_tab", on_change="rerun", bind="query-params")
for tab, (_, module) in zip(tabs, TABS):
    with tab:
        if tab.open:  # only the open tab runs its experiment
            importlib.import_module(f"pages.deploy_port_parts.{module}").render()
