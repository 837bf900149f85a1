"""Part 4: does a normalization smooth the loss landscape? Santurkar et al.'s three measures
over training, and slices of the loss."""

from __future__ import annotations

import streamlit as st

from normcore.lab.experiments import gradients as G
from normcore.lab.experiments.gradients import landscape as L
from normcore.lab.viz import flow_charts as charts
from pages.gradients_parts.common import CHART_PX, OPTIONS, long_run, numbers
from pages.shared.progress import with_progress
from pages.shared import controls

INTRO = (
    f"A small MLP ({L.DEPTH} hidden layers of {L.WIDTH}, ReLU) trained on the digits with BatchNorm and without, "
    "from the same initial weights and with the same learning rate η. Every k-th step, on that step's batch and "
    f"in train mode, we step η·s along the gradient for s in {', '.join(f'{s:g}' for s in L.SCALES)} and record "
    "Santurkar et al. 2018's three measures (\"How Does Batch Normalization Help Optimization?\", Fig. 4): the "
    "**loss landscape** (the range of the loss over those points), the **gradient predictiveness** (the range of "
    "‖∇L(w) − ∇L(w − η·s·∇L)‖) and the **effective β-smoothness** (the largest ‖∇L(w) − ∇L(w − η·s·∇L)‖ / ‖η·s·∇L‖). "
    "Their finding: with BatchNorm the bands are much narrower. Our numbers follow, whatever they say."
)
SLICES = (
    "**Slices of the loss.** Left: the loss along the straight line from the initial weights to the trained ones "
    "(Goodfellow et al. 2015; Im et al. 2016, who report large plateaus without BatchNorm). Right: the loss on "
    "a plane through the trained weights, spanned by two random directions normalized filter by filter to the "
    "weights' norms, with biases and BatchNorm's own γ and β left unperturbed (Li et al. 2018)."
)
TRAIN_MODE = (f"Along the slices, BatchNorm is evaluated **in train mode on one fixed batch** of {L.SLICE_BATCH} "
              "samples: its running statistics belong to the end point, not to the path.")


@st.cache_data(max_entries=16, show_spinner=False)
def landscape_result(settings: L.LandscapeSettings) -> L.LandscapeResult:
    return with_progress("Training with and without BatchNorm, probing the landscape…",
                         lambda on_progress: L.compare(settings, on_progress=on_progress))


@st.cache_data(max_entries=16, show_spinner=False)
def landscape_view(settings: L.LandscapeSettings):
    """The result and its charts as Vega-Lite specs, built once per setting."""
    result = landscape_result(settings)
    measures, line, planes = charts.landscape_charts(result.bands, result.line, result.plane, L.RUNS)
    return result, ([c.to_dict() for c in measures], line.to_dict(), [c.to_dict() for c in planes])


def slices(line: dict, planes: list[dict]) -> None:
    st.markdown(SLICES)
    st.info(TRAIN_MODE)
    st.vega_lite_chart(line, width="stretch", height=CHART_PX)
    for column, spec in zip(st.columns(2), planes):
        column.vega_lite_chart(spec, width="stretch", height=CHART_PX + 60)


def render() -> None:
    st.header("4 · The landscape")
    st.markdown(INTRO)
    for column, name in zip(st.columns(4), G.LANDSCAPE_FIELDS):
        OPTIONS.option(name, column)
    o = OPTIONS.current()
    if controls.show(G.landscape_problems(o)):
        return
    view = long_run("landscape", o.landscape(), landscape_view)
    if view is None:
        return
    result, (measures, line, planes) = view
    for run, status in result.status.items():
        if status == "diverged":
            st.warning(f"The {'no-norm' if run == 'none' else run} run diverged at this learning rate; lower it.")
    widths = result.widths()
    st.markdown("**Band widths** (mean over the probes of max − min; β: mean and largest)")
    numbers(widths)
    st.markdown(L.band_sentence(widths))
    for column, spec in zip(st.columns(3), measures):
        column.vega_lite_chart(spec, width="stretch", height=CHART_PX)
    slices(line, planes)
