"""AppTest of the Live statistics page, opened through the router as a user would.

run_every never fires under AppTest, so the stream is driven with its buttons.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests import apptest_pages

from normcore.lab import limits
from normcore.lab.populations import draw_batch, make_generator
from normcore.lab.settings import EPS_CHOICES

PAGE = "pages/live_statistics.py"


def open_page(**query) -> AppTest:
    return apptest_pages.open_page(PAGE, **query)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def chart(at: AppTest, title_start: str):
    """(spec, rows) of the chart whose title starts so; rows from its Arrow datasets."""
    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        if str(spec.get("title", "")).startswith(title_start):
            frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in element.proto.datasets]
            return spec, frames[0] if frames else None
    return None, None


def step(at: AppTest, times: int = 1) -> AppTest:
    for _ in range(times):
        at.button(key="live_step").click().run()
        assert not at.exception
    return at


def parity_badge(at: AppTest) -> str | None:
    """st.badge renders as markdown (":green-badge[...]")."""
    return next((m.value for m in at.markdown if "normcore vs torch.nn" in m.value), None)


def infos(at: AppTest) -> str:
    return " | ".join(i.value for i in at.info)


def test_defaults_render_every_section():
    at = open_page()
    assert at.title[0].value == "📈 Live statistics"
    assert [h.value for h in at.header] == [
        "1 · Which values share one mean and variance", "2 · One batch, before and after", "3 · Live stream"]
    assert not at.error and not at.warning
    assert chart(at, "BatchNorm: the input")[0] is not None
    assert chart(at, "Values per channel, before and after BatchNorm")[0] is not None
    moments = at.dataframe[0].value
    assert list(moments["channel"]) == [0, 1, 2, 3] and (abs(moments["mean_after"]) < 1e-5).all()
    assert metric(at, "num_batches_tracked") == "0"
    assert metric(at, "EMA half-life") == "6.6 steps"
    assert metric(at, "Std error of a batch mean") == f"{1 / (32 * 64) ** 0.5:.3g}"
    assert "Press ▶️ Play or ⏭️ Step" in infos(at)
    assert dict(at.query_params) == {}  # defaults make a clean URL


def test_step_advances_num_batches_tracked_and_the_charts_data():
    at = step(open_page(), 1)
    assert metric(at, "num_batches_tracked") == "1"
    _, rows = chart(at, "Mean per channel")
    assert set(rows["step"]) == {1}
    step(at, 2)
    assert metric(at, "num_batches_tracked") == "3"
    spec, rows = chart(at, "Variance per channel")
    assert set(rows["step"]) == {1, 2, 3} and set(rows["series"]) == {"batch (noisy)", "running (EMA)", "true population"}
    assert (rows.query("series == 'true population'")["value"] == 1.0).all()
    assert parity_badge(at).startswith(":green-badge[✅ normcore vs torch.nn, max |Δ| this step: output")
    at.button(key="live_reset").click().run()
    assert metric(at, "num_batches_tracked") == "0" and chart(at, "Mean per channel")[0] is None


def test_play_steps_on_each_rerun_and_pause_stops():
    at = open_page()
    at.button(key="live_play").click().run()
    assert not at.exception
    assert at.button(key="live_step").disabled and "Pause" in at.button(key="live_play").label
    before = int(metric(at, "num_batches_tracked"))
    at.run()  # what a timer tick does
    assert int(metric(at, "num_batches_tracked")) == before + 1
    at.button(key="live_play").click().run()
    assert not at.button(key="live_step").disabled
    paused = metric(at, "num_batches_tracked")
    at.run()
    assert metric(at, "num_batches_tracked") == paused


def test_a_new_layer_shape_restarts_the_stream_with_a_note():
    at = step(open_page(), 2)
    at.slider(key="control_channels").set_value(8).run()
    assert not at.exception
    assert "The stream restarted: the channel count changed from 4 to 8" in infos(at)
    assert metric(at, "num_batches_tracked") == "0"
    at.slider(key="control_momentum").set_value(0.5).run()  # momentum applies to the running layer
    step(at, 1)
    assert metric(at, "num_batches_tracked") == "1" and metric(at, "EMA half-life") == "1.0 steps"


@pytest.mark.parametrize("norm, message", [
    ("layer", "LayerNorm keeps no running statistics"),
    ("group", "GroupNorm keeps no running statistics"),
    ("instance", "InstanceNorm is per sample"),
])
def test_per_sample_norms_say_why_they_keep_no_running_statistics(norm, message):
    at = step(open_page(norm=norm), 2)
    assert message in infos(at)
    assert metric(at, "num_batches_tracked") == "—"
    _, rows = chart(at, "Mean per")
    assert set(rows["series"]) == {"batch (noisy)", "true population"}


def test_instancenorm_can_track_running_statistics():
    at = open_page(norm="instance")
    at.toggle(key="live_track_running_stats").set_value(True).run()
    step(at, 2)
    assert metric(at, "num_batches_tracked") == "0"  # torch's InstanceNorm never counts
    assert "running (EMA)" in set(chart(at, "Mean per channel")[1]["series"])
    assert at.query_params["in_running"] == "true"


@pytest.mark.parametrize("query, level, text", [
    (dict(batch_size=1, spatial=1), "error", "Expected more than 1 value per channel"),
    (dict(batch_size=1), "warning", "Batch size 1"),
    (dict(norm="group", num_groups=3), "error", "must be divisible by num_groups (3)"),
    (dict(batch_size=512, channels=64, spatial=32), "error", "over this demo's cap"),
    (dict(norm="instance", spatial=1), "error", "Expected more than 1 spatial element"),
])
def test_invalid_combinations_explain_and_the_rest_keeps_working(query, level, text):
    at = open_page(**query)
    shown = at.error if level == "error" else at.warning
    assert any(text in m.value for m in shown)
    assert len(at.header) == 3 and at.toggle(key="live_quiet_channel") is not None
    if level == "error":
        assert "The stream needs valid settings" in infos(at) and parity_badge(at) is None
    else:
        assert metric(step(at), "num_batches_tracked") == "1"
    if query.get("norm") == "group":
        assert "No diagram while the group count does not divide" in infos(at)
    else:
        label = {"batch": "BatchNorm", "instance": "InstanceNorm"}[query.get("norm", "batch")]
        assert chart(at, f"{label}: the input")[0] is not None


# Every shared control and every page control at its minimum and maximum: no exception,
# and either a readable message or a stream that steps.
CONTROLS = [
    ("slider", "control_batch_size", 1, limits.MAX_BATCH_SIZE, {}),
    ("slider", "control_channels", 1, limits.MAX_CHANNELS, {}),
    ("slider", "control_spatial", 1, limits.MAX_SPATIAL, {}),
    ("slider", "control_momentum", 0.0, 1.0, {}),
    ("select_slider", "control_eps", EPS_CHOICES[0], EPS_CHOICES[-1], {}),
    ("slider", "control_num_groups", 1, limits.MAX_CHANNELS, {"norm": "group", "channels": 64}),
    ("number_input", "control_seed", 0, 2**31 - 1, {}),
    ("number_input", "control_mean_offset", -100.0, 100.0, {}),
    ("number_input", "control_scale", 0.01, 100.0, {}),
    ("slider", "control_channel_spread", 0.0, 10.0, {}),
    ("slider", "control_outlier_fraction", 0.0, 0.5, {}),
    ("toggle", "control_affine", False, True, {}),
    ("radio", "control_momentum_convention", "pytorch", "keras", {}),
    ("checkbox", "control_momentum_none", False, True, {}),
    ("selectbox", "control_norm", "batch", "instance", {}),
    ("selectbox", "control_norm", "layer", "group", {}),
    ("toggle", "live_quiet_channel", False, True, {}),
    ("selectbox", "live_drift", "step", "wave", {}),
    ("slider", "live_drift_size", 0.0, 10.0, {"drift": "step"}),
    ("slider", "live_drift_period", 20, 1000, {"drift": "wave"}),
    ("slider", "live_steps_per_tick", 1, 50, {}),
    ("toggle", "live_track_running_stats", False, True, {"norm": "instance"}),
]


@pytest.mark.parametrize("kind, key, low, high, preset", CONTROLS, ids=[f"{c[1]}-{c[2]}-{c[3]}" for c in CONTROLS])
def test_every_control_at_its_minimum_and_maximum(kind, key, low, high, preset):
    at = open_page(**preset)
    for value in (low, high):
        getattr(at, kind)(key=key).set_value(value).run()
        assert not at.exception, (key, value)
        assert getattr(at, kind)(key=key).value == value
        if at.error:
            assert "The stream needs valid settings" in infos(at)
            continue
        before = metric(at, "num_batches_tracked")
        step(at)
        if before != "—" and key != "live_track_running_stats":  # InstanceNorm never counts
            assert int(metric(at, "num_batches_tracked")) == int(before) + 1
        assert "✅" in parity_badge(at)


def test_url_round_trip_of_shared_and_page_controls():
    at = open_page(norm="group", channels=8, num_groups=4, quiet="true", drift="wave", speed=5, eps="1e-3")
    assert at.selectbox(key="control_norm").value == "group"
    assert at.slider(key="control_channels").value == 8 and at.slider(key="control_num_groups").value == 4
    assert at.select_slider(key="control_eps").value == 1e-3
    assert at.toggle(key="live_quiet_channel").value is True
    assert at.selectbox(key="live_drift").value == "wave" and at.slider(key="live_steps_per_tick").value == 5
    assert chart(at, "Values per group, before and after GroupNorm")[0] is not None  # shared settings applied
    at.slider(key="live_drift_size").set_value(3.5).run()
    at.slider(key="control_batch_size").set_value(16).run()
    assert at.query_params["drift_size"] == "3.5" and at.query_params["batch_size"] == "16"
    at.toggle(key="live_quiet_channel").set_value(False).run()
    at.selectbox(key="live_drift").set_value("none").run()
    assert "quiet" not in at.query_params and "drift" not in at.query_params
    assert at.query_params["norm"] == "group" and at.query_params["speed"] == "5"


def test_drift_shape_controls_are_disabled_without_a_drift():
    at = open_page()
    assert at.slider(key="live_drift_size").disabled and at.slider(key="live_drift_period").disabled
    assert not at.slider(key="live_steps_per_tick").disabled
    at.selectbox(key="live_drift").set_value("wave").run()
    assert not at.slider(key="live_drift_size").disabled and not at.slider(key="live_drift_period").disabled
    assert at.selectbox(key="live_drift").label == "Drift of the population mean"
    assert at.slider(key="live_steps_per_tick").max == limits.MAX_STEPS_PER_TICK


def test_a_bad_url_value_is_ignored_with_a_warning():
    at = open_page(drift="sideways", speed="500")
    texts = " ".join(w.value for w in at.warning)
    assert "Ignored URL parameter drift='sideways'" in texts and "Ignored URL parameter speed='500'" in texts
    assert at.selectbox(key="live_drift").value == "none"


def test_the_example_input_button_moves_the_distribution():
    at = open_page()
    next(b for b in at.button if "Try an offset" in b.label).click().run()
    assert not at.exception
    assert at.query_params["mean_offset"] == "3.0" and at.query_params["channel_spread"] == "1.0"
    moments = at.dataframe[0].value
    assert (moments["mean_before"] > 1).all() and (abs(moments["mean_after"]) < 1e-4).all()


# -- RMSNorm -------------------------------------------------------------------------------


def frame_with(at: AppTest, column: str):
    """The shown dataframe that has this column."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def shown_settings(at: AppTest):
    from pages.shared import controls
    return at.session_state[controls._STORE]


def check_rmsnorm_table(at: AppTest) -> None:
    """The per-sample table and the readouts against torch.nn.RMSNorm on the batch the page drew."""
    s = shown_settings(at)
    x = draw_batch(s, make_generator(s.seed))
    with torch.no_grad():
        y = torch.nn.RMSNorm(x.shape[1:], eps=s.eps)(x).double().flatten(1)
    xd = x.double().flatten(1)
    table = frame_with(at, "mean_square")
    assert list(table["sample"]) == list(range(s.batch_size)), s
    np.testing.assert_allclose(table["mean_square"], xd.square().mean(1), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(table["mean_after"], y.mean(1), atol=2e-6)
    np.testing.assert_allclose(table["predicted_mean_after"], y.mean(1), atol=2e-6)
    measured, predicted = float(metric(at, "Output mean, measured")), float(metric(at, "Output mean, predicted"))
    assert measured == pytest.approx(float(y.mean()), abs=1e-3) and predicted == pytest.approx(measured, abs=1e-3)


@pytest.fixture(scope="module")
def rms_page() -> AppTest:
    return open_page(norm="rms", mean_offset=5)


def test_rmsnorm_shows_the_mean_square_and_an_output_mean_that_is_not_zero(rms_page):
    at = rms_page
    assert not at.exception and not at.error and not at.warning
    assert chart(at, "RMSNorm: the input")[0] is not None
    assert chart(at, "Values per sample (all channels), before and after RMSNorm")[0] is not None
    assert any("one **mean square** E[x²] **per sample**" in m.value for m in at.markdown)
    table = frame_with(at, "mean_square")
    assert {"mean_square", "divisor", "predicted_mean_after", "mean_after", "rms_after"} <= set(table.columns)
    assert "mean_before" in table.columns and "var_after" not in table.columns  # no fake statistics
    check_rmsnorm_table(at)
    assert float(metric(at, "Output mean, measured")) > 0.95  # offset 5, std 1: 5/√26
    assert metric(at, "Output RMS, measured") == "1.000"
    note = infos(at)
    assert "not zero-mean" in note and "**Mean offset**" in note and "now 5" in note and "eps=None" in note
    compared = frame_with(at, "normalization").set_index("normalization")
    assert abs(compared.loc["LayerNorm", "output mean"]) < 1e-5 and compared.loc["RMSNorm", "output mean"] > 0.95
    step(at, 2)
    assert "RMSNorm keeps no running statistics" in infos(at) and metric(at, "num_batches_tracked") == "—"
    assert float(metric(at, "Output mean (population)")) == pytest.approx(5 / 26**0.5, abs=1e-3)
    _, rows = chart(at, "Output mean per sample")
    assert set(rows["series"]) == {"batch (noisy)", "true population"} and (rows["value"] > 0.95).all()
    assert chart(at, "Mean square E[x²] per sample")[0] is not None
    assert "✅" in parity_badge(at)


RMS_EXTREMES = [
    ("slider", "control_batch_size", 1, limits.MAX_BATCH_SIZE),
    ("slider", "control_channels", 1, limits.MAX_CHANNELS),
    ("slider", "control_spatial", 1, limits.MAX_SPATIAL),
    ("select_slider", "control_eps", EPS_CHOICES[0], EPS_CHOICES[-1]),
    ("number_input", "control_mean_offset", -100.0, 100.0),
    ("number_input", "control_scale", 0.01, 100.0),
]


def test_rmsnorm_at_the_extremes_of_its_controls(rms_page):
    """One session: each control to its minimum and maximum, then back (applied with the next
    control's run); the table and the predicted vs measured mean checked against
    torch.nn.RMSNorm, the stream stepped."""
    at = rms_page
    for kind, key, low, high in RMS_EXTREMES:
        default = getattr(at, kind)(key=key).value
        for value in (low, high):
            getattr(at, kind)(key=key).set_value(value).run()
            assert not at.exception, (key, value)
            if at.error:  # over the element cap (batch size × channels × spatial)
                assert "over this demo's cap" in at.error[0].value and "The stream needs valid settings" in infos(at)
                continue
            check_rmsnorm_table(at)
            assert "✅" in parity_badge(step(at)), (key, value)
        getattr(at, kind)(key=key).set_value(default)
    at.slider(key="control_channels").set_value(1).run()
    at.slider(key="control_spatial").set_value(1).run()  # one value per sample: a warning, and it still runs
    assert any("RMSNorm over one value per sample" in w.value for w in at.warning) and not at.error
    check_rmsnorm_table(at)
