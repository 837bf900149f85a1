"""Charts for the training page, from the tidy frames of ``normcore.lab.experiments.training``.

Every normalization keeps one colour across all charts (BatchNorm is always blue), so a
curve, a sweep point and the paper's reference line for the same norm read alike. When a
run spans several devices, the device is the line's dash pattern.

Each chart is a Vega-Lite spec (a dict) with its data frames under ``"datasets"``, for
``st.vega_lite_chart``. The live curves are redrawn while a run trains, so every chart here
is written with Altair once per *shape* (which normalizations and devices appear) and then
only gets new frames (:mod:`normcore.lab.viz.specs`): ~5 ms a redraw instead of ~40 ms.

Layout note (checked in a browser): Streamlit fits the whole chart, legends included, into
its height, so legends stay beside the plot (a legend underneath squeezes the plot flat).
"""

from __future__ import annotations

from functools import lru_cache

import altair as alt
import numpy as np
import pandas as pd

from normcore.lab.viz import specs
from normcore.lab.devices import parse_target
from normcore.lab.norms import NORM_LABELS, NORMS

NORM_COLORS = {"none": "#7f7f7f", "batch": "#1f77b4", "layer": "#ff7f0e", "group": "#2ca02c", "instance": "#9467bd",
               "rms": "#d62728"}
HEIGHT = 300
DASHES = [[1, 0], [6, 3], [2, 2], [8, 2, 2, 2]]  # one per device, in the run's order
PERCENTILE_NAMES = {"p15": "15th", "p50": "50th (median)", "p85": "85th"}


def _finite(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows whose ``column`` is a finite number (a diverged run's NaN/inf cannot be drawn)."""
    values = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame.loc[np.isfinite(values.to_numpy())]


def _present(norms) -> tuple[str, ...]:
    """The normalizations in ``norms``, in the canonical order (all of them if none)."""
    seen = set(norms)
    return tuple(n for n in NORMS if n in seen) or NORMS


def _device_labels(history: pd.DataFrame) -> tuple[str, ...]:
    """The run's devices in order of appearance, by display name."""
    return tuple(parse_target(k).label for k in dict.fromkeys(history["device"])) if len(history) else ()


def norm_color(norms) -> alt.Color:
    """Colour by normalization, with a legend listing only the norms present."""
    present = _present(norms)
    scale = alt.Scale(domain=[NORM_LABELS[n] for n in present], range=[NORM_COLORS[n] for n in present])
    return alt.Color("normalization:N", title="Normalization", scale=scale)


def _device_dash(labels: tuple[str, ...]) -> dict:
    """``strokeDash`` by device when the run has more than one, else nothing."""
    if len(labels) < 2:
        return {}
    return {"strokeDash": alt.StrokeDash("device_label:N", title="Device", sort=list(labels),
                                         scale=alt.Scale(domain=list(labels), range=DASHES[: len(labels)]))}


def _slim(history: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Only the columns a chart encodes (a live chart is sent at every redraw), plus the
    display names of the normalization and the device."""
    # Built column by column: pandas' multi-column selection and Series.map cost several
    # times more on a live chart's ~100 rows, at every redraw.
    slim = {c: history[c].to_numpy() for c in ("variant", "label", "norm", "device", "epoch", *columns)}
    names = {k: parse_target(k).label for k in set(slim["device"])}
    slim["normalization"] = [NORM_LABELS[n] for n in slim["norm"]]
    slim["device_label"] = [names[k] for k in slim["device"]]
    return pd.DataFrame(slim, index=history.index)


EPOCH_AXIS = alt.X("epoch:Q", title="Epoch")


def _span_epochs(spec: dict, epochs: float | None) -> dict:
    """With ``epochs``, the x axis spans the whole run from the start, so live curves grow
    across a fixed axis instead of the axis stretching under them. (Set on the spec, not
    in the cached template, so one template serves runs of any length.)"""
    if epochs:
        for part in spec.get("layer", [spec]):
            part["encoding"]["x"]["scale"] = {"domain": [0, epochs]}
    return spec


# -- the curves while training -------------------------------------------------------------


@lru_cache(maxsize=128)
def _loss_template(norms: tuple[str, ...], devices: tuple[str, ...]) -> str:
    return specs.template(
        alt.Chart(specs.named("loss"), height=HEIGHT, title="Training loss")
        .mark_line(interpolate="monotone")
        .encode(
            x=EPOCH_AXIS,
            y=alt.Y("loss:Q", title="Cross-entropy (log scale)", scale=alt.Scale(type="log")),
            color=norm_color(norms),
            detail="variant:N",
            tooltip=["label:N", alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("loss:Q", format=".4f")],
            **_device_dash(devices),
        )
    )


def _shape(history: pd.DataFrame, norms, devices) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The legend's normalizations and devices: as given (a live run passes its plan's, so
    colours and legends are fixed from the first redraw), else those in ``history``."""
    return _present(history["norm"] if norms is None else norms), _device_labels(history) if devices is None else tuple(devices)


def loss_chart(history: pd.DataFrame, epochs: float | None = None, norms=None, devices=None) -> dict:
    """Training loss (mean over each report's steps) against epochs, one line per variant.
    Log scale: the interesting part is the last decade. Non-finite losses are left out.
    ``norms``/``devices`` (display names) fix the legends; by default, those in ``history``."""
    data = _finite(_slim(history, "loss"), "loss")
    return _span_epochs(specs.with_data(_loss_template(*_shape(history, norms, devices)), loss=data[data["loss"] > 0]), epochs)


@lru_cache(maxsize=128)
def _accuracy_template(norms: tuple[str, ...], devices: tuple[str, ...]) -> str:
    x = EPOCH_AXIS
    y = alt.Y("accuracy:Q", title="Accuracy", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"))
    color = norm_color(norms)
    lines = alt.Chart(specs.named("accuracy_lines"), height=HEIGHT).mark_line(opacity=0.75).encode(
        x=x, y=y, color=color, detail="variant:N",
        tooltip=["label:N", alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("accuracy:Q", format=".1%", title="training batches")],
        **_device_dash(devices),
    )
    dots = alt.Chart(specs.named("accuracy_dots")).mark_point(filled=True, size=60, stroke="white", strokeWidth=0.5).encode(
        x=x, y=alt.Y("test_accuracy:Q"), color=color,
        tooltip=["label:N", alt.Tooltip("epoch:Q", format=".0f"), alt.Tooltip("test_accuracy:Q", format=".1%", title="test")],
    )
    return specs.template(alt.layer(lines, dots).properties(
        title=alt.Title("Accuracy", subtitle="lines: training batches · dots: test set, each epoch end")))


def accuracy_chart(history: pd.DataFrame, epochs: float | None = None, norms=None, devices=None) -> dict:
    """Accuracy on the training batches (lines, updated at every report) and on the test set
    at each epoch end (dots). ``norms``/``devices`` as in :func:`loss_chart`."""
    data = _slim(history, "accuracy", "test_accuracy")
    template = _accuracy_template(*_shape(history, norms, devices))
    return _span_epochs(specs.with_data(template, accuracy_lines=_finite(data, "accuracy"), accuracy_dots=_finite(data, "test_accuracy")), epochs)


# -- after a run ------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _percentile_template(layer: int) -> str:
    return specs.template(
        alt.Chart(specs.named("percentiles"), height=HEIGHT, title=alt.Title(
            f"Input of the nonlinearity, unit 0 of hidden block {layer}",
            subtitle="15th / 50th / 85th percentiles over each report's training batches"))
        .mark_line(interpolate="monotone")
        .encode(
            x=alt.X("epoch:Q", title="Epoch"),
            y=alt.Y("value:Q", title="Pre-activation"),
            color=norm_color(["batch", "none"]),
            strokeDash=alt.StrokeDash("percentile:N", title="Percentile",
                                      scale=alt.Scale(domain=list(PERCENTILE_NAMES.values()), range=[[4, 3], [1, 0], [1, 3]])),
            detail="norm:N",
            tooltip=["normalization:N", "percentile:N", alt.Tooltip("epoch:Q", format=".2f"), alt.Tooltip("value:Q", format=".3f")],
        )
    )


def percentile_chart(history: pd.DataFrame, layer: int) -> dict:
    """Ioffe & Szegedy's Figure 1(b, c): the 15th/50th/85th percentiles of one unit's
    pre-activation (block ``layer``) over training, with BatchNorm against without.

    Only the first device's run of each norm is drawn (the curves are the same elsewhere)."""
    data = _slim(history[history["norm"].isin(["batch", "none"])], *PERCENTILE_NAMES)
    if len(data):
        first = data.groupby("norm")["variant"].transform("min")
        data = data[data["variant"] == first]
    tidy = data.melt(id_vars=["epoch", "normalization", "norm"], value_vars=list(PERCENTILE_NAMES), var_name="percentile", value_name="value")
    tidy["percentile"] = tidy["percentile"].map(PERCENTILE_NAMES)
    return specs.with_data(_percentile_template(int(layer)), percentiles=_finite(tidy, "value"))


@lru_cache(maxsize=32)
def _batch_sweep_template(norms: tuple[str, ...]) -> str:
    return specs.template(
        alt.Chart(specs.named("sweep"), height=HEIGHT, title=alt.Title("This lab: final test accuracy by batch size", subtitle="higher is better"))
        .mark_line(point=True)
        .encode(
            x=alt.X("batch_size:Q", title="Batch size", scale=alt.Scale(type="log", base=2),
                    axis=alt.Axis(values=[2, 4, 8, 16, 32, 64, 128, 256], format="d")),
            y=alt.Y("test_accuracy:Q", title="Test accuracy", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
            color=norm_color(norms),
            tooltip=["normalization:N", "batch_size:Q", alt.Tooltip("lr:Q", format=".4g"), "epochs:Q",
                     alt.Tooltip("test_accuracy:Q", format=".1%")],
        )
    )


def batch_sweep_chart(summary: pd.DataFrame) -> dict:
    """Final test accuracy against batch size (log₂ axis), one line per normalization."""
    columns = ["normalization", "batch_size", "lr", "epochs", "test_accuracy"]
    return specs.with_data(_batch_sweep_template(_present(summary["norm"])), sweep=_finite(summary, "test_accuracy")[columns])


@lru_cache(maxsize=32)
def _paper_template(norms: tuple[str, ...]) -> str:
    return specs.template(
        alt.Chart(specs.named("paper"), height=HEIGHT, title=alt.Title("Wu & He 2018: ResNet-50 on ImageNet", subtitle="top-1 error (lower is better)"))
        .mark_line(point=alt.OverlayMarkDef(size=60))
        .encode(
            x=alt.X("batch_size:Q", title="Images per GPU", scale=alt.Scale(type="log", base=2), axis=alt.Axis(values=[2, 4, 8, 16, 32], format="d")),
            y=alt.Y("top1_error:Q", title="Top-1 error (%)", scale=alt.Scale(zero=False)),
            color=norm_color(norms),
            tooltip=["normalization:N", "batch_size:Q", alt.Tooltip("top1_error:Q", format=".1f")],
        )
    )


def paper_chart(paper: pd.DataFrame) -> dict:
    """Wu & He 2018's ImageNet numbers (top-1 error, lower is better) by images per GPU."""
    return specs.with_data(_paper_template(_present(paper["norm"])), paper=paper[["normalization", "batch_size", "top1_error"]])


@lru_cache(maxsize=32)
def _lr_sweep_template(norms: tuple[str, ...]) -> str:
    x = alt.X("lr:Q", title="Learning rate (log scale)", scale=alt.Scale(type="log"))
    color = norm_color(norms)
    curve = alt.Chart(specs.named("lr_points"), height=HEIGHT).mark_line().encode(x=x, y="shown:Q", color=color)
    points = alt.Chart(specs.named("lr_points")).mark_point(size=70, filled=True).encode(
        x=x,
        y=alt.Y("shown:Q", title="Test accuracy", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        color=color,
        shape=alt.Shape("outcome:N", title="Outcome", scale=alt.Scale(domain=["finished", "diverged (NaN/inf loss)"], range=["circle", "cross"])),
        tooltip=["normalization:N", alt.Tooltip("lr:Q", format="g"), "outcome:N", alt.Tooltip("test_accuracy:Q", format=".1%")],
    )
    rules = alt.Chart(specs.named("lr_rules")).mark_rule(strokeDash=[6, 3]).encode(
        x="largest_lr:Q", color=color, tooltip=["normalization:N", alt.Tooltip("largest_lr:Q", title="largest lr that trains", format="g")]
    )
    return specs.template(alt.layer(curve, points, rules).properties(title=alt.Title(
        "Final test accuracy by learning rate", subtitle="dashed: the largest learning rate that still trains")))


def lr_sweep_chart(summary: pd.DataFrame, largest: pd.DataFrame) -> dict:
    """Final test accuracy against the learning rate (log axis); a cross marks a run that
    diverged, and a dashed rule the largest learning rate that still trains per norm."""
    points = summary[["normalization", "lr", "test_accuracy"]].assign(
        outcome=["diverged (NaN/inf loss)" if d else "finished" for d in summary["diverged"]],
        shown=summary["test_accuracy"].fillna(0.0),
    )
    rules = _finite(largest, "largest_lr")[["normalization", "largest_lr"]]
    return specs.with_data(_lr_sweep_template(_present(summary["norm"])), lr_points=points, lr_rules=rules)


def live_charts(mode: str, history: pd.DataFrame, norms: tuple[str, ...], devices: tuple[str, ...], epochs: float | None = None,
                summary: pd.DataFrame | None = None, largest: pd.DataFrame | None = None,
                paper: pd.DataFrame | None = None) -> tuple[dict, dict]:
    """The two charts a run shows while it trains (and after): curves when comparing; the
    sweep so far beside the paper's numbers or the loss curves when sweeping (the curves
    until the first sweep point has finished). ``norms``/``devices``: the whole run's."""
    curves = dict(epochs=epochs, norms=norms, devices=devices)
    if mode == "compare" or summary is None or summary.empty:
        return loss_chart(history, **curves), accuracy_chart(history, **curves)
    if mode == "batch_sweep":
        return batch_sweep_chart(summary), paper_chart(paper)
    return lr_sweep_chart(summary, largest), loss_chart(history, **curves)


def live_run_charts(live) -> tuple[dict, dict]:
    """:func:`live_charts` for a ``LiveRun`` as of now (what the page redraws while it trains)."""
    return live_charts(**live.chart_frames())


__all__ = [
    "NORM_COLORS", "accuracy_chart", "batch_sweep_chart", "live_charts", "live_run_charts", "loss_chart", "lr_sweep_chart",
    "norm_color", "paper_chart", "percentile_chart",
]
