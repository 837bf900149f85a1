"""Charts for the Live statistics page: tidy frames from ``normcore.lab.experiments.live`` in,
Altair charts out. Colours mean the same thing everywhere on the page:

* before normalizing: grey; after: blue (histograms, and the measured eps points);
* a unit (channel or group) keeps its colour on every stream chart;
* series: the noisy batch statistic is thin and faint, the running estimate thick, the true
  population value dashed.
"""

from __future__ import annotations

import functools

import altair as alt
import pandas as pd

from normcore.lab.experiments import live
from normcore.lab.experiments.live.units import Diagram
from normcore.lab.settings import LabSettings
from normcore.lab.viz import specs

BEFORE, AFTER = "#9a9a9a", "#1f77b4"
STAGE_SCALE = alt.Scale(domain=["before", "after"], range=[BEFORE, AFTER])
SERIES = ["batch", "running", "true"]
SERIES_LABELS = {"batch": "batch (noisy)", "running": "running (EMA)", "true": "true population"}
# Tableau's 10 colours, then their light partners: neighbouring statistics get distinct hues.
STATISTIC_COLOURS = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#a0cbe8", "#ffbe7d", "#ff9d9a", "#86bcb6", "#8cd17d", "#f1ce63", "#d4a6c8", "#fabfd2", "#d7b5a6", "#79706e",
]


def statistic_diagram(diagram: Diagram, title: str) -> alt.FacetChart:
    """One panel per sample: channels down, positions across, each cell coloured (and
    numbered) by the statistic it shares. BN paints rows alike in every panel, LN a whole
    panel in one colour, IN every row of every panel differently, GN bands of rows."""
    frame = diagram.frame.assign(label=lambda f: diagram.symbol + f["statistic"].astype(str))
    _, channels, positions = diagram.shown
    base = alt.Chart(frame).encode(
        x=alt.X("position:O", title="position (H·W, flattened)", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("channel:O", title="channel"),
    )
    cells = base.mark_rect(stroke="white", strokeWidth=2).encode(
        color=alt.Color("statistic:N", legend=None, scale=alt.Scale(range=STATISTIC_COLOURS)),
        tooltip=[
            "sample", "channel", "position",
            alt.Tooltip("statistic", title="statistic #"),
            alt.Tooltip("shares", title="values sharing it (whole batch)"),
        ],
    )
    text = base.mark_text(fontSize=11, color="white", fontWeight="bold").encode(text="label:N")
    return (
        alt.layer(cells, text)
        .properties(width=34 * positions, height=26 * channels)
        .facet(column=alt.Column("sample:O", title=None, header=alt.Header(labelExpr="'sample ' + datum.value", labelFontSize=13)))
        .properties(title=title)
    )


def histograms(frame: pd.DataFrame, title: str) -> alt.FacetChart:
    """Before (grey, top) and after (blue, bottom) per unit; each panel has its own x range,
    so a narrow input and its standardized output are both readable."""
    units = list(dict.fromkeys(frame["unit"]))
    bars = alt.Chart(frame).mark_bar(binSpacing=0).encode(
        # zero=False: a quiet channel around 2.0 must not be drawn on an axis from 0.
        x=alt.X("bin_start:Q", title=None, scale=alt.Scale(zero=False, nice=False), axis=alt.Axis(tickCount=3, format="~g")),
        x2="bin_end:Q",
        y=alt.Y("count:Q", title=None, axis=alt.Axis(tickCount=3)),
        y2=alt.datum(0),  # bars from zero: with x/x2 ranges Vega-Lite would not stack them itself
        color=alt.Color("stage:N", scale=STAGE_SCALE, legend=alt.Legend(title=None, orient="top")),
        tooltip=["unit", "stage", alt.Tooltip("bin_start", format=".4g"), alt.Tooltip("bin_end", format=".4g"), "count"],
    ).properties(width=150 if len(units) <= 4 else 100, height=90)  # six panels still fit the page
    return (
        bars.facet(
            row=alt.Row("stage:N", sort=["before", "after"], title=None),
            column=alt.Column("unit:N", sort=units, title=None, header=alt.Header(labelFontSize=12)),
        )
        .resolve_scale(x="independent", y="independent")
        .properties(title=title)
    )


def eps_chart(curve: pd.DataFrame, current_eps: float) -> alt.LayerChart:
    """Channel 0's output spread against eps (log-log): the theory (dashed black line), the
    measured values (blue points, the "after" colour) and a red rule at the eps in use."""
    x = alt.X("eps:Q", scale=alt.Scale(type="log"), title="eps (log scale)", axis=alt.Axis(format="~e", grid=False))
    low = max(float(curve[["measured", "theory"]].min().min()), 1e-6)
    y = alt.Y(
        "spread:Q", title="output std, channel 0", scale=alt.Scale(type="log", domain=[low / 1.5, 1.5]),
        axis=alt.Axis(format="~g", values=[1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1]),
    )
    long = curve.melt(id_vars="eps", value_vars=["measured", "theory"], var_name="source", value_name="spread")
    colour = alt.Color("source:N", scale=alt.Scale(domain=["measured", "theory"], range=[AFTER, "black"]),
                       legend=alt.Legend(title=None, orient="top"))
    theory = alt.Chart(long[long.source == "theory"]).mark_line(strokeDash=[6, 4]).encode(x, y, colour)
    measured = alt.Chart(long[long.source == "measured"]).mark_point(filled=True, size=60, opacity=1).encode(
        x, y, colour, tooltip=[alt.Tooltip("eps", format=".0e"), alt.Tooltip("spread", format=".4g", title="measured std")],
    )
    rule = alt.Chart(pd.DataFrame({"eps": [current_eps], "label": [f"eps in use: {current_eps:.0e}"]}))
    rule = rule.mark_rule(color="#d62728", strokeWidth=2).encode(x, tooltip=["label"])
    return alt.layer(theory, measured, rule).properties(height=230)


def diagram_charts(s: LabSettings) -> list[alt.FacetChart]:
    """Section 1 of the page: the statistic diagram at settings ``s`` (none when it cannot be drawn)."""
    diagram = live.diagram_frame(s)
    return [] if diagram is None else [statistic_diagram(diagram, f"{s.norm_label}: the input as N × C × (H·W)")]


def batch_charts(view: live.BatchView, s: LabSettings) -> list[alt.TopLevelMixin]:
    """Section 2 of the page: the histograms and the eps chart of one batch."""
    title = f"Values per {live.UNIT_WORD[s.norm]}, before and after {s.norm_label} (count per bin)"
    return [histograms(view.histogram, title), eps_chart(view.eps_curve, s.eps)]


def stream_chart(series: pd.DataFrame, statistic: str, title: str, axis: str | None = None) -> dict:
    """One statistic over the steps: per unit (colour) the batch value (thin, faint), the
    running estimate (thick) and the truth (dashed). A Vega-Lite spec for ``st.vega_lite_chart``.
    ``axis`` titles the y axis (default: "mean" or "variance")."""
    frame = series.assign(series=series["series"].map(SERIES_LABELS))
    units = tuple(frame["unit"].unique())  # (vectorised: these are Arrow-backed columns of thousands of rows)
    present = set(series["series"].unique())
    shown = tuple(SERIES_LABELS[s] for s in SERIES if s in present)  # no "running" without running stats
    axis = axis or ("variance" if statistic == "var" else "mean")
    return specs.with_data(_stream_template(axis, title, units, shown), stream=frame)


@functools.lru_cache(maxsize=64)
def _stream_template(axis: str, title: str, units: tuple[str, ...], labels: tuple[str, ...]) -> str:
    """The stream chart without its data (:mod:`normcore.lab.viz.specs`). Built once per
    (axis title, title, units): the page redraws it on every Play tick, and building and
    validating the Altair chart costs more than the rest of a tick."""
    labels = list(labels)
    styles = {  # (dash, width, opacity) per series
        SERIES_LABELS["batch"]: ([1, 0], 1, 0.45), SERIES_LABELS["running"]: ([1, 0], 3, 1), SERIES_LABELS["true"]: ([6, 4], 1.5, 0.9)}
    dash, width, opacity = ([styles[label][i] for label in labels] for i in range(3))
    return specs.template(
        alt.Chart(specs.named("stream"))
        .mark_line(interpolate="linear", clip=True)
        .encode(
            x=alt.X("step:Q", title="step (batches seen)", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("value:Q", title=axis, scale=alt.Scale(zero=False)),
            color=alt.Color("unit:N", sort=list(units), scale=alt.Scale(scheme="tableau10"), title=None),
            strokeDash=alt.StrokeDash("series:N", scale=alt.Scale(domain=labels, range=dash), title=None),
            # Same field and title on the three channels: Vega-Lite merges them into one legend.
            strokeWidth=alt.StrokeWidth("series:N", scale=alt.Scale(domain=labels, range=width), title=None),
            opacity=alt.Opacity("series:N", scale=alt.Scale(domain=labels, range=opacity), title=None),
            tooltip=["step:Q", "unit:N", "series:N", alt.Tooltip("value:Q", format=".5g")],
        )
        .properties(title=title, height=260)
    )


def stream_charts(stream: live.LiveStream) -> list[dict]:
    """The live stream's two charts, mean and variance per unit over the last
    ``CHART_WINDOW`` steps, as the page's fragment draws them on every Step and Play tick
    (empty before the first step)."""
    history = stream.history(last=live.CHART_WINDOW, max_units=live.CHART_UNITS)
    if history.empty:
        return []
    unit = live.UNIT_WORD[stream.settings.norm]
    return [stream_chart(live.series_frame(history, stat), stat, f"{name} per {unit}, last {live.CHART_WINDOW} steps", axis)
            for stat, name, axis in live.stream_statistics(stream.settings.norm)]
