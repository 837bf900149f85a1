"""Charts for the training page, from the tidy frames of ``normcore.experiments.training``.

Every normalization keeps one colour across all charts (BatchNorm is always blue), so a
curve, a sweep point and the paper's reference line for the same norm read alike.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ..models import NORM_LABELS, NORMS

NORM_COLORS = {"none": "#7f7f7f", "batch": "#1f77b4", "layer": "#ff7f0e", "group": "#2ca02c", "instance": "#9467bd"}
NORM_COLOR_SCALE = alt.Scale(domain=[NORM_LABELS[n] for n in NORMS], range=[NORM_COLORS[n] for n in NORMS])
HEIGHT = 260


def _finite(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows whose ``column`` is a finite number (a diverged run's NaN/inf cannot be drawn)."""
    values = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame.loc[np.isfinite(values.to_numpy())]


def _variant_color(history: pd.DataFrame) -> alt.Color:
    """One colour per normalization; when a run has several devices, the variant's label
    (which names the device) becomes the colour instead, so every line stays distinguishable."""
    if history["device"].nunique() > 1 if len(history) else False:
        return alt.Color("label:N", title="Variant", sort=list(dict.fromkeys(history["label"])))
    return alt.Color("normalization:N", title="Normalization", scale=NORM_COLOR_SCALE)


def _with_labels(history: pd.DataFrame) -> pd.DataFrame:
    return history.assign(normalization=history["norm"].map(NORM_LABELS))


def loss_chart(history: pd.DataFrame) -> alt.Chart:
    """Training loss (mean over each report's steps) against epochs, one line per variant.
    Log scale: the interesting part is the last decade. Non-finite losses are left out."""
    data = _finite(_with_labels(history), "loss")
    data = data[data["loss"] > 0]
    return (
        alt.Chart(data, height=HEIGHT, title="Training loss")
        .mark_line(interpolate="monotone")
        .encode(
            x=alt.X("epoch:Q", title="Epoch"),
            y=alt.Y("loss:Q", title="Cross-entropy loss (log scale)", scale=alt.Scale(type="log")),
            color=_variant_color(history),
            detail="variant:N",
            tooltip=["label:N", alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("loss:Q", format=".4f")],
        )
    )


def accuracy_chart(history: pd.DataFrame) -> alt.Chart:
    """Test accuracy at every epoch end (solid, points) and training-batch accuracy (dashed)."""
    data = _with_labels(history)
    train = _finite(data, "accuracy").assign(split="training batches", value=lambda f: f["accuracy"])
    test = _finite(data, "test_accuracy").assign(split="test (end of epoch)", value=lambda f: f["test_accuracy"])
    tidy = pd.concat([train, test], ignore_index=True)
    return (
        alt.Chart(tidy, height=HEIGHT, title="Accuracy")
        .mark_line(point=alt.OverlayMarkDef(size=25))
        .encode(
            x=alt.X("epoch:Q", title="Epoch"),
            y=alt.Y("value:Q", title="Accuracy", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            color=_variant_color(history),
            strokeDash=alt.StrokeDash("split:N", title="Measured on",
                                      scale=alt.Scale(domain=["test (end of epoch)", "training batches"], range=[[1, 0], [3, 3]])),
            detail="variant:N",
            tooltip=["label:N", "split:N", alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("value:Q", format=".1%")],
        )
    )


def percentile_chart(history: pd.DataFrame, layer: int) -> alt.Chart:
    """Ioffe & Szegedy's Figure 1(b, c): the 15th/50th/85th percentiles of one unit's
    pre-activation (block ``layer``) over training, with BatchNorm against without.

    Only the first device's run of each norm is drawn (the curves are the same elsewhere)."""
    data = _with_labels(history[history["norm"].isin(["batch", "none"])])
    if len(data):
        first = data.groupby("norm")["variant"].transform("min")
        data = data[data["variant"] == first]
    tidy = data.melt(id_vars=["epoch", "normalization"], value_vars=["p15", "p50", "p85"], var_name="percentile", value_name="value")
    tidy["percentile"] = tidy["percentile"].map({"p15": "15th", "p50": "50th (median)", "p85": "85th"})
    tidy = _finite(tidy, "value")
    return (
        alt.Chart(tidy, height=HEIGHT, title=f"Pre-activation of unit 0 in hidden block {layer}: 15th / 50th / 85th percentiles")
        .mark_line(interpolate="monotone")
        .encode(
            x=alt.X("epoch:Q", title="Epoch"),
            y=alt.Y("value:Q", title="Input of the nonlinearity"),
            color=alt.Color("normalization:N", title="Normalization", scale=NORM_COLOR_SCALE),
            strokeDash=alt.StrokeDash("percentile:N", title="Percentile",
                                      scale=alt.Scale(domain=["15th", "50th (median)", "85th"], range=[[4, 3], [1, 0], [1, 3]])),
            tooltip=["normalization:N", "percentile:N", alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("value:Q", format=".3f")],
        )
    )


def batch_sweep_chart(summary: pd.DataFrame) -> alt.Chart:
    """Final test accuracy against batch size (log₂ axis), one line per normalization."""
    data = _finite(summary, "test_accuracy") if len(summary) else summary.assign(test_accuracy=[])
    return (
        alt.Chart(data, height=HEIGHT, title="This lab: final test accuracy by batch size")
        .mark_line(point=True)
        .encode(
            x=alt.X("batch_size:Q", title="Batch size", scale=alt.Scale(type="log", base=2),
                    axis=alt.Axis(values=[2, 4, 8, 16, 32, 64, 128, 256], format="d")),
            y=alt.Y("test_accuracy:Q", title="Test accuracy", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
            color=alt.Color("normalization:N", title="Normalization", scale=NORM_COLOR_SCALE),
            tooltip=["normalization:N", "batch_size:Q", alt.Tooltip("lr:Q", format=".4g"), "epochs:Q",
                     alt.Tooltip("test_accuracy:Q", format=".1%")],
        )
    )


def paper_chart(paper: pd.DataFrame) -> alt.Chart:
    """Wu & He 2018's ImageNet numbers (top-1 error, lower is better) by images per GPU."""
    return (
        alt.Chart(paper, height=HEIGHT, title="Wu & He 2018 (ResNet-50, ImageNet): top-1 error by images per GPU")
        .mark_line(point=alt.OverlayMarkDef(size=60))
        .encode(
            x=alt.X("batch_size:Q", title="Images per GPU", scale=alt.Scale(type="log", base=2), axis=alt.Axis(values=[2, 4, 8, 16, 32], format="d")),
            y=alt.Y("top1_error:Q", title="Top-1 error (%)", scale=alt.Scale(zero=False)),
            color=alt.Color("normalization:N", title="Normalization", scale=NORM_COLOR_SCALE),
            tooltip=["normalization:N", "batch_size:Q", alt.Tooltip("top1_error:Q", format=".1f")],
        )
    )


def lr_sweep_chart(summary: pd.DataFrame, largest: pd.DataFrame) -> alt.LayerChart:
    """Final test accuracy against the learning rate (log axis); a cross marks a run that
    diverged, and a vertical rule the largest learning rate that still trains per norm."""
    data = summary.assign(
        outcome=["diverged (NaN/inf loss)" if d else "finished" for d in summary["diverged"]],
        shown=summary["test_accuracy"].fillna(0.0),
    ) if len(summary) else summary.assign(outcome=[], shown=[])
    x = alt.X("lr:Q", title="Learning rate (log scale)", scale=alt.Scale(type="log"))
    color = alt.Color("normalization:N", title="Normalization", scale=NORM_COLOR_SCALE)
    curve = alt.Chart(data, height=HEIGHT, title="Final test accuracy by learning rate").mark_line().encode(x=x, y="shown:Q", color=color)
    points = alt.Chart(data).mark_point(size=70, filled=True).encode(
        x=x,
        y=alt.Y("shown:Q", title="Test accuracy", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        color=color,
        shape=alt.Shape("outcome:N", title="Outcome", scale=alt.Scale(domain=["finished", "diverged (NaN/inf loss)"], range=["circle", "cross"])),
        tooltip=["normalization:N", alt.Tooltip("lr:Q", format="g"), "outcome:N", alt.Tooltip("test_accuracy:Q", format=".1%")],
    )
    limits = _finite(largest, "largest_lr") if len(largest) else largest
    rules = alt.Chart(limits).mark_rule(strokeDash=[6, 3]).encode(
        x="largest_lr:Q", color=color, tooltip=["normalization:N", alt.Tooltip("largest_lr:Q", title="largest lr that trains", format="g")]
    )
    return alt.layer(curve, points, rules)


__all__ = [
    "NORM_COLORS", "accuracy_chart", "batch_sweep_chart", "loss_chart", "lr_sweep_chart", "paper_chart", "percentile_chart",
]
