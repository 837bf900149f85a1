"""Part 3: gradient flow in depth. A deep MLP trained with the chosen norm and without one,
read layer by layer at initialization and after training."""

from __future__ import annotations

import streamlit as st

from normcore.lab.experiments import gradients as G
from normcore.lab.experiments.gradients import flow
from normcore.lab.experiments.gradients.flow import GAIN_MARKS
from normcore.lab.viz import flow_charts as charts
from pages.gradients_parts.common import CHART_PX, OPTIONS, long_run, numbers
from pages.shared.progress import with_progress
from pages.shared import controls

INTRO = (
    "A deep MLP on the digits (Linear → norm → activation, Xavier-normal weights × the gain), trained by the "
    "training page's loop with the chosen norm and, from the same weights, without one. Each layer is read on "
    "one fixed batch of 128 in train mode, at initialization (dashed) and after training (solid). The gradient "
    "reaching each **activation** and the gradient of each **weight** are two series: they tell different "
    "stories. Yang et al. 2019 (\"A Mean Field Theory of Batch Normalization\") predict that at initialization "
    "a deep BatchNorm network's gradients *explode* towards the input; below is what this run measures."
)


@st.cache_data(max_entries=16, show_spinner=False)
def flow_result(settings: flow.FlowSettings) -> flow.FlowResult:
    return with_progress("Training both networks…", lambda on_progress: flow.compare(settings, on_progress=on_progress))


def flow_controls() -> None:
    row = st.columns(4)
    for column, name in zip(row, ("depth", "width", "steps", "flow_lr")):
        OPTIONS.option(name, column)
    row = st.columns([2, 3, 3])
    OPTIONS.option("activation", row[0])
    OPTIONS.option("gain", row[1])
    OPTIONS.option("flow_norm", row[2])
    st.caption(f"Init gain: {GAIN_MARKS}")


def sentences(result: flow.FlowResult) -> None:
    lines = []
    for (run, when), profile in result.profiles.groupby(["run", "when"], sort=False):
        for column in ("act_grad_std", "weight_grad_std"):
            lines.append("* " + flow.flow_sentence(profile, run, when, column))
    st.markdown("**The measured profile, in words**\n\n" + "\n".join(lines))


@st.cache_data(max_entries=16, show_spinner=False)
def flow_view(settings: flow.FlowSettings):
    """The result and its charts as Vega-Lite specs, built once per setting (a rerun draws them as they are)."""
    result = flow_result(settings)
    shown = charts.flow_charts(result.profiles, result.histories, settings.activation, flow.HEALTHY_UPDATE_RATIO)
    return result, [chart.to_dict() for chart in shown]


def charts_grid(specs: list[dict]) -> None:
    for start in range(0, len(specs), 2):
        for column, spec in zip(st.columns(2), specs[start:start + 2]):
            column.vega_lite_chart(spec, width="stretch", height=CHART_PX)


def render() -> None:
    st.header("3 · Gradient flow in depth")
    st.markdown(INTRO)
    flow_controls()
    o = OPTIONS.current()
    if controls.show(G.flow_problems(o)):
        return
    view = long_run("flow", o.flow(), flow_view)
    if view is None:
        return
    result, specs = view
    for run, status in result.status.items():
        if status == "diverged":
            st.warning("Without a norm the run diverged (its loss became NaN or infinite); only its "
                       "initialization is shown. Lower the learning rate." if run == "none" else
                       f"The {run} run diverged; only its initialization is shown. Lower the learning rate.")
    st.markdown("**First-layer over last-layer gradient std** (above 1: larger towards the input)")
    numbers(result.ratios())
    sentences(result)
    charts_grid(specs)
    st.caption("Green band: log10 update:data ratio −3 ± 0.5, the usual healthy range (Karpathy, makemore part 3); "
               "it uses the plain lr·gradient, SGD's momentum left out. Saturated: |tanh| > 0.97 "
               "(sigmoid: within 0.03 of 0 or 1). The percentiles come from the training loop's probe on layer 1.")
