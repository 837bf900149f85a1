"""Transformers, Which-norm tab: first the S-curves of a briefly trained pre-LN model's LayerNorm
(cached), then on demand LayerNorm, RMSNorm, Dynamic Tanh, none and BatchNorm trained side by
side (live, Stop keeps what finished), their step times, DyT's α and saturation, BatchNorm's leaks.
Widgets -> normcore.lab.experiments.transformers (s_curves, norm_comparison, batchnorm_leak)."""

from __future__ import annotations

import streamlit as st

from normcore.lab.experiments.transformers import batchnorm_leak, norm_comparison as N, s_curves
from normcore.lab.experiments.transformers.live_runs import finished_records
from normcore.lab.experiments.transformers.part2_options import ALPHA_GUIDANCE, NormOptions, norm_problems
from normcore.lab.viz import stability_charts as charts
from pages.shared import controls, redraw
from pages.shared.cached_run import CachedRun
from pages.shared.page_options import PageOptions, sync_url
from pages.transformers_parts.common import CHART_PX, run_and_stop, show_record, with_sidebar

OPTIONS = PageOptions(NormOptions, "tn_options", "tn_")
RUNS = CachedRun("tn_live", finished_records)
RUN_LABEL = "▶️ Train the norms side by side"
INTRO = (
    "Zhu et al. 2025 (\"Transformers without Normalization\") see a trained transformer's LayerNorms map input to "
    "output along tanh-like S-curves, each token on its own line of slope 1/σ, and replace LayerNorm by "
    "**Dynamic Tanh**, `tanh(αx)·γ + β`. Below: the S in this lab's model, then the five norms trained from the same "
    "weights. BatchNorm over batch × time is the odd one: in training it lets tokens see later tokens and other sequences."
)
NORMS_TIME = "About 30 s at the defaults on one CPU thread; finished runs are cached."
NUMBER = st.column_config.NumberColumn(format="%.3f")


def draw_controls() -> NormOptions:
    left, middle, right = st.columns([3, 1, 1])
    OPTIONS.option("norms", left)
    OPTIONS.option("lr", middle)
    OPTIONS.option("dyt_alpha", right)
    st.caption(ALPHA_GUIDANCE)
    with st.expander("Run length, model size and the S-curve's layer"):
        for column, name in zip(st.columns(4), ("steps", "depth", "width", "context")):
            OPTIONS.option(name, column)
        for column, name in zip(st.columns(3), ("s_block", "s_norm", "seed")):
            OPTIONS.option(name, column)
    return with_sidebar(OPTIONS.current())


@st.cache_data(show_spinner="Training the pre-LN model briefly (once; then cached)…", max_entries=32)
def the_s_curves(o: NormOptions) -> s_curves.SCurves:
    return s_curves.s_curves(o)


def show_s_curves(o: NormOptions) -> None:
    curves = the_s_curves(o)
    left, right = st.columns([3, 2])
    left.vega_lite_chart(charts.s_curve_spec(curves), width="stretch", height=CHART_PX + 60)
    right.markdown(curves.sentence())
    right.caption(s_curves.LINEAR_NOTE)


def show_results(live: N.NormComparison, o: NormOptions, view: redraw.LiveView, message_box) -> None:
    show_record(view, live, o, message_box, RUN_LABEL)
    st.markdown(live.sentence())
    st.dataframe(live.summary(), hide_index=True, width="stretch", column_config={
        "validation_loss": NUMBER, "final_train_loss": NUMBER, "ms_per_step": st.column_config.NumberColumn(format="%.1f")})
    left, right = st.columns(2)
    dyt = live.dyt()
    if len(dyt):
        left.markdown("**DyT at the end: α and the share of inputs with |αx| > 2** (tanh saturated)")
        left.dataframe(dyt[dyt["step"] == dyt["step"].max()], hide_index=True, column_config={
            "alpha": NUMBER, "saturated": st.column_config.NumberColumn(format="%.3f")})
    right.markdown("**Time per step, normcore against torch.nn** (CPU ms, one thread, alternated)")
    right.dataframe(step_times(live.options), hide_index=True, column_config={
        "normcore_ms": NUMBER, "torch_ms": NUMBER, "ratio": st.column_config.NumberColumn(format="%.2f")})
    st.markdown("**BatchNorm's leaks** (largest change of logits that must not change; the models at initialization)")
    st.dataframe(leaks(live.options), hide_index=True, column_config={"future_leak": NUMBER, "batch_leak": NUMBER})


@st.cache_data(show_spinner="Timing one step of each…", max_entries=16)
def step_times(o: NormOptions):
    return N.step_time_table(o)


@st.cache_data(show_spinner=False, max_entries=16)
def leaks(o: NormOptions):
    return batchnorm_leak.leak_table(o)


def render() -> None:
    OPTIONS.current()
    st.markdown(INTRO)
    o = draw_controls()
    sync_url(OPTIONS)
    blocked = controls.show(norm_problems(o))
    if not blocked:
        show_s_curves(o)
    run_clicked = run_and_stop(RUNS, RUN_LABEL, "tn_stop", blocked, NORMS_TIME)
    progress_box, message_box = st.empty(), st.empty()
    left, right = st.columns(2)
    view = redraw.LiveView(progress_box, [left.empty(), right.empty()], charts.norm_specs, height=CHART_PX)
    live, _ = RUNS.result(None if blocked else o, run_clicked, N.NormComparison,
                          lambda c: view.follow(c, lambda p: N.run_norms(c.options, live=c, on_progress=p)))
    if live is None:
        message_box.info(f"Press {RUN_LABEL}: the loss curves grow as they train.")
        return
    show_results(live, o, view, message_box)
