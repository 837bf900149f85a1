"""Charts for the Transformers page's part 2 (frames from ``stability``, ``norm_comparison`` and
``s_curves`` in, Vega-Lite specs out, cheap to redraw while runs train):

* the sweep: final validation loss against learning rate per variant; the largest attention
  logit over training per run; each head's attention entropy over training;
* which norm: the loss curves per norm; DyT's α per layer over training; the S-curve cloud with
  its tanh and line fits.
"""

from __future__ import annotations

from functools import lru_cache

import altair as alt
import pandas as pd

from normcore.lab.viz import specs

HEIGHT = 260
_TOP = alt.Legend(orient="top")


@lru_cache(maxsize=None)
def _template(kind: str) -> str:
    return specs.template(_CHARTS[kind]())


def _sweep_loss() -> alt.Chart:
    return alt.Chart(specs.named("table")).mark_line(point=True).encode(
        x=alt.X("lr:Q", title="learning rate", scale=alt.Scale(type="log")),
        y=alt.Y("final_loss:Q", title="final validation loss", scale=alt.Scale(zero=False)),
        color=alt.Color("variant:N", legend=_TOP),
        tooltip=["variant:N", alt.Tooltip("lr:Q", format="g"), alt.Tooltip("final_loss:Q", format=".3f"),
                 alt.Tooltip("max_logit:Q", format=".3g", title="largest logit")],
    ).properties(height=HEIGHT, title="Final validation loss against learning rate")


def _logits() -> alt.Chart:
    return alt.Chart(specs.named("logits")).mark_line().encode(
        x=alt.X("step:Q", title="training step"),
        y=alt.Y("max_logit:Q", title="largest attention logit", scale=alt.Scale(type="log")),
        color=alt.Color("lr:O", title="learning rate", scale=alt.Scale(scheme="viridis"), legend=_TOP),
        strokeDash=alt.StrokeDash("variant:N", legend=_TOP),
        tooltip=["variant:N", alt.Tooltip("lr:Q", format="g"), "step:Q", alt.Tooltip("max_logit:Q", format=".3g")],
    ).properties(height=HEIGHT, title="Largest attention logit while training")


def _entropy() -> alt.Chart:
    return alt.Chart(specs.named("entropy")).mark_line().encode(
        x=alt.X("step:Q", title="training step"),
        y=alt.Y("entropy:Q", title="attention entropy (nats)"),
        color=alt.Color("lr:O", title="learning rate", scale=alt.Scale(scheme="viridis"), legend=_TOP),
        strokeDash=alt.StrokeDash("variant:N", legend=_TOP), detail="head_id:N",
        tooltip=["variant:N", alt.Tooltip("lr:Q", format="g"), "block:Q", "head:Q", "step:Q",
                 alt.Tooltip("entropy:Q", format=".3f")],
    ).properties(height=HEIGHT, title="Each head's attention entropy (0: one-hot)")


def _norm_losses() -> alt.Chart:
    return alt.Chart(specs.named("curves")).mark_line().encode(
        x=alt.X("step:Q", title="training step"),
        y=alt.Y("loss:Q", title="training loss (mean since the last point)", scale=alt.Scale(zero=False)),
        color=alt.Color("norm:N", legend=_TOP),
        tooltip=["norm:N", "step:Q", alt.Tooltip("loss:Q", format=".3f")],
    ).properties(height=HEIGHT, title="Loss while training, one line per norm")


def _dyt_alpha() -> alt.Chart:
    return alt.Chart(specs.named("dyt")).mark_line(point=True).encode(
        x=alt.X("step:Q", title="training step"), y=alt.Y("alpha:Q", title="DyT's α"),
        color=alt.Color("layer:N", legend=_TOP),
        tooltip=["layer:N", "step:Q", alt.Tooltip("alpha:Q", format=".3f"),
                 alt.Tooltip("saturated:Q", format=".1%", title="inputs with |αx| > 2")],
    ).properties(height=HEIGHT, title="DyT's α per layer while training")


def _s_curve() -> alt.LayerChart:
    dots = alt.Chart(specs.named("points")).mark_circle(size=8, opacity=0.5).encode(
        x=alt.X("x:Q", title="LayerNorm input"), y=alt.Y("y:Q", title="output before the affine"),
        color=alt.Color("token:N", legend=None, scale=alt.Scale(scheme="tableau20")), tooltip=["token:N"])
    fits = alt.Chart(specs.named("curve")).mark_line(color="black").encode(
        x="x:Q", y="y:Q", strokeDash=alt.StrokeDash("fit:N", title="fit", legend=_TOP), tooltip=["fit:N"])
    return alt.layer(dots, fits).properties(height=HEIGHT + 60, title="A LayerNorm's input against its output, by token")


_CHARTS = {"sweep_loss": _sweep_loss, "logits": _logits, "entropy": _entropy, "norm_losses": _norm_losses,
           "dyt_alpha": _dyt_alpha, "s_curve": _s_curve}


def sweep_specs(sweep) -> list[dict]:
    """The sweep's three charts (a :class:`~normcore.lab.experiments.transformers.stability.StabilitySweep`)."""
    entropy = sweep.entropy()
    entropy = entropy.assign(head_id=entropy["variant"] + "/" + entropy["lr"].astype(str) + "/" + entropy["block"].astype(str) + "/"
                             + entropy["head"].astype(str))
    return [specs.with_data(_template("sweep_loss"), table=sweep.table()),
            specs.with_data(_template("logits"), logits=sweep.logits()),
            specs.with_data(_template("entropy"), entropy=entropy)]


def norm_specs(comparison) -> list[dict]:
    """The comparison's loss curves and DyT's α."""
    return [specs.with_data(_template("norm_losses"), curves=comparison.curves()),
            specs.with_data(_template("dyt_alpha"), dyt=comparison.dyt())]


def s_curve_spec(curves) -> dict:
    return specs.with_data(_template("s_curve"), points=curves.points, curve=curves.curve)


__all__ = ["norm_specs", "s_curve_spec", "sweep_specs"]
