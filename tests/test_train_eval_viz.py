"""The train-vs-eval chart builders: valid Vega-Lite from real scenario results, fields that
exist in the data, and the layout rules that keep Streamlit from squeezing a chart."""

from __future__ import annotations

from dataclasses import replace

import altair as alt
import pytest

from normcore.lab.experiments import train_eval as te
from normcore.lab.settings import DEFAULTS
from normcore.lab.viz.train_eval_charts import CHARTS, HEIGHT, charts_for

QUICK = {"steps": 30, "max_batches": 16, "probes": 4, "epochs": 2, "finetune_size": 40}


@pytest.fixture(scope="module")
def results():
    spec = te.RESOURCES["digits_model"]
    digits = spec.build(spec.config(DEFAULTS))
    out = {}
    for sc in te.SCENARIOS:
        params = {k: v for k, v in QUICK.items() if k in sc.defaults()}
        out[sc.key] = te.run_scenario(sc.key, DEFAULTS, params, digits if sc.resource else None)
    return out


def layers(spec: dict, data=None):
    """Every unit spec (one mark) in a chart spec, through layers, with its data inherited."""
    data = spec.get("data", data)
    if "layer" in spec:
        for sub in spec["layer"]:
            yield from layers(sub, data)
    else:
        yield spec | {"data": data}


def test_every_scenario_has_a_chart_builder():
    assert set(CHARTS) == {sc.key for sc in te.SCENARIOS}


def test_charts_are_valid_and_use_only_columns_of_their_data(results):
    for key, r in results.items():
        rows = charts_for(key, r)
        assert rows and all(rows), key
        for row in rows:
            for chart in row:
                assert isinstance(chart, (alt.Chart, alt.LayerChart)), key
                spec = chart.to_dict()  # validates against the Vega-Lite schema
                datasets = spec.get("datasets", {})
                assert spec["height"] == HEIGHT, key
                for unit in layers(spec):
                    columns = set(datasets[unit["data"]["name"]][0]) if datasets.get(unit["data"]["name"]) else None
                    for channel, enc in unit.get("encoding", {}).items():
                        for e in enc if isinstance(enc, list) else [enc]:
                            if "field" in e and columns is not None:
                                assert e["field"] in columns, (key, channel, e["field"])


def test_axis_titles_are_short_enough_not_to_stick_out(results):
    # A y-axis title longer than the plot is tall makes Streamlit squeeze the chart and clip its title.
    for key, r in results.items():
        for row in charts_for(key, r):
            for chart in row:
                for unit in layers(chart.to_dict()):
                    title = unit.get("encoding", {}).get("y", {}).get("title")
                    assert title is None or len(str(title)) <= 30, (key, title)


def test_log_axes_are_log_on_every_layer(results):
    # A linear layer in a log chart pulls 0 into the shared domain and flattens everything.
    for key in ("warmup", "precise_bn"):
        chart = charts_for(key, results[key])[0][0].to_dict()
        scales = {unit["encoding"]["y"].get("scale", {}).get("type") for unit in layers(chart) if "y" in unit["encoding"]
                  and unit["encoding"]["y"].get("type") == "quantitative"}
        assert scales == {"log"}, key


def test_norms_chart_labels_exact_zeros(results):
    spec = charts_for("norms", results["norms"])[0][0].to_dict()
    labels = {row["norm"]: row["label"] for rows in spec["datasets"].values() for row in rows if "label" in row}
    exact = sorted(norm for norm, label in labels.items() if label == "0 (exactly)")
    assert exact == ["GroupNorm (G=2)", "InstanceNorm", "LayerNorm", "RMSNorm"] and "cannot run" not in labels.values()


def test_forgot_eval_marks_the_batch_of_one_as_an_error(results):
    spec = charts_for("forgot_eval", results["forgot_eval"])[0][0].to_dict()
    crosses = [u for u in layers(spec) if isinstance(u["mark"], dict) and u["mark"].get("shape") == "cross"]
    assert len(crosses) == 1
    rows = spec["datasets"][crosses[0]["data"]["name"]]
    assert [r["test_batch_size"] for r in rows] == [1] and "Expected more than 1 value" in rows[0]["error"]


def test_frozen_bn_without_running_stats_draws_only_accuracy():
    r = te.run_scenario("frozen_bn", replace(DEFAULTS, norm="layer"), {"epochs": 1, "finetune_size": 30})
    rows = charts_for("frozen_bn", r)
    assert len(rows) == 1 and len(rows[0]) == 1


def test_a_blocked_scenario_draws_nothing():
    r = te.run_scenario("warmup", replace(DEFAULTS, batch_size=512, channels=64, spatial=32))  # over the element cap
    assert not r.frames and r.messages[0].level == "error"
    assert charts_for("warmup", r) == []
