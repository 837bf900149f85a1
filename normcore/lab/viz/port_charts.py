"""Charts for the Port tab: per-layer differences over depth, log scale (frames from
``normcore.lab.experiments.deploy.port`` / ``port_eps`` in, Altair charts out)."""

from __future__ import annotations

import altair as alt
import pandas as pd

FLOOR = 1e-9  # an exact 0 (a mismatch that is none) drawn at the bottom of the log scale


def _log_y(title: str) -> alt.Y:
    return alt.Y("shown:Q", scale=alt.Scale(type="log"), title=title)


def depth_chart(frame: pd.DataFrame, colour: str, title: str, y_title: str) -> alt.Chart:
    """One line per ``colour`` value: the difference at each layer, log y."""
    frame = frame.assign(shown=frame["difference"].clip(lower=FLOOR))
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("layer:Q", title="layer (depth)", axis=alt.Axis(tickMinStep=1)),
        y=_log_y(y_title),
        color=alt.Color(f"{colour}:N", title=None, legend=alt.Legend(orient="top", columns=2, labelLimit=420), sort=None),
        tooltip=[colour, "layer", alt.Tooltip("difference:Q", format=".3g")],
    ).properties(height=300, title=title)


def port_chart(differences: pd.DataFrame, title: str = "BatchNorm stack: source vs target, in eval") -> alt.Chart:
    """Each mismatch's max |Δ| of the normalized outputs per layer."""
    return depth_chart(differences, "label", title, "max |Δ| of the layer's output")


def eps_chart(differences: pd.DataFrame, norm_label: str) -> alt.Chart:
    """Each target eps's max |Δh| / rms(h) per residual block."""
    return depth_chart(differences, "eps", f"{norm_label} stack: the source eps vs each default",
                       "max |Δh| / rms(h)")
