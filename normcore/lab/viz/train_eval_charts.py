"""Charts for the train-vs-eval scenarios: a ScenarioResult's tidy frames in, Altair charts out.

Each builder returns rows of charts (a page puts one row in columns), so every chart can
stretch to its column's width. :data:`CHARTS` maps a scenario key to its builder.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from normcore.lab.experiments.train_eval import FINETUNE_SETS, ScenarioResult

Rows = list[list[alt.Chart]]
# Two things compared side by side get two colours that cannot be mistaken for each other
# (the theme's first two are both blue).
PAIR = alt.Scale(range=["#f58518", "#4c78a8"])
HEIGHT = 320  # the whole chart, titles and axes included (Streamlit fits the plot inside)
GAP_TITLE = "mean |y_train − y_eval|"
# Axis titles stay shorter than the plot is tall: a longer one sticks out above the plot, and
# Streamlit then squeezes the chart and clips its title.


def warmup_chart(r: ScenarioResult) -> Rows:
    gap, markers, floor = r.frames["gap"], r.frames["markers"].dropna(subset=["step"]), r.frames["floor"]
    color = alt.Color("variant:N", title="momentum", legend=alt.Legend(labelLimit=400))
    # Every layer states the log scale: a layer left linear would pull 0 into the shared domain.
    log = alt.Scale(type="log")
    lines = alt.Chart(gap).mark_line().encode(
        x=alt.X("step:Q", title="warm-up steps"),
        y=alt.Y("train_eval_gap:Q", title=GAP_TITLE, scale=log),
        color=color, tooltip=["step", "variant", alt.Tooltip("train_eval_gap:Q", format=".4g")],
    )
    floor_rule = alt.Chart(floor).mark_rule(strokeDash=[6, 4], color="gray").encode(
        y=alt.Y("floor:Q", scale=log), tooltip=[alt.Tooltip("floor:Q", format=".4g")])
    threshold = alt.Chart(floor).mark_rule(strokeDash=[2, 2], color="gray").encode(y=alt.Y("threshold:Q", scale=log))
    points = alt.Chart(markers).mark_point(size=120, filled=True, shape="diamond").encode(
        x="step:Q", y=alt.Y("train_eval_gap:Q", scale=log), color=alt.Color("variant:N", legend=None),
        tooltip=["variant", alt.Tooltip("step:Q", title="within 1% at step"), alt.Tooltip("closed_form_step:Q", title="(1 − m)^k < 1% at k")],
    )
    top = (lines + floor_rule + threshold + points).properties(
        height=HEIGHT, title=alt.Title("Train/eval gap vs warm-up", subtitle="◆ within 0.01 of the floor · dashed: floor (the probe's own noise) · dotted: floor + 0.01"),
    )
    channels = r.frames["channels"]
    per_channel = [
        alt.Chart(channels).mark_line().encode(
            x=alt.X("step:Q", title="warm-up steps"), y=alt.Y(f"{col}:Q", title=title),
            color=alt.Color("channel:N", title="channel"), tooltip=["step", "channel", alt.Tooltip(f"{col}:Q", format=".4g")],
        ).properties(height=HEIGHT, title=alt.Title(title, subtitle="per channel, your momentum"))
        for col, title in (("mean_gap", "running − probe mean"), ("var_gap", "running − probe var"))
    ]
    return [[top], per_channel]


def batch_size_chart(r: ScenarioResult) -> Rows:
    sizes, chosen = r.frames["sizes"], r.frames["chosen"]
    x = alt.X("batch_size:Q", title="batch size N", scale=alt.Scale(type="log", base=2))
    rule = alt.Chart(chosen).mark_rule(color="gray", strokeDash=[4, 4]).encode(x="batch_size:Q")
    charts = []
    for col, title in (("train_eval_gap", GAP_TITLE), ("train_noise", "std of one sample's output")):
        base = alt.Chart(sizes).mark_line(point=True).encode(
            x=x, y=alt.Y(f"{col}:Q", title=title), color=alt.Color("norm:N", scale=PAIR),
            tooltip=["norm", "batch_size", alt.Tooltip(f"{col}:Q", format=".4g")],
        )
        layers = base + rule
        if col == "train_noise":
            closed = sizes.dropna(subset=["noise_closed_form"])
            layers += alt.Chart(closed).mark_line(strokeDash=[6, 3], color="black").encode(
                x=x, y="noise_closed_form:Q", tooltip=[alt.Tooltip("noise_closed_form:Q", title="√(1.5 (N−1) / (N² H W))", format=".4g")],
            )
        heading = alt.Title("Train-mode noise", subtitle="one sample, across batches · dashed: Gaussian closed form") if col == "train_noise" \
            else alt.Title("Train/eval gap", subtitle="mean over probe batches")
        charts.append(layers.properties(height=HEIGHT, title=heading))
    return [charts]


def norms_chart(r: ScenarioResult) -> Rows:
    frame = r.frames["norms"].copy()
    frame["label"] = [
        "cannot run" if pd.isna(g) else ("0 (exactly)" if eq else f"{g:.3g}")
        for g, eq in zip(frame.train_eval_gap, frame.exactly_equal)
    ]
    frame["gap"] = frame.train_eval_gap.fillna(0.0)
    y = alt.Y("norm:N", title=None, sort=None, axis=alt.Axis(labelLimit=320))
    bars = alt.Chart(frame).mark_bar().encode(
        x=alt.X("gap:Q", title=GAP_TITLE), y=y,
        color=alt.Color("running_stats:N", title="keeps running statistics", scale=PAIR),
        tooltip=["norm", alt.Tooltip("train_eval_gap:Q", format=".4g"), alt.Tooltip("max_abs_gap:Q", format=".4g"), "exactly_equal"],
    )
    text = alt.Chart(frame).mark_text(align="left", dx=4).encode(x="gap:Q", y=y, text="label:N")
    return [[(bars + text).properties(height=HEIGHT, title="Same probe, both modes")]]


def non_iid_chart(r: ScenarioResult) -> Rows:
    steps, truth = r.frames["steps"], r.frames["truth"]
    color = alt.Color("order:N", title="loader", scale=PAIR)
    x = alt.X("step:Q", title="training step")
    batch = alt.Chart(steps).mark_circle(size=14, opacity=0.35).encode(x=x, y="batch_mean:Q", color=color)
    running = alt.Chart(steps).mark_line().encode(
        x=x, y=alt.Y("running_mean:Q", title="channel 0 mean"), color=color,
        tooltip=["step", "order", alt.Tooltip("running_mean:Q", format=".3g"), alt.Tooltip("batch_mean:Q", format=".3g")],
    )
    true_mean = alt.Chart(truth).mark_rule(color="black", strokeDash=[6, 4]).encode(y="mean:Q")
    error = alt.Chart(steps).mark_line().encode(
        x=x, y=alt.Y("eval_error:Q", title="mean |y_eval − y_true|"), color=color,
        tooltip=["step", "order", alt.Tooltip("eval_error:Q", format=".3g")],
    )
    return [[
        (batch + running + true_mean).properties(height=HEIGHT, title=alt.Title(
            "Running mean, channel 0", subtitle="dots: batch means · dashed: true mixture mean")),
        error.properties(height=HEIGHT, title="Eval-mode error on a shuffled test batch"),
    ]]


def shift_chart(r: ScenarioResult) -> Rows:
    shifts, chosen = r.frames["shifts"], r.frames["chosen"]
    rule = alt.Chart(chosen).mark_rule(color="gray", strokeDash=[4, 4]).encode(x="shift:Q")
    charts = []
    for col, title in (("error_if_nuisance", "Error if the shift is a nuisance (remove it)"),
                       ("error_if_signal", "Error if the shift is real signal (keep it)")):
        line = alt.Chart(shifts).mark_line(point=True).encode(
            x=alt.X("shift:Q", title="test shift (σ of the training data)"), y=alt.Y(f"{col}:Q", title="mean |y − target|"),
            color=alt.Color("mode:N", scale=PAIR, legend=alt.Legend(labelLimit=300)),
            tooltip=["shift", "mode", alt.Tooltip(f"{col}:Q", format=".3g"), alt.Tooltip("output_mean:Q", format=".3g")],
        )
        charts.append((line + rule).properties(height=HEIGHT, title=title))
    return [charts]


def precise_bn_chart(r: ScenarioResult) -> Rows:
    frame = r.frames["precise"]
    x = alt.X("samples:Q", title="PreciseBN samples (K batches × N)", scale=alt.Scale(type="log"))
    line = alt.Chart(frame).mark_line(point=True).encode(
        x=x, y=alt.Y("precise_error:Q", title="mean |y_eval − y_true|", scale=alt.Scale(type="log")),
        color=alt.value("#4c78a8"), tooltip=["batches", "samples", alt.Tooltip("precise_error:Q", format=".3g")],
    )
    log = alt.Scale(type="log")  # on every layer, or a linear one pulls 0 into the domain
    ema = alt.Chart(frame.head(1)).mark_rule(color="#e45756", strokeDash=[6, 4]).encode(
        y=alt.Y("ema_error:Q", scale=log), tooltip=[alt.Tooltip("ema_error:Q", title="EMA error", format=".3g")],
    )
    label = alt.Chart(frame.head(1)).mark_text(align="left", dy=-8, color="#e45756").encode(
        x=alt.value(4), y=alt.Y("ema_error:Q", scale=log), text=alt.value("EMA (running statistics after training)"),
    )
    return [[(line + ema + label).properties(height=HEIGHT, title="PreciseBN (blue) vs the EMA (red)")]]


def forgot_eval_chart(r: ScenarioResult) -> Rows:
    frame = r.frames["accuracy"]
    x = alt.X("test_batch_size:Q", title="test batch size", scale=alt.Scale(type="log", base=2))
    y = alt.Y("accuracy:Q", title="test accuracy", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1]))
    line = alt.Chart(frame.dropna(subset=["accuracy"])).mark_line(point=True).encode(
        x=x, y=y, color=alt.Color("mode:N", scale=PAIR, legend=alt.Legend(labelLimit=300)),
        tooltip=["test_batch_size", "mode", alt.Tooltip("accuracy:Q", format=".1%"), "samples"],
    )
    # A test batch that raised: a cross on the axis, the error in its tooltip.
    failed = frame[frame.error != ""].assign(accuracy=0.0)
    cross = alt.Chart(failed).mark_point(shape="cross", size=220, filled=True, color="#d62728").encode(
        x=x, y=y, tooltip=["test_batch_size", "mode", "error"],
    )
    text = alt.Chart(failed).mark_text(align="left", dx=12, dy=-10, color="#d62728").encode(
        x=x, y=y, text=alt.value("train mode: error (one value per feature)"),
    )
    return [[(line + cross + text).properties(height=HEIGHT, title="Test accuracy by test batch size")]]


def frozen_bn_chart(r: ScenarioResult) -> Rows:
    stats, accuracy = r.frames["stats"], r.frames["accuracy"]
    color = alt.Color("mode:N", scale=PAIR, legend=alt.Legend(labelLimit=300))
    acc = alt.Chart(accuracy).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="fine-tuning epoch"),
        y=alt.Y("accuracy:Q", title="accuracy (eval mode)", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
        color=color, strokeDash=alt.StrokeDash(
            # Said in the subtitle: the theme draws this legend's dash samples invisibly.
            "test_set:N", scale=alt.Scale(domain=list(FINETUNE_SETS), range=[[1, 0], [5, 4]]), legend=None,
        ),
        tooltip=["epoch", "mode", "test_set", alt.Tooltip("accuracy:Q", format=".1%")],
    ).properties(height=HEIGHT, title=alt.Title(
        "Accuracy while fine-tuning", subtitle=f"solid: {FINETUNE_SETS[0]} · dashed: {FINETUNE_SETS[1]}"))
    rows = [[acc]]
    if len(stats):
        rows.append([
            alt.Chart(stats).mark_line().encode(
                x=alt.X("step:Q", title="fine-tuning step"), y=alt.Y(f"{col}:Q", title=f"mean |Δ {name}|"),
                color=alt.Color("mode:N", scale=PAIR, legend=None),
                tooltip=["step", "mode", alt.Tooltip(f"{col}:Q", format=".4g")],
            ).properties(height=HEIGHT, title=alt.Title(f"{name}: change since fine-tuning began",
                                                        subtitle="first norm layer, mean over units"))
            for col, name in (("running_mean_change", "running mean"), ("running_var_change", "running var"))
        ])
    return rows


def renorm_chart(r: ScenarioResult) -> Rows:
    results, trace = r.frames["results"], r.frames["trace"]
    color = alt.Color("norm:N", legend=alt.Legend(orient="bottom"))
    tips = ["setting", "norm", alt.Tooltip("train_eval_gap:Q", format=".3g"), alt.Tooltip("test_accuracy:Q", format=".1%")]
    gap = alt.Chart(results).mark_bar().encode(
        y=alt.Y("setting:N", title=None), yOffset="norm:N", x=alt.X("train_eval_gap:Q", title="train/eval gap (logit std)"),
        color=color, tooltip=tips,
    ).properties(height=HEIGHT, title="Train/eval gap")
    acc = alt.Chart(results).mark_bar().encode(
        y=alt.Y("setting:N", title=None), yOffset="norm:N",
        x=alt.X("test_accuracy:Q", title="test accuracy (eval)", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        color=color, tooltip=tips,
    ).properties(height=HEIGHT, title="Test accuracy")
    long = trace.melt(id_vars=["setting", "step"], value_vars=["mean r", "mean |d|", "r_max", "d_max"], var_name="quantity")
    lines = alt.Chart(long).mark_line().encode(
        x=alt.X("step:Q", title="training step"), y=alt.Y("value:Q", title="value"), color=alt.Color("quantity:N"),
        strokeDash=alt.StrokeDash("setting:N", legend=alt.Legend(orient="bottom", columns=2)),
        tooltip=["setting", "step", "quantity", alt.Tooltip("value:Q", format=".3g")],
    ).properties(height=HEIGHT, title=alt.Title("Batch Renorm's r and d", subtitle="first renorm layer, mean over units"))
    return [[gap, acc], [lines]]


CHARTS = {
    "warmup": warmup_chart,
    "batch_size": batch_size_chart,
    "norms": norms_chart,
    "non_iid": non_iid_chart,
    "shift": shift_chart,
    "precise_bn": precise_bn_chart,
    "forgot_eval": forgot_eval_chart,
    "frozen_bn": frozen_bn_chart,
    "renorm": renorm_chart,
}


def charts_for(key: str, result: ScenarioResult) -> Rows:
    """The chart rows for a scenario's result (none when it could not run)."""
    return CHARTS[key](result) if result.frames else []
