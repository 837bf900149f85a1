"""Deploy & port, Fold tab: widgets -> normcore.lab.experiments.deploy.fold -> readouts, tables,
the mistakes chart and the folded state_dict's download."""

from __future__ import annotations

import math

import streamlit as st

from normcore.lab.experiments.deploy import fold as F
from normcore.lab.experiments.deploy.fold_options import FoldOptions
from normcore.lab.viz import deploy_charts as charts
from pages.shared.page_options import PageOptions, sync_url

OPTIONS = PageOptions(FoldOptions, "fold_options", "fold_")
SHOW = {"error": st.error, "warning": st.warning, "info": st.info}
INTRO = (
    "In eval, BatchNorm is a fixed scale and shift per channel, so it can be folded into the conv or "
    "linear layer before it: one layer less at inference, the same outputs up to rounding."
)


@st.cache_resource(show_spinner=False, max_entries=8)
def digits_cnn(key: tuple, _o: FoldOptions) -> F.DigitsCNN:
    """The model, built once per ``key`` (FoldOptions.model_key; ``_o`` is not hashed)."""
    return F.build_model(_o)


@st.cache_data(show_spinner=False, max_entries=32)
def fold_result(o: FoldOptions, _cnn: F.DigitsCNN) -> F.FoldResult:
    return F.run(o, _cnn)


def draw_controls() -> FoldOptions:
    for column, name in zip(st.columns([3, 2, 2, 2]), ("source", "width", "depth", "seed")):
        OPTIONS.option(name, column)
    for column, name in zip(st.columns(2), ("batch", "repeats")):
        OPTIONS.option(name, column)
    return OPTIONS.current()


def show_fold(r: F.FoldResult) -> None:
    ours, theirs = r.parity.max_abs_delta[0], r.parity.max_abs_delta[1]
    before, after = r.counts.set_index("what").loc["parameters"]
    cols = st.columns(4)
    cols[0].metric("max |Δ| folded vs unfolded", f"{ours:.2g}", help="normcore.fold_batchnorm, logits of the 450 test digits")
    cols[1].metric("max |Δ| torch.nn.utils.fusion", f"{theirs:.2g}")
    cols[2].metric("parameters", f"{after:,}", delta=f"{after - before:,}", delta_color="off")
    cols[3].metric("inference speed-up", f"{r.timing.speedup:.2f}×",
                   help=f"Median over {r.timing.passes} passes of each version, timed alternately on 1 CPU thread: "
                        f"{r.timing.unfolded_ms:.2f} ms unfolded, {r.timing.folded_ms:.2f} ms folded.")
    st.caption(f"Test accuracy {r.accuracy:.1%}, the same folded. The speed-up is measured here, on one CPU "
               "thread: on a small CNN most of the time is in the convolutions, and an eval-mode BatchNorm is one "
               "multiply-add per value, so folding it saves little; it saves more where BatchNorm is a separate "
               "kernel launch (GPUs) or blocks an int8 conv.")
    left, right = st.columns(2)
    left.dataframe(r.parity, hide_index=True, column_config={"max_abs_delta": st.column_config.NumberColumn(format="%.3g")})
    right.dataframe(r.counts, hide_index=True)
    st.code(f"folded, report = normcore.fold_batchnorm(model, return_report=True)\nprint(report)\n\n{r.report}",
            language="python")


def show_mistakes(r: F.FoldResult) -> None:
    st.subheader("The classic mistakes, made live")
    st.altair_chart(charts.mistakes_chart(r.mistakes), width="stretch", height=charts.mistakes_chart_height(r.mistakes))
    for m in r.mistakes.itertuples():
        changed = "" if math.isnan(m.predictions_changed) else f"; {m.predictions_changed:.0f} of 450 test digits change class"
        st.markdown(f"**{m.mistake}**: max |Δ| **{m.error:.3g}** (right way, {m.right_way}: {m.right_error:.2g}){changed}.")
        st.caption(m.explanation)


def show_download(r: F.FoldResult) -> None:
    st.subheader("Download the folded weights")
    st.download_button("⬇️ Folded state_dict (.pt, tensors only)", r.state_bytes, file_name=F.FILE_NAME,
                       mime="application/octet-stream", key="fold_download", on_click="ignore")
    st.code(r.snippet, language="python")


def render() -> None:
    OPTIONS.current()  # first visit: the tab's own options from the URL (a bad parameter is explained here)
    st.markdown(INTRO)
    st.latex(r"W' = W\cdot\frac{\gamma}{\sqrt{\sigma^2+\varepsilon}}\qquad "
             r"b' = (b-\mu)\cdot\frac{\gamma}{\sqrt{\sigma^2+\varepsilon}}+\beta")
    o = draw_controls()
    sync_url(OPTIONS)
    try:
        with st.spinner("Building the digits CNN and folding it…", show_time=True):
            r = fold_result(o, digits_cnn(o.model_key, o))
    except (ValueError, RuntimeError) as exc:  # nothing raises into the page
        st.error(f"The fold could not run with these options: {exc}")
        return
    for p in r.messages:
        SHOW[p.level](p.message)
    show_fold(r)
    show_mistakes(r)
    show_download(r)
