"""Charts for the Precision tab: each method's error and variance along a sweep, log scales
(frames from ``normcore.lab.experiments.deploy.precision.sweep`` in, Altair charts out).

Points where the input itself is inf or rounds to a constant are marked on the x axis (grey),
negative variances with red crosses: neither is a method's rounding.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

FLOOR = 1e-12  # an exact 0 on a log scale
CEILING = 1e3  # inf and NaN errors drawn at the top


def _x(view: str) -> alt.X:
    title = "mean offset (std 1)" if view == "offset" else "std (fixed offset)"
    return alt.X("shown_x:Q", scale=alt.Scale(type="log", reverse=view == "std"), title=title)


def _shown_x(frame: pd.DataFrame) -> pd.Series:
    return frame["x"].where(frame["x"] > 0, 1e-1)  # offset 0 drawn at 0.1, left of the first decade


def error_chart(frame: pd.DataFrame, view: str, dtype: str) -> alt.LayerChart:
    """Max relative error of the normalized output per method; NaN/inf at the top, flagged inputs in grey."""
    data = frame.assign(shown_x=_shown_x(frame), shown=frame["error"].fillna(CEILING).clip(FLOOR, CEILING))
    lines = alt.Chart(data).mark_line(point=True).encode(
        x=_x(view), y=alt.Y("shown:Q", scale=alt.Scale(type="log"), title="max |y − y₆₄| / rms(y₆₄)"),
        color=alt.Color("label:N", title=None, sort=None, legend=alt.Legend(orient="top", columns=4, labelLimit=300)),
        tooltip=["label", "offset", "std", alt.Tooltip("error:Q", format=".3g"), "input"],
    )
    flagged = data[data["input"] != ""].drop_duplicates("x")
    marks = alt.Chart(flagged).mark_rule(color="grey", opacity=0.35, strokeWidth=8).encode(
        x=_x(view), tooltip=[alt.Tooltip("input", title="input itself"), "offset", "std"])
    return alt.layer(marks, lines).properties(height=340, title=f"Error against float64 on the same {dtype} input")


def variance_chart(frame: pd.DataFrame, view: str) -> alt.LayerChart:
    """|variance| each method computed (smallest group), log y; negative ones marked with red crosses."""
    data = frame[frame["variance"].notna()]
    data = data.assign(shown_x=_shown_x(data), shown=data["variance"].abs().clip(lower=FLOOR),
                       sign=data["negative"].map({True: "negative", False: "≥ 0"}),
                       shown_reference=data["reference_variance"].clip(lower=FLOOR))
    y = alt.Y("shown:Q", scale=alt.Scale(type="log"), title="|variance| (smallest group)")
    lines = alt.Chart(data).mark_line().encode(
        x=_x(view), y=y, color=alt.Color("label:N", title=None, sort=None, legend=alt.Legend(orient="top", columns=4, labelLimit=300)),
        tooltip=["label", "offset", "std", alt.Tooltip("variance:Q", format=".4g"),
                 alt.Tooltip("reference_variance:Q", title="float64", format=".4g")])
    negative = alt.Chart(data[data["negative"]]).mark_point(shape="cross", size=90, color="red", filled=True).encode(
        x=_x(view), y=y, tooltip=["label", alt.Tooltip("variance:Q", format=".4g"), "sign"])
    reference = alt.Chart(data.drop_duplicates("x")).mark_line(strokeDash=[4, 4], color="black").encode(
        x=_x(view), y=alt.Y("shown_reference:Q", scale=alt.Scale(type="log")))
    return alt.layer(lines, reference, negative).properties(
        height=280, title="The variance each method computed (dashed: float64; red ×: negative)")
