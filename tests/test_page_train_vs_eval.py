"""The Train vs eval page through Streamlit's AppTest: every scenario tab renders, extreme and
invalid shared controls show messages in the affected tab, and nothing raises."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from tests import apptest_pages
from tests.apptest_pages import chart_rows, texts

from normcore.lab.experiments import train_eval as te
from normcore.lab.experiments.train_eval import SCENARIOS

PAGE = "pages/train_vs_eval.py"
LABELS = {sc.key: f"{sc.icon} {sc.title}" for sc in SCENARIOS}


def open_page(scenario: str | None = None, **query) -> AppTest:
    """The page as a user reaches it: the router first, then the page, with the shared
    controls given as URL parameters and ``scenario`` the open tab."""
    at = apptest_pages.open_page(PAGE, timeout=120, **query)
    if scenario is not None:
        at.session_state["scenario"] = LABELS[scenario]
        at.run()
        assert not at.exception, at.exception
    return at




def open_tab(at: AppTest, key: str) -> AppTest:
    at.session_state["scenario"] = LABELS[key]
    at.run()
    assert not at.exception, at.exception
    return at


def test_rmsnorm_does_not_differ_between_the_modes_at_any_extreme():
    # One value per sample (batch 1, 1 channel, 1×1 map), then the largest batch.
    at = open_page("norms", norm="rms", batch_size=1, channels=1, spatial=1)
    assert at.selectbox(key="control_norm").value == "rms"
    for batch_size in (1, 512):
        if batch_size > 1:
            at.slider(key="control_batch_size").set_value(batch_size).run()
        rows = chart_rows(at).drop_duplicates("norm").set_index("norm")
        assert rows.loc["RMSNorm", "label"] == "0 (exactly)" and not rows.loc["RMSNorm", "running_stats"], batch_size
        assert rows.loc["RMSNorm", "train_eval_gap"] == 0.0 and bool(rows.loc["RMSNorm", "exactly_equal"])
    assert rows.loc["BatchNorm", "train_eval_gap"] > 0  # the one that differs
    # The running-statistics tabs say RMSNorm has none and show BatchNorm; the digits tab trains an RMSNorm network.
    for key in ("warmup", "shift"):
        assert "RMSNorm keeps no running statistics" in texts(open_tab(at, key).info), key
        assert at.get("vega_lite_chart") and not at.error, key
    at.slider(key="control_batch_size").set_value(32)
    open_tab(at, "forgot_eval")
    assert "An RMSNorm network keeps no running statistics" in texts(at.info) and not at.error
    accuracy = chart_rows(at).pivot_table(index="test_batch_size", columns="mode", values="accuracy")
    assert accuracy.notna().all().all() and (accuracy[te.EVAL_MODES[0]] == accuracy[te.EVAL_MODES[1]]).all()


def test_defaults_open_on_the_warmup_tab_with_its_chart():
    at = open_page()
    assert at.title[0].value == "⚖️ Train vs eval"
    assert [t.label for t in at.tabs] == list(LABELS.values())
    assert at.metric[0].value.startswith("step ")
    assert len(at.get("vega_lite_chart")) == 3 and not at.error


@pytest.mark.parametrize("key", [sc.key for sc in SCENARIOS])
def test_each_scenario_renders_its_headline_and_charts(key):
    at = open_page(key)
    assert len(at.metric) == 1 and at.metric[0].value
    charts = at.get("vega_lite_chart")
    assert charts
    for chart in charts:  # a real Vega-Lite spec, with its data sent alongside
        spec = json.loads(chart.proto.spec)
        assert ("mark" in spec or "layer" in spec) and len(chart.proto.datasets) > 0
    assert not at.error
    for f in te.scenario(key).params.fields:  # the controls come from the schema, at their defaults
        slider = at.slider(key=f"{key}.{f.name}")
        assert (slider.label, slider.min, slider.max, slider.step, slider.value) == (f.label, f.low, f.high, f.step, f.default)
    if key == "batch_size":  # the ±1 table at batch size 2
        assert at.dataframe and "closed form" in " ".join(at.dataframe[0].value.columns)


def test_only_the_open_tab_runs_its_experiment():
    at = open_page("norms")
    assert len(at.metric) == 1 and at.metric[0].label == "BatchNorm train/eval gap"


def test_a_scenario_control_changes_the_result():
    at = open_page("shift")
    before = at.metric[0].value
    at.slider(key="shift.shift").set_value(-2.0).run()
    assert not at.exception and at.metric[0].value != before and at.metric[0].label.startswith("Mean output at shift -2σ")


def test_batch_size_one_on_one_value_shows_torchs_error_where_it_applies():
    at = open_page("batch_size", batch_size=1, spatial=1)
    assert "Expected more than 1 value per channel when training" in texts(at.error)
    assert at.get("vega_lite_chart")  # the sweep from batch size 2 still shows
    at.session_state["scenario"] = LABELS["forgot_eval"]
    at.run()
    assert not at.exception and "Training batch size 1" in texts(at.error) and not at.get("vega_lite_chart")
    at.session_state["scenario"] = LABELS["warmup"]
    at.run()
    assert not at.exception and "Expected more than 1 value per channel" in texts(at.error)


def test_invalid_groups_explain_themselves_in_each_tab():
    at = open_page("norms", norm="group", channels=4, num_groups=3)
    assert "num_channels (4) must be divisible by num_groups (3)" in texts(at.error)
    assert at.get("vega_lite_chart")  # the other norms are still measured
    for key in ("warmup", "frozen_bn"):
        at.session_state["scenario"] = LABELS[key]
        at.run()
        assert not at.exception and "must be divisible by num_groups (3)" in texts(at.error), key


def test_extreme_settings_show_messages_not_tracebacks():
    # Over the element cap: every running-statistics tab explains it; nothing raises.
    at = open_page("warmup", batch_size=512, channels=64, spatial=32)
    assert "over this demo's cap" in texts(at.error) and not at.get("vega_lite_chart")
    for key in ("non_iid", "shift", "precise_bn"):
        at.session_state["scenario"] = LABELS[key]
        at.run()
        assert not at.exception and "over this demo's cap" in texts(at.error), key
    at = open_page("warmup", momentum="none", eps=1.0, affine="false", mean_offset=-100, scale=0.01, momentum_convention="keras")
    assert at.metric and "None" in at.metric[0].label
