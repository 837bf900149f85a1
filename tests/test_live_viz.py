"""Chart builders of the Live statistics page: the specs carry the data and encodings we mean."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from normcore.lab.experiments import live
from normcore.lab.settings import DEFAULTS
from normcore.lab.viz import live_charts as charts
from tests.vega import validated


def spec_and_rows(chart):
    """The Vega-Lite spec, and every data row in it (Altair moves inline data to ``datasets``;
    a live chart is already a spec, with frames there)."""
    spec = chart if isinstance(chart, dict) else chart.to_dict()
    rows = [row for values in spec.get("datasets", {}).values()
            for row in (values.to_dict("records") if isinstance(values, pd.DataFrame) else values)]
    return spec, rows


def layers(spec):
    inner = spec.get("spec", spec)  # a facet wraps its chart in "spec"
    return inner.get("layer", [inner])


@pytest.mark.parametrize("norm, colours", [("batch", 4), ("layer", 4), ("instance", 16), ("group", 8), ("rms", 4)])
def test_statistic_diagram_colours_each_cell_by_its_statistic(norm, colours):
    s = replace(DEFAULTS, norm=norm, num_groups=2)  # 32 × 4 × 8×8, drawn as 4 × 4 × 6
    spec, rows = spec_and_rows(charts.statistic_diagram(live.diagram_frame(s), "t"))
    assert spec["facet"]["column"]["field"] == "sample"
    cells, text = layers(spec)
    assert cells["mark"]["type"] == "rect" and cells["encoding"]["color"]["field"] == "statistic"
    assert text["encoding"]["text"]["field"] == "label"
    assert len(rows) == 4 * 4 * 6
    assert len({r["statistic"] for r in rows}) == colours
    symbol = "ms" if norm == "rms" else "μ"  # RMSNorm shares a mean square, not a mean and variance
    assert all(r["label"] == f"{symbol}{r['statistic']}" for r in rows)
    assert len(cells["encoding"]["color"]["scale"]["range"]) == 20 >= colours


def test_histograms_facet_stage_by_unit_with_bars_from_zero():
    view = live.one_batch(replace(DEFAULTS, batch_size=4))
    spec, rows = spec_and_rows(charts.histograms(view.histogram, "t"))
    assert spec["facet"]["row"]["field"] == "stage" and spec["facet"]["column"]["field"] == "unit"
    assert spec["facet"]["column"]["sort"] == ["channel 0", "channel 1", "channel 2", "channel 3"]
    enc = layers(spec)[0]["encoding"]
    assert enc["x"]["field"] == "bin_start" and enc["x2"]["field"] == "bin_end" and enc["y2"] == {"datum": 0}
    assert enc["x"]["scale"]["zero"] is False  # a narrow channel far from 0 keeps its own range
    assert enc["color"]["scale"] == {"domain": ["before", "after"], "range": [charts.BEFORE, charts.AFTER]}
    assert spec["resolve"]["scale"] == {"x": "independent", "y": "independent"}
    assert len(rows) == len(view.histogram) and sum(r["count"] for r in rows) == 2 * 4 * 4 * 64


def test_eps_chart_has_theory_measured_and_the_eps_in_use():
    curve = pd.DataFrame({"eps": [1e-8, 1e-4, 1.0], "measured": [1.0, 0.7, 0.01], "theory": [1.0, 0.71, 0.01]})
    spec, rows = spec_and_rows(charts.eps_chart(curve, 3e-5))
    theory, measured, rule = spec["layer"]
    assert theory["mark"]["type"] == "line" and measured["mark"]["type"] == "point" and rule["mark"]["type"] == "rule"
    assert theory["encoding"]["x"]["scale"]["type"] == "log" and theory["encoding"]["y"]["scale"]["type"] == "log"
    assert {(r["source"], r["spread"]) for r in rows if "source" in r} == {
        ("measured", 1.0), ("measured", 0.7), ("measured", 0.01), ("theory", 1.0), ("theory", 0.71), ("theory", 0.01)}
    assert [r["eps"] for r in rows if "label" in r] == [3e-5]
    assert theory["encoding"]["y"]["scale"]["domain"] == [pytest.approx(0.01 / 1.5), 1.5]


def test_stream_chart_draws_every_unit_and_series():
    stream = live.LiveStream(replace(DEFAULTS, batch_size=4, spatial=2))
    stream.step(3)
    series = live.series_frame(stream.history(max_units=2), "mean")
    spec, rows = spec_and_rows(charts.stream_chart(series, "mean", "Mean per channel"))
    validated(spec)
    enc = spec["encoding"]
    assert spec["mark"]["type"] == "line" and spec["title"] == "Mean per channel"
    assert enc["x"]["field"] == "step" and enc["y"]["field"] == "value" and enc["color"]["field"] == "unit"
    for channel in ("strokeDash", "strokeWidth", "opacity"):
        assert enc[channel]["field"] == "series" and enc[channel]["scale"]["domain"] == list(charts.SERIES_LABELS.values())
    assert enc["strokeDash"]["scale"]["range"] == [[1, 0], [1, 0], [6, 4]] and enc["strokeWidth"]["scale"]["range"] == [1, 3, 1.5]
    assert len(rows) == len(series) == 3 * 2 * 3
    assert {(r["unit"], r["series"]) for r in rows} == {
        (u, charts.SERIES_LABELS[k]) for u in ("channel 0", "channel 1") for k in charts.SERIES}
    batch = sorted((r["step"], r["value"]) for r in rows if r["series"] == "batch (noisy)" and r["unit"] == "channel 0")
    expected = stream.history().query("unit == 'channel 0'")[["step", "batch_mean"]].itertuples(index=False)
    assert batch == [pytest.approx(tuple(e)) for e in expected]


def test_stream_chart_without_running_stats_leaves_them_out_of_the_legend():
    stream = live.LiveStream(replace(DEFAULTS, norm="layer", batch_size=4, spatial=2))
    stream.step(2)
    spec, rows = spec_and_rows(charts.stream_chart(live.series_frame(stream.history(), "var"), "var", "Variance"))
    validated(spec)
    assert spec["encoding"]["strokeDash"]["scale"] == {"domain": ["batch (noisy)", "true population"], "range": [[1, 0], [6, 4]]}
    assert spec["encoding"]["y"]["title"] == "variance" and {r["unit"] for r in rows} == {"all channels"}


def test_stream_charts_are_empty_before_the_first_step_then_mean_and_variance():
    stream = live.LiveStream(replace(DEFAULTS, norm="group", channels=4, num_groups=2))
    assert charts.stream_charts(stream) == []
    stream.step(3)
    mean, var = charts.stream_charts(stream)
    assert mean["title"].startswith("Mean per group") and var["title"].startswith("Variance per group")
    frame = mean["datasets"]["stream"]
    assert sorted(frame["step"].unique()) == [1, 2, 3]  # every step so far
    assert set(frame["unit"]) == {"group 0 (ch 0–1)", "group 1 (ch 2–3)"}


def test_rmsnorm_stream_charts_show_the_output_mean_and_the_mean_square():
    stream = live.LiveStream(replace(DEFAULTS, norm="rms", batch_size=4, spatial=2, mean_offset=3.0))
    stream.step(2)
    mean, square = charts.stream_charts(stream)
    validated(mean)
    assert mean["title"] == f"Output mean per sample (all channels), last {live.CHART_WINDOW} steps"
    assert square["title"].startswith("Mean square E[x²] per sample")
    assert mean["encoding"]["y"]["title"] == "output mean (not 0)" and square["encoding"]["y"]["title"] == "mean square"
    rows = mean["datasets"]["stream"]
    assert set(rows["series"]) == {"batch (noisy)", "true population"} and (rows["value"] > 0.9).all()
