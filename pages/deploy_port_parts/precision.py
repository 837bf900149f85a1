"""Deploy & port, Precision tab: each way of computing the statistics against float64.
Widgets -> normcore.lab.experiments.deploy.precision -> charts, table, one line per method."""

import streamlit as st

from normcore.lab.experiments.deploy import precision as X
from normcore.lab.viz import precision_charts as charts
from pages.shared.page_options import PageOptions, sync_url

OPTIONS = PageOptions(X.PrecisionOptions, "precision_options", "precision_options.")


@st.cache_data(max_entries=32, show_spinner="Sweeping…")
def sweep(o: X.PrecisionOptions):
    """The sweep and its two charts as Vega-Lite specs (built once: a rerun only sends them)."""
    frame = X.run(o)
    return frame, charts.error_chart(frame, o.view, o.dtype).to_dict(), charts.variance_chart(frame, o.view).to_dict()


@st.cache_data(max_entries=8, show_spinner=False)
def overflow(per_decade: int, eps: float):
    return X.float16_overflow(per_decade, eps)


def at_decades(frame, view: str):
    """The errors at 1e2, 1e4, 1e6 (offset view) or 1e-2, 1e-4, 1e-6 (std view), per method."""
    points = (1e2, 1e4, 1e6) if view == "offset" else (1e-2, 1e-4, 1e-6)
    rows = frame[frame["x"].apply(lambda v: any(abs(v - p) <= 1e-9 * p for p in points))]
    table = rows.pivot_table(index="label", columns="x", values="error", sort=False, dropna=False)
    return table.rename(columns=lambda v: f"{view} {v:g}")


def flagged_note(frame) -> str:
    flagged = frame[frame["input"] != ""].drop_duplicates("x")
    if flagged.empty:
        return ""
    points = ", ".join(f"{x:g} ({flag})" for x, flag in zip(flagged["x"], flagged["input"]))
    return f"Grey bands: the input itself is inf or rounds to one value per channel in this dtype, at {points}; " \
           "no method is to blame there."


def show_overflow(o: X.PrecisionOptions) -> None:
    found = overflow(o.per_decade, o.eps)
    if found is None:
        st.caption("float16: no overflow of E[x²] before the input itself overflows.")
        return
    st.markdown(f"**float16 overflow**: x² exceeds 65,504 past |x| ≈ {found.threshold:.1f}. At offset "
                f"{found.offset:.4g} the naive float16 variance is **{found.naive_variance}**; accumulating in float32 "
                f"(`x.float()` first) gives **{found.fixed_variance:.4g}** (float64: {found.reference_variance:.4g}).")


def render() -> None:
    o = OPTIONS.current()
    sync_url(OPTIONS)
    st.markdown("The same input normalized by torch's kernels, normcore's (its layers as shipped, moved to the "
                "dtype with `.to()`), a naive one-pass formula and a plain two-pass, each against float64 on the "
                "very same (rounded) values.")
    top = st.columns([2, 3, 2, 2, 2])
    OPTIONS.option("dtype", top[0])
    OPTIONS.option("view", top[1])
    OPTIONS.option("offset", top[2], disabled=o.view == "offset")
    OPTIONS.option("eps", top[3])
    OPTIONS.option("per_decade", top[4])
    o = OPTIONS.current()
    frame, errors, variances = sweep(o)
    st.vega_lite_chart(spec=errors, width="stretch", height=420)
    note = flagged_note(frame)
    if note:
        st.caption(note)
    st.markdown("**Why each lands where it does**")
    st.markdown("\n".join(f"* {X.WHY[m]}" for m in X.METHODS))
    st.vega_lite_chart(spec=variances, width="stretch", height=360)
    st.caption("The smallest variance over the statistic groups. torch's LayerNorm and GroupNorm return only 1/σ: "
               "their variance is read back as 1/rstd² − eps (meaningful while σ² ≫ eps); RMSNorm has none.")
    negative = frame[frame["negative"]]
    if not negative.empty:
        worst = negative.loc[negative["variance"].idxmin()]
        st.warning(f"Negative variances: {len(negative)} points, as low as {worst['variance']:.4g} "
                   f"({worst['label']} at {o.view} {worst['x']:g}); their outputs are NaN.")
    st.markdown("**Error at three points of this sweep** (offset/std = 1e2, 1e4, 1e6 in the offset view)")
    table = at_decades(frame, o.view)
    st.dataframe(table, column_config={c: st.column_config.NumberColumn(c, format="%.2g") for c in table.columns})
    show_overflow(o)
