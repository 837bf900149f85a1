"""Charts for the Deploy & port page: frames from ``normcore.lab.experiments.deploy`` in, Altair
charts out.

* the classic folding mistakes: each one's max |Δ| against the unfolded model (a bar) next to
  the right way's (a dot), on a log scale, so 10⁻⁶ and 10 fit on one axis.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

FLOOR = 1e-9  # where an exact 0 is drawn on the log axis (its tooltip says 0)


def mistakes_chart(mistakes: pd.DataFrame) -> alt.LayerChart:
    """One row per mistake (``mistakes.run_all``'s frame): the mistake's error and the right way's."""
    long = pd.concat([
        pd.DataFrame({"mistake": mistakes.mistake, "how": "the mistake", "error": mistakes.error}),
        pd.DataFrame({"mistake": mistakes.mistake, "how": "the right way", "error": mistakes.right_error,
                      "right_way": mistakes.right_way}),
    ], ignore_index=True)
    long["shown"] = long.error.clip(lower=FLOOR)
    long["label"] = long.error.map(lambda e: "0 (exactly)" if e == 0 else f"{e:.3g}")
    y = alt.Y("mistake:N", sort=list(mistakes.mistake), title=None, axis=alt.Axis(labelLimit=420))
    x = alt.X("shown:Q", scale=alt.Scale(type="log", domain=[FLOOR, max(10.0, float(long.shown.max()) * 2)]),
              title="max |Δ| against the unfolded model in eval (log scale)")
    colour = alt.Color("how:N", scale=alt.Scale(domain=["the mistake", "the right way"], range=["#d62728", "#2ca02c"]),
                       legend=alt.Legend(title=None, orient="top"))
    tooltip = ["mistake", "how", alt.Tooltip("label", title="max |Δ|"), alt.Tooltip("right_way", title="right way")]
    bars = alt.Chart(long[long.how == "the mistake"]).mark_bar(height=14).encode(
        x=x, x2=alt.datum(FLOOR), y=y, color=colour, tooltip=tooltip)
    dots = alt.Chart(long[long.how == "the right way"]).mark_point(filled=True, size=120).encode(
        x=x, y=y, color=colour, tooltip=tooltip)
    text = alt.Chart(long[long.how == "the mistake"]).mark_text(align="left", dx=4).encode(x=x, y=y, text="label")
    return alt.layer(bars, dots, text)


def mistakes_chart_height(mistakes: pd.DataFrame) -> int:
    """Pixels for the chart: a row per mistake, and the legend and axis."""
    return 44 * len(mistakes) + 90


__all__ = ["FLOOR", "mistakes_chart", "mistakes_chart_height"]
