"""Transformers, Warm-up tab: post-LN and pre-LN trained at one learning rate, each with and
without a linear warm-up. Widgets -> normcore.lab.experiments.transformers.warmup -> live loss
curves (Stop keeps what finished), the runs' table, and what they show beside Xiong et al.'s finding."""

from __future__ import annotations

import streamlit as st

from normcore.lab.experiments.transformers import warmup as W
from normcore.lab.experiments.transformers.options import WarmupOptions, warmup_problems
from normcore.lab.viz import transformer_charts as charts
from pages.shared import controls, redraw
from pages.shared.cached_run import CachedRun, show_status
from pages.shared.page_options import PageOptions, sync_url
from pages.transformers_parts.common import CHART_PX, norm_control, with_sidebar

OPTIONS = PageOptions(WarmupOptions, "tw_options", "tw_")
RUNS = CachedRun("tw_live", W.finished_comparisons)
RUN_LABEL = "▶️ Train the four runs"
INTRO = (
    "Four runs from the same weights on the same batches, AdamW: post-LN and pre-LN, each without and with a "
    "linear warm-up of the learning rate. The defaults (4 blocks, 100 steps, lr 5e-3) are where this lab "
    "finds the gap; at a lower learning rate or a deeper, longer run it can vanish at this scale."
)
SUMMARY_COLUMNS = ("label", "final_loss", "validation_loss", "status", "steps", "train_time_s")
NUMBER = st.column_config.NumberColumn(format="%.3f")


def draw_controls() -> WarmupOptions:
    for column, name in zip(st.columns(4), ("lr", "steps", "warmup_steps", "depth")):
        OPTIONS.option(name, column)
    left, middle, right = st.columns([2, 1, 1])
    norm_control(OPTIONS, left)
    OPTIONS.option("clip", middle)
    OPTIONS.option("seed", right)
    with st.expander("Model size and layers"):
        for column, name in zip(st.columns(4), ("width", "context", "heads", "impl")):
            OPTIONS.option(name, column)
    return with_sidebar(OPTIONS.current())


def train(view: redraw.LiveView, comparison: W.WarmupComparison) -> None:
    view.follow(comparison, lambda on_progress: W.run_warmup(comparison.options, live=comparison, on_progress=on_progress))


def show_results(live: W.WarmupComparison, o: WarmupOptions, view: redraw.LiveView, message_box, said) -> None:
    view.draw(live)
    show_status(message_box, live, live.options == o, f"These runs are from earlier settings; press {RUN_LABEL} for "
                "the current ones.", " The runs that finished are kept.")
    said.markdown(live.sentence())
    st.dataframe(live.summary(), hide_index=True, width="stretch", column_order=SUMMARY_COLUMNS, column_config={
        "final_loss": NUMBER, "validation_loss": NUMBER, "train_time_s": st.column_config.NumberColumn(format="%.1f")})
    st.caption("final_loss: the training loss averaged over the last report's steps; validation_loss: on the held-out "
               "10 % of the corpus, after training (finished runs only).")


def render() -> None:
    OPTIONS.current()  # first visit: the tab's own options from the URL (a bad parameter is explained here)
    st.markdown(INTRO)
    o = draw_controls()
    sync_url(OPTIONS)
    blocked = controls.show(warmup_problems(o))
    b1, b2, b3 = st.columns([2, 1, 4])
    run_clicked = b1.button(RUN_LABEL, type="primary", disabled=blocked, width="stretch")
    stop_clicked = b2.button("⏹️ Stop", key="tw_stop", width="stretch", help="Stops the run in progress; finished runs stay.")
    b3.caption("About 20 s at the defaults on one CPU thread, capped at 3 min; the same settings again come from the cache.")
    RUNS.mark_cut_short(stop_clicked, "Stopped by you.", "Interrupted: a control changed while it trained.")
    curves, words = st.columns([3, 2])
    progress_box, message_box, chart_box = curves.empty(), curves.empty(), curves.empty()
    said = words.empty()
    said.info(W.PAPER_FINDING)
    view = redraw.LiveView(progress_box, [chart_box], lambda c: [charts.loss_curves_spec(c.curves())],
                           height=CHART_PX)
    live, _ = RUNS.result(None if blocked else o, run_clicked, W.WarmupComparison, lambda c: train(view, c))
    if live is None:
        message_box.info(f"Press {RUN_LABEL}: the loss curves grow as they train.")
        return
    show_results(live, o, view, message_box, said)
