"""Charts for the Transformers page: frames from ``normcore.lab.experiments.transformers`` in,
Altair charts (or, for the live loss curves, a Vega-Lite spec with the data swapped in) out.

* per-block gradient norms at initialization, one line per placement (Xiong et al. Fig. 3);
* post / pre against depth with √L drawn, one line per init;
* the last block's gradient against depth for both inits side by side;
* the residual stream's norm by block;
* the warm-up runs' loss curves, live.
"""

from __future__ import annotations

from functools import lru_cache

import altair as alt
import pandas as pd

from normcore.lab.viz import specs

HEIGHT = 260
PLACEMENT_ORDER = ["post-LN", "pre-LN", "peri-LN"]


def _placement_colour() -> alt.Color:
    return alt.Color("placement_label:N", title="placement", sort=PLACEMENT_ORDER, legend=alt.Legend(orient="top"),
                     scale=alt.Scale(domain=PLACEMENT_ORDER, scheme="category10"))


def block_gradient_chart(blocks: pd.DataFrame) -> alt.Chart:
    """The FFN output weight's gradient norm per block, one line per placement (log scale)."""
    return alt.Chart(blocks).mark_line(point=True).encode(
        x=alt.X("block:Q", title="block (1 = nearest the input)", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("ffn_grad_norm:Q", title="‖∂L/∂W‖, FFN output weight", scale=alt.Scale(type="log")),
        color=_placement_colour(),
        tooltip=["placement_label", "block", alt.Tooltip("ffn_grad_norm:Q", format=".3g", title="gradient norm")],
    ).properties(height=HEIGHT, title="Gradient norm by block at initialization")


def ratio_chart(ratios: pd.DataFrame) -> alt.LayerChart:
    """post / pre of the last block's gradient against depth, one line per init, with √L dashed."""
    x = alt.X("depth:Q", title="depth L (blocks)", scale=alt.Scale(type="log"))
    lines = alt.Chart(ratios).mark_line(point=True).encode(
        x=x, y=alt.Y("ratio:Q", title="post-LN / pre-LN, last block", scale=alt.Scale(type="log")),
        color=alt.Color("init_label:N", title="init", legend=alt.Legend(orient="top")),
        tooltip=["init_label", "depth", alt.Tooltip("ratio:Q", format=".3g", title="post / pre")])
    root = alt.Chart(ratios.drop_duplicates("depth")).mark_line(color="gray", strokeDash=[5, 4]).encode(
        x=x, y="sqrt_depth:Q", tooltip=["depth", alt.Tooltip("sqrt_depth:Q", format=".3g", title="√L")])
    return alt.layer(root, lines).properties(height=HEIGHT, title="post / pre against depth (dashed: √L)")


def init_comparison_chart(last_block: pd.DataFrame) -> alt.Chart:
    """The last block's gradient norm against depth, post and pre, one panel per init."""
    return alt.Chart(last_block).mark_line(point=True).encode(
        x=alt.X("depth:Q", title="depth L", scale=alt.Scale(type="log")),
        y=alt.Y("ffn_grad_norm:Q", title="‖∂L/∂W‖, last block's FFN", scale=alt.Scale(type="log")),
        color=_placement_colour(),
        tooltip=["init_label", "placement_label", "depth", alt.Tooltip("ffn_grad_norm:Q", format=".3g")],
    ).properties(height=HEIGHT, width=260).facet(column=alt.Column("init_label:N", title="init"))


def residual_chart(residual: pd.DataFrame) -> alt.Chart:
    """The residual stream's norm after each block, one line per placement (dashed: GPT-2 init)."""
    return alt.Chart(residual).mark_line(point=True).encode(
        x=alt.X("block:Q", title="block", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("residual_norm:Q", title="mean ‖x_t‖ after the block", scale=alt.Scale(type="log")),
        color=_placement_colour(),
        strokeDash=alt.StrokeDash("init_label:N", title="init", legend=alt.Legend(orient="top")),
        tooltip=["init_label", "placement_label", "block", alt.Tooltip("residual_norm:Q", format=".3g")],
    ).properties(height=HEIGHT, title="Residual stream's norm by block")


@lru_cache(maxsize=1)
def _loss_template() -> str:
    chart = alt.Chart(specs.named("curves")).mark_line().encode(
        x=alt.X("step:Q", title="training step"),
        y=alt.Y("loss:Q", title="training loss (mean since the last point)", scale=alt.Scale(zero=False)),
        color=alt.Color("placement:N", title="placement", legend=alt.Legend(orient="top")),
        strokeDash=alt.StrokeDash("warmup:N", title="warm-up", legend=alt.Legend(orient="top")),
        tooltip=["label:N", "step:Q", alt.Tooltip("loss:Q", format=".3f"), alt.Tooltip("lr:Q", format=".2g")],
    ).properties(height=HEIGHT, title="Loss while training: post-LN and pre-LN, with and without warm-up")
    return specs.template(chart)


def loss_curves_spec(curves: pd.DataFrame) -> dict:
    """The warm-up runs' loss curves as a Vega-Lite spec, cheap to redraw while they train."""
    frame = curves.assign(warmup=curves["warmup"].map({True: "with", False: "without"}))
    return specs.with_data(_loss_template(), curves=frame)


__all__ = ["block_gradient_chart", "init_comparison_chart", "loss_curves_spec", "ratio_chart", "residual_chart"]
