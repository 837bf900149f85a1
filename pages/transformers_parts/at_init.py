"""Transformers, At initialization tab: widgets -> normcore.lab.experiments.transformers.at_init
-> per-block gradients (the first view), then on demand post / pre against depth, the residual
stream by block and the two inits side by side, each with the sentence the lab writes."""

from __future__ import annotations

import streamlit as st

from normcore.lab.experiments.transformers import at_init as A
from normcore.lab.experiments.transformers.options import InitOptions, init_problems
from normcore.lab.viz import transformer_charts as charts
from pages.shared import controls
from pages.shared.page_options import PageOptions, sync_url
from pages.transformers_parts.common import CHART_PX, norm_control, with_sidebar
from pages.shared.progress import with_progress

OPTIONS = PageOptions(InitOptions, "ti_options", "ti_")
SWEEP_SHOWN = "ti_sweep_shown"
SWEEP_LABEL = "▶️ Run the depth sweep"
INTRO = (
    "One backward pass of a freshly initialised model on random tokens (next-token loss), nothing trained. "
    "Xiong et al.'s Fig. 3: with **post-LN** the gradient of the last blocks' weights is large at "
    "initialization and does not shrink with depth; with **pre-LN** it does, about like 1/√L (their Theorem 1). "
    "The chart shows the gradient norm of each block's FFN output weight, mean over the seeds."
)
SWEEP_INTRO = (
    "Each placement at depths 2, 3, 6, 12, 24 and 48 (up to the depth above), with both inits: the ratio post / "
    "pre of the last block's gradient against √L, the residual stream's norm after each block at the largest "
    "depth, and the last block's gradient for each init side by side. Xiong's analysis assumes Xavier init; "
    "GPT-2's init is where the effect vanishes."
)


@st.cache_data(max_entries=32, show_spinner=False)
def first_view(o: InitOptions) -> tuple[str, dict]:
    """The per-block gradients' sentence and chart (a Vega-Lite spec: a rerun only sends it)."""
    r = with_progress("Differentiating post-, pre- and peri-LN…", lambda p: A.block_gradients(o, p))
    return r.sentence, charts.block_gradient_chart(r.blocks).to_dict()


@st.cache_data(max_entries=16, show_spinner=False)
def sweep_view(o: InitOptions) -> tuple[A.DepthSweep, list[dict]]:
    r = with_progress("Differentiating every placement at every depth, both inits…", lambda p: A.depth_sweep(o, on_progress=p))
    shown = (charts.ratio_chart(r.ratios), charts.residual_chart(r.residual), charts.init_comparison_chart(r.last_block))
    return r, [chart.to_dict() for chart in shown]


def draw_controls() -> InitOptions:
    for column, name in zip(st.columns([3, 3, 2]), ("depth", "init", "seeds")):
        OPTIONS.option(name, column)
    norm_control(OPTIONS)
    with st.expander("Model size and layers"):
        for column, name in zip(st.columns(4), ("width", "heads", "context", "impl")):
            OPTIONS.option(name, column)
    return with_sidebar(OPTIONS.current())


def sweep_buttons(blocked: bool) -> bool:
    """▶️ Run and ⏹️ Stop for the sweep; True while it is asked for (Stop reruns the page, which
    interrupts it: nothing is cached then)."""
    run_col, stop_col, note = st.columns([2, 1, 4])
    if run_col.button(SWEEP_LABEL, disabled=blocked, width="stretch"):
        st.session_state[SWEEP_SHOWN] = True
    if stop_col.button("⏹️ Stop", key="ti_sweep_stop", width="stretch", help="Stop the sweep."):
        st.session_state[SWEEP_SHOWN] = False
        st.warning("⏹️ Stopped. Press ▶️ Run the depth sweep to compute it.")
    note.caption("About 3 s at depth 12, 12 s at 48 (one seed). Once asked for, it follows the controls above; "
                 "the same settings come back from the cache.")
    return st.session_state.get(SWEEP_SHOWN, False) and not blocked


def sweep_section(o: InitOptions) -> None:
    st.subheader("Against depth, and the two inits")
    st.markdown(SWEEP_INTRO)
    s = A.sweep_options(o)
    if not sweep_buttons(controls.show(init_problems(s, sweep=True))):
        return
    r, (ratio, residual, inits) = sweep_view(s)
    left, right = st.columns(2)
    left.vega_lite_chart(ratio, width="stretch", height=CHART_PX)
    left.markdown(r.sentence)
    right.vega_lite_chart(residual, width="stretch", height=CHART_PX)
    right.markdown(r.residual_sentence)
    st.vega_lite_chart(inits, width="content")


def render() -> None:
    OPTIONS.current()  # first visit: the tab's own options from the URL (a bad parameter is explained here)
    st.markdown(INTRO)
    o = draw_controls()
    sync_url(OPTIONS)
    if controls.show(init_problems(o)):
        return
    sentence, chart = first_view(o)
    st.vega_lite_chart(chart, width="stretch", height=CHART_PX)
    st.markdown(sentence)
    sweep_section(o)
