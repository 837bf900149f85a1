"""Transformers: a tiny GPT, where its norm sits (post-, pre-, peri-LN) and what that does.

A thin loop over ``TABS``: each tab is one module of ``pages/transformers_parts`` whose
``render()`` draws that tab's controls, calls ``normcore.lab.experiments.transformers`` and shows
what comes back. Only the open tab runs. The shared sidebar's batch size and eps apply; the
norm is each tab's own control (``NORM_NOTE``).
"""

import streamlit as st

from normcore.lab.experiments.transformers.options import NORM_NOTE
from pages.shared import controls
from pages.shared.tabs import render_open_tab

TABS = [  # (title, module in pages/transformers_parts); a tab is one line here
    ("🌱 At initialization", "at_init"),
    ("🔥 Warm-up", "warmup"),
    ("📈 Stability", "stability"),
    ("⚖️ Which norm", "which_norm"),
]

controls.sidebar(("batch_size", "eps"))
with st.sidebar:
    st.caption(NORM_NOTE)
st.title("🧠 Transformers")
st.markdown(
    "A tiny GPT (a causal decoder: learned positions, multi-head attention, a GELU MLP) trained on a "
    "character corpus that ships with Python. Where the norm sits is the question here: **post-LN** "
    "`Norm(x + F(x))` as in the original transformer, **pre-LN** `x + F(Norm(x))` as in GPT-2, or "
    "**peri-LN** `x + Norm(F(Norm(x)))` as in Gemma 2 and 3. Xiong et al. 2020 (\"On Layer Normalization "
    "in the Transformer Architecture\") show why post-LN needs a learning-rate warm-up; each tab measures "
    "one step of that argument at laptop scale."
)
render_open_tab(TABS, "pages.transformers_parts", key="transformers_tab")
