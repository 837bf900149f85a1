"""Part 1: backprop through a norm step by step (the forward graph, the closed form against
autograd, the identities). Its controls also set part 2's input."""

from __future__ import annotations

import streamlit as st

from normcore.lab.experiments import gradients as G
from normcore.lab.experiments.gradients import formulas
from normcore.lab.viz import gradient_charts as charts
from pages.gradients_parts.common import OPTIONS, numbers
from pages.shared import controls


@st.cache_data(max_entries=32, show_spinner=False)
def part_one(o: G.GradientOptions):
    return G.backprop_view(o), G.identity_vs_eps(o)


def input_controls() -> bool:
    """The small input's controls; True if these options can run."""
    top = st.columns([3, 2, 2, 2])
    OPTIONS.option("input", top[0])
    OPTIONS.option("norm", top[1])
    OPTIONS.option("eps", top[2])
    OPTIONS.option("groups", top[3], disabled=OPTIONS.current().norm != "group")
    example = OPTIONS.current().input == "example"
    for column, name in zip(st.columns(4), G.SHAPE_FIELDS):
        OPTIONS.option(name, column, disabled=example)
    row = st.columns([2, 2, 3, 2])
    OPTIONS.option("gamma", row[0])
    OPTIONS.option("beta", row[1], disabled=OPTIONS.current().norm == "rms")
    OPTIONS.option("upstream", row[2])
    OPTIONS.option("seed", row[3])
    if controls.show(G.problems(OPTIONS.current())):
        st.info("Fix the options above to see the gradients.")
        return False
    return True


def render() -> None:
    o = OPTIONS.current()
    view, sweep = part_one(o)
    st.header("1 · Backprop, step by step")
    st.subheader(formulas.title(o))
    left, right = st.columns([3, 2])
    with left:
        st.graphviz_chart(formulas.forward_dot(o))
        st.caption(view.axes)
    with right:
        for line in formulas.CLOSED_FORM[formulas.family(o.norm)]:
            st.latex(line)
        st.markdown(formulas.FORM_NOTES[o.norm])
    st.markdown("**Where normcore computes each term** (one-line comments there name it):")
    st.markdown("\n".join(f"* {term}: `{path}`, `{where}`" for term, path, where in formulas.LOCATIONS[formulas.family(o.norm)]))
    st.markdown(formulas.upstream_note(o))

    st.markdown("**Closed form (normcore's backward) against autograd (through the graph above)**")
    for column, (name, delta) in zip(st.columns(3), view.max_delta.items()):
        column.metric(f"max |Δ| {name}", f"{delta:.3g}")
    st.caption("torch.nn's gradients against normcore's: max |Δ| "
               + ", ".join(f"{k} {v:.3g}" for k, v in view.max_delta_torch.items()) + ".")
    numbers(view.values, height=36 + 35 * min(len(view.values), 8))
    numbers(view.params)

    st.markdown("**The identities, per statistic group**")
    st.markdown("Σdx = 0: no gradient along the mean (exact to rounding). Σ(dx·x̂) = istd·Σ(dx̂·x̂)·ε/(σ²+ε): near 0 "
                "only while ε ≪ σ². " + ("RMSNorm keeps only the second: it has no mean." if o.norm == "rms" else ""))
    first, second = st.columns(2)
    first.metric("max over groups |Σdx|", f"{view.max_sum_dx:.3g}")
    second.metric("max |Σ(dx·x̂) − istd·Σ(dx̂·x̂)·ε/(σ²+ε)|", f"{view.max_identity_gap:.3g}")
    numbers(view.groups)
    st.altair_chart(charts.identity_vs_eps_chart(sweep, o.eps), width="stretch", height=340)
    st.caption("Lines: the prediction; dots: measured with normcore's backward; red: the eps in use; dashed: each group's σ². Σ(dx·x̂) grows "
               "with eps until eps nears each group's σ² (hover for it): the eps control's effect on the gradient.")
