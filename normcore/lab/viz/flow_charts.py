"""Charts for the Gradients page's parts 3–4: frames from
``normcore.lab.experiments.gradients.flow`` / ``.landscape`` in, Altair charts out.

* per-layer profiles (one line per run, dashed at initialization, solid after training);
* the update:data ratio with its usual healthy band near −3;
* the training loop's pre-activation percentiles over steps;
* Santurkar et al.'s bands over training steps, both runs together;
* the 1-D slice (a line) and the 2-D slice (a heatmap per run).
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from normcore.lab.norms import NORM_LABELS

HEIGHT = 240
WHEN = alt.StrokeDash("when:N", title="when", sort=["init", "trained"], legend=alt.Legend(symbolType="stroke"),
                      scale=alt.Scale(domain=["init", "trained"], range=[[5, 4], [1, 0]]))


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(run=frame.run.map(lambda r: NORM_LABELS.get(r, r)))


def _run_colour() -> alt.Color:
    return alt.Color("run:N", title="run", legend=alt.Legend(orient="top"), scale=alt.Scale(scheme="category10"))


def profile_chart(profiles: pd.DataFrame, column: str, title: str, log: bool = False) -> alt.Chart:
    """``column`` per layer, one line per run and moment (dashed: at init; solid: trained)."""
    frame = _labelled(profiles)
    if log:
        frame = frame[frame[column] > 0]
    y = alt.Y(f"{column}:Q", title=title, scale=alt.Scale(type="log") if log else alt.Undefined)
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("layer:Q", title="hidden layer (1 = nearest the input)", axis=alt.Axis(tickMinStep=1)),
        y=y, color=_run_colour(), strokeDash=WHEN,
        tooltip=["run", "when", "layer", alt.Tooltip(f"{column}:Q", format=".3g")],
    ).properties(height=HEIGHT, title=title)


def update_ratio_chart(profiles: pd.DataFrame, healthy: float) -> alt.LayerChart:
    """log10(std(lr·grad)/std(W)) per layer, with a band of ±0.5 around ``healthy`` (−3)."""
    lines = profile_chart(profiles[profiles.update_ratio > -30], "update_ratio", "update:data, log10(std(lr·∂L/∂W)/std(W))")
    band = alt.Chart(pd.DataFrame({"low": [healthy - 0.5], "high": [healthy + 0.5]})).mark_rect(
        color="green", opacity=0.12).encode(y="low:Q", y2="high:Q")
    rule = alt.Chart(pd.DataFrame({"y": [healthy]})).mark_rule(color="green", strokeDash=[2, 2]).encode(y="y:Q")
    return alt.layer(band, rule, lines).properties(height=HEIGHT)


def percentile_chart(histories: pd.DataFrame) -> alt.LayerChart:
    """Layer 1's pre-activation, 15th–85th percentile band and median, over training steps."""
    frame = _labelled(histories.dropna(subset=["p50"]))
    x = alt.X("step:Q", title="training step")
    band = alt.Chart(frame).mark_area(opacity=0.25).encode(x=x, y=alt.Y("p15:Q", title="pre-activation, layer 1"),
                                                          y2="p85:Q", color=_run_colour())
    median = alt.Chart(frame).mark_line().encode(x=x, y="p50:Q", color=_run_colour(),
                                                 tooltip=["run", "step", alt.Tooltip("p15", format=".3g"),
                                                          alt.Tooltip("p50", format=".3g"), alt.Tooltip("p85", format=".3g")])
    return alt.layer(band, median).properties(height=HEIGHT, title="Layer 1's pre-activation: 15th, 50th, 85th percentile")


def band_chart(bands: pd.DataFrame, low: str, high: str, title: str, log: bool = False) -> alt.LayerChart:
    """A measure's min–max band over training steps, one colour per run (Santurkar et al. Fig. 4)."""
    frame = _labelled(bands)
    x = alt.X("step:Q", title="training step")
    scale = alt.Scale(type="log") if log else alt.Undefined
    area = alt.Chart(frame).mark_area(opacity=0.35).encode(x=x, y=alt.Y(f"{low}:Q", title=title, scale=scale),
                                                          y2=f"{high}:Q", color=_run_colour())
    edges = alt.Chart(frame).mark_line(strokeWidth=1).encode(
        x=x, y=f"{high}:Q", color=_run_colour(),
        tooltip=["run", "step", alt.Tooltip(low, format=".3g"), alt.Tooltip(high, format=".3g")])
    return alt.layer(area, edges).properties(height=HEIGHT, title=title)


def beta_chart(bands: pd.DataFrame) -> alt.Chart:
    """The effective β-smoothness (the max over the step sizes) at each probe."""
    return alt.Chart(_labelled(bands)).mark_line(point=True).encode(
        x=alt.X("step:Q", title="training step"), y=alt.Y("beta:Q", title="effective β-smoothness"),
        color=_run_colour(), tooltip=["run", "step", alt.Tooltip("beta", format=".3g")],
    ).properties(height=HEIGHT, title="Effective β-smoothness")


def line_slice_chart(line: pd.DataFrame) -> alt.LayerChart:
    """Loss along (1 − α)·w_init + α·w_trained; rules at α = 0 and 1."""
    curve = alt.Chart(_labelled(line)).mark_line().encode(
        x=alt.X("alpha:Q", title="α (0: initial weights, 1: trained)"),
        y=alt.Y("loss:Q", title="loss on the fixed batch", scale=alt.Scale(type="log")),
        color=_run_colour(), tooltip=["run", alt.Tooltip("alpha", format=".3f"), alt.Tooltip("loss", format=".4g")])
    ends = alt.Chart(pd.DataFrame({"alpha": [0.0, 1.0]})).mark_rule(color="grey", strokeDash=[3, 3]).encode(x="alpha:Q")
    return alt.layer(ends, curve).properties(height=HEIGHT, title="1-D slice: from the initial to the trained weights")


def plane_chart(plane: pd.DataFrame, run: str, domain: tuple[float, float]) -> alt.Chart:
    """The loss on trained + a·d₁ + b·d₂ (log colour scale, shared ``domain`` across runs);
    each grid point a cell centred on it."""
    frame = plane[plane.run == run]
    a, b = sorted(frame.a.unique()), sorted(frame.b.unique())
    half = (a[1] - a[0]) / 2 if len(a) > 1 else 0.5
    frame = frame.assign(a0=frame.a - half, a1=frame.a + half, b0=frame.b - half, b1=frame.b + half)
    return alt.Chart(frame).mark_rect().encode(
        x=alt.X("a0:Q", title="a (direction 1)", scale=alt.Scale(domain=[a[0] - half, a[-1] + half], nice=False)),
        x2="a1:Q",
        y=alt.Y("b0:Q", title="b (direction 2)", scale=alt.Scale(domain=[b[0] - half, b[-1] + half], nice=False)),
        y2="b1:Q",
        color=alt.Color("loss:Q", scale=alt.Scale(type="log", scheme="viridis", domain=list(domain)),
                        title="loss", legend=alt.Legend(format=".3g")),
        tooltip=[alt.Tooltip("a", format=".2f"), alt.Tooltip("b", format=".2f"), alt.Tooltip("loss", format=".4g")],
    ).properties(height=300, title=f"2-D slice: {NORM_LABELS.get(run, run)}")


def flow_charts(profiles: pd.DataFrame, histories: pd.DataFrame, activation: str, healthy: float) -> list:
    """Part 3's charts in page order: the two gradient series, the activations' mean and std,
    the saturation (tanh, sigmoid), the update:data ratio, the loop's percentiles."""
    shown = [profile_chart(profiles, "act_grad_std", "std of the activation gradients ∂L/∂h", log=True),
             profile_chart(profiles, "weight_grad_std", "std of the weight gradients ∂L/∂W", log=True),
             profile_chart(profiles, "act_mean", "mean of the activations"),
             profile_chart(profiles, "act_std", "std of the activations")]
    if activation != "relu":
        shown.append(profile_chart(profiles, "saturation_pct", f"saturated % (|{activation}| tails)"))
    return shown + [update_ratio_chart(profiles, healthy), percentile_chart(histories)]


def landscape_charts(bands: pd.DataFrame, line: pd.DataFrame, plane: pd.DataFrame, runs) -> tuple[list, object, list]:
    """Part 4's charts: the three measures, the 1-D slice, one 2-D slice per run (one colour scale)."""
    measures = [band_chart(bands, "loss_min", "loss_max", "Loss landscape", log=True),
                band_chart(bands, "grad_change_min", "grad_change_max", "Gradient predictiveness ‖g − g′‖"),
                beta_chart(bands)]
    domain = (max(float(plane.loss.min()), 1e-6), float(plane.loss.max()))
    return measures, line_slice_chart(line), [plane_chart(plane, run, domain) for run in runs]
