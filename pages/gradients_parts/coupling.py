"""Part 2: how the samples of a batch couple (the Jacobian, the 1/N sweep, the batch of two)."""

from __future__ import annotations

import streamlit as st

from normcore.lab.experiments import gradients as G
from normcore.lab.experiments.gradients import formulas
from normcore.lab.viz import gradient_charts as charts
from pages.gradients_parts.common import OPTIONS, numbers


@st.cache_data(max_entries=32, show_spinner=False)
def part_two(o: G.GradientOptions):
    return G.coupling_view(o), G.coupling_vs_batch_size(o), G.batch_of_two(o)


def render() -> None:
    st.header("2 · How samples couple")
    OPTIONS.option("mode")
    o = OPTIONS.current()
    blocks, coupling, two = part_two(o)
    st.altair_chart(charts.jacobian_heatmap(blocks, f"∂y_i/∂x_j ({o.mode})"), width="content")
    within, across = st.columns(2)
    within.metric("max |entry| within a sample", f"{blocks.max_within:.3g}")
    across.metric("max |entry| across samples", f"{blocks.max_across:.3g}")
    st.markdown(formulas.coupling_note(o))
    st.altair_chart(charts.coupling_vs_n_chart(coupling), width="stretch", height=340)
    st.caption("BatchNorm on N random samples of one value (this page's γ and eps). Each cross-sample entry "
               "(dots; black crosses: −γ·istd·(1+x̂ᵢx̂ⱼ)/N) shrinks like 1/N (dashed), while the total a sample "
               "receives from its N − 1 batch-mates does not. At N = 2 both are ≈ 0: see below.")
    st.subheader("The batch of two")
    st.markdown(formulas.BATCH_OF_TWO)
    numbers(two)
