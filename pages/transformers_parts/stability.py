"""Transformers, Stability tab: a learning-rate sweep with QK-norm off and on (and z-loss, if
added). Widgets -> normcore.lab.experiments.transformers.stability -> live charts run by run
(Stop keeps the finished points), the table, each variant's LR sensitivity and what it shows."""

from __future__ import annotations

import streamlit as st

from normcore.lab.experiments.transformers import stability as S
from normcore.lab.experiments.transformers.live_runs import finished_records
from normcore.lab.experiments.transformers.part2_options import StabilityOptions, stability_problems
from normcore.lab.viz import stability_charts as charts
from pages.shared import controls, redraw
from pages.shared.cached_run import CachedRun
from pages.shared.page_options import PageOptions, sync_url
from pages.transformers_parts.common import CHART_PX, run_and_stop, show_record, with_sidebar

OPTIONS = PageOptions(StabilityOptions, "ts_options", "ts_")
RUNS = CachedRun("ts_live", finished_records)
RUN_LABEL = "▶️ Run the sweep"
INTRO = (
    "Wortsman et al. 2023 reproduce large models' training instabilities in small ones by raising the learning "
    "rate: the attention logits grow until the softmax is one-hot (Dehghani et al. 2023), and normalizing each "
    "head's queries and keys (**QK-norm**, shipped by Qwen3, OLMo 2 and Gemma 3) stops it. Every run here starts "
    "from the same weights and batches, pre-LN, AdamW (0.9, 0.95), clipping at 1. **LR sensitivity** = "
    "E_η[min(ℓ(η), ℓ₀) − ℓ*]: the mean over the rates of the final loss (capped at the loss at initialization ℓ₀) "
    "less the best one, ℓ*."
)
SWEEP_TIME = "About a minute at the defaults (10 runs of 200 steps) on one CPU thread; finished runs are cached."
NUMBER = st.column_config.NumberColumn(format="%.3f")


def draw_controls() -> StabilityOptions:
    left, middle, right = st.columns([3, 2, 1])
    OPTIONS.option("rates", left)
    OPTIONS.option("qk_norm", middle)
    OPTIONS.option("z_loss", right)
    with st.expander("Run length and model size"):
        for column, name in zip(st.columns(4), ("steps", "warmup_steps", "depth", "seed")):
            OPTIONS.option(name, column)
        for column, name in zip(st.columns(3), ("width", "heads", "context")):
            OPTIONS.option(name, column)
    return with_sidebar(OPTIONS.current())


def show_results(live: S.StabilitySweep, o: StabilityOptions, view: redraw.LiveView, message_box, said) -> None:
    show_record(view, live, o, message_box, RUN_LABEL)
    said.markdown(live.sentence())
    left, right = st.columns([3, 2])
    left.dataframe(live.table(), hide_index=True, width="stretch",
                   column_config={"final_loss": NUMBER, "max_logit": st.column_config.NumberColumn(format="%.3g")})
    right.dataframe(live.sensitivity(), hide_index=True, width="stretch", column_config={
        "sensitivity": NUMBER, "initial_loss": NUMBER, "best_loss": NUMBER})


def render() -> None:
    OPTIONS.current()
    st.markdown(INTRO)
    o = draw_controls()
    sync_url(OPTIONS)
    blocked = controls.show(stability_problems(o))
    run_clicked = run_and_stop(RUNS, RUN_LABEL, "ts_stop", blocked, SWEEP_TIME)
    progress_box, message_box, said = st.empty(), st.empty(), st.empty()
    said.info(S.PAPER_FINDING)
    top_left, top_right = st.columns(2)
    boxes = [top_left.empty(), top_right.empty(), st.empty()]
    view = redraw.LiveView(progress_box, boxes, charts.sweep_specs, height=CHART_PX)
    live, _ = RUNS.result(None if blocked else o, run_clicked, S.StabilitySweep,
                          lambda sweep: view.follow(sweep, lambda p: S.run_stability(sweep.options, live=sweep, on_progress=p)))
    if live is None:
        message_box.info(f"Press {RUN_LABEL}: the points arrive run by run.")
        return
    show_results(live, o, view, message_box, said)
