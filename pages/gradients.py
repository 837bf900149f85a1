"""Gradients: backprop through a normalization step by step, and how the samples of a batch couple.
Widgets -> normcore.lab.experiments.gradients -> tables and charts."""

import streamlit as st

from normcore.lab.experiments import gradients as G
from normcore.lab.experiments.gradients import formulas
from normcore.lab.viz import gradient_charts as charts
from pages.shared import controls, widgets

OPTIONS = "gradient_options"
FMT = {"format": "%.6g"}

if OPTIONS not in st.session_state:  # first visit: the page's own options from the URL
    st.session_state[OPTIONS], url_messages = G.GradientOptions.from_query(st.query_params.to_dict())
    for message in url_messages:
        st.warning(message)


def options() -> G.GradientOptions:
    return st.session_state[OPTIONS]


def option(name: str, where=st, **extra):
    """A page control drawn from its field, bound to GradientOptions (the store is the source of truth)."""
    return widgets.draw(G.FIELDS[name], where=where, **controls.bind(OPTIONS, name, f"grad_{name}"), **extra)


@st.cache_data(max_entries=32, show_spinner=False)
def part_one(o: G.GradientOptions):
    return G.backprop_view(o), G.identity_vs_eps(o)


@st.cache_data(max_entries=32, show_spinner=False)
def part_two(o: G.GradientOptions):
    return G.coupling_view(o), G.coupling_vs_batch_size(o), G.batch_of_two(o)


def numbers(frame, height="auto"):
    config = {c: st.column_config.NumberColumn(c, **FMT) for c in frame.columns if frame[c].dtype.kind == "f"}
    st.dataframe(frame, hide_index=True, column_config=config, height=height)


st.title("🧮 Gradients")
st.markdown("How a normalization layer is differentiated, and why BatchNorm's outputs depend on the "
            "other samples of the batch. Everything here is computed live, in float64.")
st.info("This page has its own small input (at most 64 values), set below. The sidebar's shared controls "
        "(batch size, input distribution, norm, eps) do not apply here.")
controls.sidebar(())  # none of the shared controls: only their URL read-back and Reset
with st.sidebar:
    st.caption("Gradients: this page's controls are on the page; the shared controls do not apply here.")

top = st.columns([3, 2, 2, 2])
option("input", top[0])
option("norm", top[1])
option("eps", top[2])
option("groups", top[3], disabled=options().norm != "group")
example = options().input == "example"
for column, name in zip(st.columns(4), G.SHAPE_FIELDS):
    option(name, column, disabled=example)
row = st.columns([2, 2, 3, 2])
option("gamma", row[0])
option("beta", row[1], disabled=options().norm == "rms")
option("upstream", row[2])
option("seed", row[3])
o = options()
controls.sync_url(o.to_query(), page_params=G.FIELDS.url_names)

blocked = False
for p in G.problems(o):
    (st.error if p.level == "error" else st.warning)(p.message)
    blocked |= p.level == "error"
if blocked:
    st.info("Fix the options above to see the gradients.")
    st.stop()

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

st.header("2 · How samples couple")
option("mode")
blocks, coupling, two = part_two(options())
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
