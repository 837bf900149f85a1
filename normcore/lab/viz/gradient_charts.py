"""Charts for the Gradients page: frames from ``normcore.lab.experiments.gradients`` in, Altair
charts out.

* the Jacobian ∂y_i/∂x_j as a heatmap (diverging colours around 0, sample blocks outlined);
* the cross-sample coupling against the batch size (log-log, a 1/N guide);
* Σ(dx·x̂) per statistic group as eps sweeps (log-log, measured points on the predicted line).
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from normcore.lab.experiments.gradients import Blocks

HEATMAP_PX = 420  # the heatmap's side in pixels, whatever the Jacobian's size


def _cell_size(side: int) -> int:
    return max(6, HEATMAP_PX // side)


def jacobian_heatmap(blocks: Blocks, title: str) -> alt.LayerChart:
    """∂y_i/∂x_j: rows are outputs, columns inputs, both in (n, c, h, w) order; a red/blue
    scale symmetric about 0, so a block that is white is exactly no coupling."""
    frame = blocks.frame
    side = int(frame["i"].max()) + 1
    limit = max(float(frame["value"].abs().max()), 1e-12)
    px = _cell_size(side)
    cells = alt.Chart(frame).mark_rect().encode(
        x=alt.X("j:O", title="input x_j (by sample, then channel, h, w)", axis=alt.Axis(labels=side <= 32)),
        y=alt.Y("i:O", title="output y_i", axis=alt.Axis(labels=side <= 32)),
        color=alt.Color("value:Q", title="∂y_i/∂x_j",
                        scale=alt.Scale(scheme="redblue", domain=[-limit, limit], reverse=True)),
        tooltip=["i", "j", alt.Tooltip("sample_i", title="sample of y"), alt.Tooltip("sample_j", title="sample of x"),
                 alt.Tooltip("value", format=".4g")],
    )
    return cells.properties(width=px * side, height=px * side, title=title)


def coupling_vs_n_chart(sweep: pd.DataFrame) -> alt.LayerChart:
    """Mean |cross-sample entry| (measured dots, theory line) and the total a sample receives
    from its batch-mates, against N, log-log; dashed: a 1/N guide through the first point past N=2."""
    long = sweep.melt("N", ["mean |cross-sample entry|", "total from batch-mates"], "quantity", "value")
    first = sweep[sweep.N > 2].iloc[0]
    guide = pd.DataFrame({"N": sweep.N[sweep.N > 2]}).assign(
        value=lambda f: first["mean |cross-sample entry|"] * first["N"] / f.N)
    x = alt.X("N:Q", scale=alt.Scale(type="log", base=2), title="batch size N (one value per channel)")
    y = alt.Y("value:Q", scale=alt.Scale(type="log"), title="|∂y_i/∂x_j|")
    colour = alt.Color("quantity:N", legend=alt.Legend(title=None, orient="top"))
    measured = alt.Chart(long).mark_line(point=True).encode(x=x, y=y, color=colour,
                                                            tooltip=["N", "quantity", alt.Tooltip("value", format=".4g")])
    theory = alt.Chart(sweep).mark_point(shape="cross", size=80, color="black").encode(
        x=x, y=alt.Y("theory −γ·istd·(1+x̂ᵢx̂ⱼ)/N:Q", scale=alt.Scale(type="log")), tooltip=["N", alt.Tooltip("theory −γ·istd·(1+x̂ᵢx̂ⱼ)/N:Q", format=".4g")])
    one_over_n = alt.Chart(guide).mark_line(strokeDash=[4, 4], color="grey").encode(x=x, y=y)
    return alt.layer(measured, theory, one_over_n).properties(height=260, title="BatchNorm: coupling vs batch size")


def identity_vs_eps_chart(sweep: pd.DataFrame, eps_now: float) -> alt.LayerChart:
    """|Σ(dx·x̂)| per group against eps, log-log: lines the prediction istd·Σ(dx̂·x̂)·ε/(σ²+ε),
    dots measured; a rule at the eps in use. Exact zeros (no log) are left out."""
    frame = sweep.assign(measured=sweep.measured.abs(), predicted=sweep.predicted.abs(),
                         group=sweep.group.astype(str))
    frame = frame[(frame.measured > 0) & (frame.predicted > 0)]
    x = alt.X("eps:Q", scale=alt.Scale(type="log"), title="eps", axis=alt.Axis(format=".0e"))
    colour = alt.Color("group:N", title="group")
    line = alt.Chart(frame).mark_line().encode(x=x, y=alt.Y("predicted:Q", scale=alt.Scale(type="log"),
                                                            title="|Σ(dx·x̂)| per group"), color=colour)
    dots = alt.Chart(frame).mark_point(filled=True).encode(
        x=x, y=alt.Y("measured:Q"), color=colour,
        tooltip=["group", alt.Tooltip("eps", format=".0e"), alt.Tooltip("variance", format=".4g", title="σ²"),
                 alt.Tooltip("measured", format=".4g"), alt.Tooltip("predicted", format=".4g")])
    rule = alt.Chart(pd.DataFrame({"eps": [eps_now]})).mark_rule(color="red").encode(x=x)
    variances = frame.drop_duplicates("group")[["group", "variance"]]
    at_variance = alt.Chart(variances).mark_rule(strokeDash=[4, 4]).encode(
        x=alt.X("variance:Q"), color=colour, tooltip=["group", alt.Tooltip("variance", format=".4g", title="σ²")])
    return alt.layer(line, dots, rule, at_variance).properties(height=260, title="Σ(dx·x̂) grows as eps nears σ²")
