"""Charts for the training page, from the tidy frames of ``normcore.experiments.training``.

Every normalization keeps one colour across all charts (BatchNorm is always blue), so a
curve, a sweep point and the paper's reference line for the same norm read alike. When a
run spans several devices, the device is the line's dash pattern.

Layout note (checked in a browser): Streamlit fits the whole chart, legends included, into
its height, so legends stay beside the plot (a legend underneath squeezes the plot flat).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ..devices import parse_target
from ..models import NORM_LABELS, NORMS

NORM_COLORS = {"none": "#7f7f7f", "batch": "#1f77b4", "layer": "#ff7f0e", "group": "#2ca02c", "instance": "#9467bd"}
HEIGHT = 300
DASHES = [[1, 0], [6, 3], [2, 2], [8, 2, 2, 2]]  # one per device, in the run's order


def _finite(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows whose ``column`` is a finite number (a diverged run's NaN/inf cannot be drawn)."""
    values = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame.loc[np.isfinite(values.to_numpy())]


def norm_color(norms) -> alt.Color:
    """Colour by normalization, with a legend listing only the norms present."""
    present = [n for n in NORMS if n in set(norms)] or list(NORMS)
    scale = alt.Scale(domain=[NORM_LABELS[n] for n in present], range=[NORM_COLORS[n] for n in present])
    return alt.Color("normalization:N", title="Normalization", scale=scale)


def _device_dash(history: pd.DataFrame) -> dict:
    """``strokeDash`` by device when the run has more than one, else nothing."""
    keys = list(dict.fromkeys(history["device"])) if len(history) else []
    if len(keys) < 2:
        return {}
    labels = [parse_target(k).label for k in keys]
    return {"strokeDash": alt.StrokeDash("device_label:N", title="Device", sort=labels,
                                         scale=alt.Scale(domain=labels, range=DASHES[: len(labels)]))}


def _slim(history: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Only the columns a chart encodes (a live chart is serialised at every redraw), plus
    the display names of the normalization and the device."""
    slim = history[["variant", "label", "norm", "device", "epoch", *columns]]
    names = {k: parse_target(k).label for k in slim["device"].unique()}
    return slim.assign(normalization=slim["norm"].map(NORM_LABELS), device_label=slim["device"].map(names))


def _epoch_axis(epochs: float | None) -> alt.X:
    """Epochs on x; with ``epochs`` the axis spans the whole run from the start, so live
    curves grow across a fixed axis instead of the axis stretching under them."""
    scale = alt.Scale(domain=[0, epochs]) if epochs else alt.Undefined
    return alt.X("epoch:Q", title="Epoch", scale=scale)


def loss_chart(history: pd.DataFrame, epochs: float | None = None) -> alt.Chart:
    """Training loss (mean over each report's steps) against epochs, one line per variant.
    Log scale: the interesting part is the last decade. Non-finite losses are left out."""
    data = _finite(_slim(history, "loss"), "loss")
    data = data[data["loss"] > 0]
    return (
        alt.Chart(data, height=HEIGHT, title="Training loss")
        .mark_line(interpolate="monotone")
        .encode(
            x=_epoch_axis(epochs),
            y=alt.Y("loss:Q", title="Cross-entropy (log scale)", scale=alt.Scale(type="log")),
            color=norm_color(history["norm"]),
            detail="variant:N",
            tooltip=["label:N", alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("loss:Q", format=".4f")],
            **_device_dash(history),
        )
    )


def accuracy_chart(history: pd.DataFrame, epochs: float | None = None) -> alt.LayerChart:
    """Accuracy on the training batches (lines, updated at every report) and on the test set
    at each epoch end (dots)."""
    data = _slim(history, "accuracy", "test_accuracy")
    x = _epoch_axis(epochs)
    y = alt.Y("accuracy:Q", title="Accuracy", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"))
    color = norm_color(history["norm"])
    lines = alt.Chart(_finite(data, "accuracy"), height=HEIGHT).mark_line(opacity=0.75).encode(
        x=x, y=y, color=color, detail="variant:N",
        tooltip=["label:N", alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("accuracy:Q", format=".1%", title="training batches")],
        **_device_dash(history),
    )
    dots = alt.Chart(_finite(data, "test_accuracy")).mark_point(filled=True, size=60, stroke="white", strokeWidth=0.5).encode(
        x=x, y=alt.Y("test_accuracy:Q"), color=color,
        tooltip=["label:N", alt.Tooltip("epoch:Q", format=".0f"), alt.Tooltip("test_accuracy:Q", format=".1%", title="test")],
    )
    return alt.layer(lines, dots).properties(title=alt.Title("Accuracy", subtitle="lines: training batches · dots: test set, each epoch end"))


def percentile_chart(history: pd.DataFrame, layer: int) -> alt.Chart:
    """Ioffe & Szegedy's Figure 1(b, c): the 15th/50th/85th percentiles of one unit's
    pre-activation (block ``layer``) over training, with BatchNorm against without.

    Only the first device's run of each norm is drawn (the curves are the same elsewhere)."""
    data = _slim(history[history["norm"].isin(["batch", "none"])], "p15", "p50", "p85")
    if len(data):
        first = data.groupby("norm")["variant"].transform("min")
        data = data[data["variant"] == first]
    tidy = data.melt(id_vars=["epoch", "normalization", "norm"], value_vars=["p15", "p50", "p85"], var_name="percentile", value_name="value")
    tidy["percentile"] = tidy["percentile"].map({"p15": "15th", "p50": "50th (median)", "p85": "85th"})
    tidy = _finite(tidy, "value")
    return (
        alt.Chart(tidy, height=HEIGHT, title=alt.Title(
            f"Input of the nonlinearity, unit 0 of hidden block {layer}",
            subtitle="15th / 50th / 85th percentiles over each report's training batches"))
        .mark_line(interpolate="monotone")
        .encode(
            x=alt.X("epoch:Q", title="Epoch"),
            y=alt.Y("value:Q", title="Pre-activation"),
            color=norm_color(["batch", "none"]),
            strokeDash=alt.StrokeDash("percentile:N", title="Percentile",
                                      scale=alt.Scale(domain=["15th", "50th (median)", "85th"], range=[[4, 3], [1, 0], [1, 3]])),
            detail="norm:N",
            tooltip=["normalization:N", "percentile:N", alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("value:Q", format=".3f")],
        )
    )


def batch_sweep_chart(summary: pd.DataFrame) -> alt.Chart:
    """Final test accuracy against batch size (log₂ axis), one line per normalization."""
    data = _finite(summary, "test_accuracy")
    return (
        alt.Chart(data, height=HEIGHT, title=alt.Title("This lab: final test accuracy by batch size", subtitle="higher is better"))
        .mark_line(point=True)
        .encode(
            x=alt.X("batch_size:Q", title="Batch size", scale=alt.Scale(type="log", base=2),
                    axis=alt.Axis(values=[2, 4, 8, 16, 32, 64, 128, 256], format="d")),
            y=alt.Y("test_accuracy:Q", title="Test accuracy", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
            color=norm_color(summary["norm"]),
            tooltip=["normalization:N", "batch_size:Q", alt.Tooltip("lr:Q", format=".4g"), "epochs:Q",
                     alt.Tooltip("test_accuracy:Q", format=".1%")],
        )
    )


def paper_chart(paper: pd.DataFrame) -> alt.Chart:
    """Wu & He 2018's ImageNet numbers (top-1 error, lower is better) by images per GPU."""
    return (
        alt.Chart(paper, height=HEIGHT, title=alt.Title("Wu & He 2018: ResNet-50 on ImageNet", subtitle="top-1 error (lower is better)"))
        .mark_line(point=alt.OverlayMarkDef(size=60))
        .encode(
            x=alt.X("batch_size:Q", title="Images per GPU", scale=alt.Scale(type="log", base=2), axis=alt.Axis(values=[2, 4, 8, 16, 32], format="d")),
            y=alt.Y("top1_error:Q", title="Top-1 error (%)", scale=alt.Scale(zero=False)),
            color=norm_color(paper["norm"]),
            tooltip=["normalization:N", "batch_size:Q", alt.Tooltip("top1_error:Q", format=".1f")],
        )
    )


def lr_sweep_chart(summary: pd.DataFrame, largest: pd.DataFrame) -> alt.LayerChart:
    """Final test accuracy against the learning rate (log axis); a cross marks a run that
    diverged, and a dashed rule the largest learning rate that still trains per norm."""
    data = summary.assign(
        outcome=["diverged (NaN/inf loss)" if d else "finished" for d in summary["diverged"]],
        shown=summary["test_accuracy"].fillna(0.0),
    )
    x = alt.X("lr:Q", title="Learning rate (log scale)", scale=alt.Scale(type="log"))
    color = norm_color(summary["norm"])
    curve = alt.Chart(data, height=HEIGHT).mark_line().encode(x=x, y="shown:Q", color=color)
    points = alt.Chart(data).mark_point(size=70, filled=True).encode(
        x=x,
        y=alt.Y("shown:Q", title="Test accuracy", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        color=color,
        shape=alt.Shape("outcome:N", title="Outcome", scale=alt.Scale(domain=["finished", "diverged (NaN/inf loss)"], range=["circle", "cross"])),
        tooltip=["normalization:N", alt.Tooltip("lr:Q", format="g"), "outcome:N", alt.Tooltip("test_accuracy:Q", format=".1%")],
    )
    rules = alt.Chart(_finite(largest, "largest_lr")).mark_rule(strokeDash=[6, 3]).encode(
        x="largest_lr:Q", color=color, tooltip=["normalization:N", alt.Tooltip("largest_lr:Q", title="largest lr that trains", format="g")]
    )
    return alt.layer(curve, points, rules).properties(title=alt.Title(
        "Final test accuracy by learning rate", subtitle="dashed: the largest learning rate that still trains"))


def live_charts(mode: str, history: pd.DataFrame, summary: pd.DataFrame, largest: pd.DataFrame, paper: pd.DataFrame,
                epochs: float | None = None):
    """The two charts a run shows while it trains (and after): curves when comparing; the
    sweep so far beside the paper's numbers or the loss curves when sweeping."""
    if mode == "compare" or summary.empty:
        return loss_chart(history, epochs), accuracy_chart(history, epochs)
    if mode == "batch_sweep":
        return batch_sweep_chart(summary), paper_chart(paper)
    return lr_sweep_chart(summary, largest), loss_chart(history, epochs)


__all__ = [
    "NORM_COLORS", "accuracy_chart", "batch_sweep_chart", "live_charts", "loss_chart", "lr_sweep_chart",
    "norm_color", "paper_chart", "percentile_chart",
]
