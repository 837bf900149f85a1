"""The baseline page of ``benchmarks.browser``: the smallest Streamlit page with the same
interactions as the lab's (run with ``streamlit run benchmarks/browser_baseline_page.py``).

One chart (a random walk of 100 points), a sidebar slider, a Step button, two tabs that rerun
the page when switched, and a slider of the page's own. What a lab page costs beyond this is
its own: its script, the elements it sends, the charts the browser draws.
"""

import numpy as np
import pandas as pd
import streamlit as st

st.set_page_config(page_title="baseline", layout="wide")
st.session_state.setdefault("steps", 0)

size = st.sidebar.slider("Batch size N", 1, 256, 32)
st.title("Baseline")
st.button("⏭️ Step", on_click=lambda: st.session_state.update(steps=st.session_state.steps + 1))
points = st.slider("Points", 10, 200, 100, step=10)
walk = np.random.default_rng(st.session_state.steps + size).standard_normal(points).cumsum()
first, second = st.tabs(["One", "Two"], key="tab", on_change="rerun")
with first:
    if first.open:
        st.vega_lite_chart(pd.DataFrame({"step": np.arange(points), "value": walk}), {
            "mark": "line", "encoding": {"x": {"field": "step", "type": "quantitative"},
                                         "y": {"field": "value", "type": "quantitative"}}}, width="stretch")
with second:
    if second.open:
        st.write(f"{st.session_state.steps} steps")
