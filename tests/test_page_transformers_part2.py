"""The Transformers page's Stability and Which-norm tabs in AppTest, on tiny settings from the
URL: the sweep fills in, Stop keeps the finished points, controls at their extremes say what to
change; the S-curves show first, the five norms train on demand with their tables."""

from __future__ import annotations

import pytest

from normcore.lab.experiments.transformers import stability
from normcore.lab.experiments.transformers.part2_options import StabilityOptions
from tests.apptest_pages import open_page, texts

PAGE = "pages/transformers.py"
STABILITY, WHICH = "📈 Stability", "⚖️ Which norm"
TINY_SWEEP = dict(ts_rates="0.01,0.3", ts_steps=50, ts_warmup=0, ts_depth=1, ts_width=16, ts_heads=2, ts_context=8,
                  batch_size=4)
TINY_NORMS = dict(tn_steps=20, tn_depth=2, tn_width=16, tn_context=8, tn_sblock=2, batch_size=4)


def open_tab(title: str, **query):
    at = open_page(PAGE, timeout=120, transformers_tab=title, **query)
    assert not at.exception, at.exception
    return at


def test_stability_sweep_runs_and_draws_its_charts():
    at = open_tab(STABILITY, **TINY_SWEEP)
    assert not at.error, [e.value for e in at.error]
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert len(at.get("vega_lite_chart")) == 3
    assert "LR sensitivity is" in texts(at.markdown)
    assert len(at.dataframe[0].value) == 4 and len(at.dataframe[1].value) == 2


def test_a_sweep_cut_short_by_stop_keeps_its_finished_points():
    at = open_tab(STABILITY, ts_seed=1, **TINY_SWEEP)
    o = StabilityOptions(rates=("0.01", "0.3"), steps=50, warmup_steps=0, depth=1, width=16, heads=2, context=8,
                         seed=1, batch_size=4)
    finished = []
    sweep = stability.run_stability(o, cache=None, on_run=finished.append, stop=lambda: len(finished) >= 1)
    sweep.status, sweep.runs[-1][1].status = "running", "running"  # as a rerun finds it: cut mid-run
    at.session_state["ts_live"] = sweep
    at.button(key="ts_stop").click().run()
    assert not at.exception, at.exception
    assert "Stopped by you" in texts(at.warning)
    assert len(at.dataframe[0].value) == 1 and len(at.get("vega_lite_chart")) == 3  # the one finished run


def test_stability_controls_at_their_extremes_say_what_to_change():
    at = open_tab(STABILITY, ts_rates="0.001,0.003,0.01,0.03,0.1,0.3", ts_zloss="true", ts_steps=1000, ts_width=128,
                  ts_depth=8, ts_context=128)
    assert any("fewer steps" in e.value for e in at.error)
    assert at.button[0].disabled
    at = open_tab(STABILITY, ts_rates="0.1", **{k: v for k, v in TINY_SWEEP.items() if k != "ts_rates"})
    assert any("at least two learning rates" in e.value for e in at.error)


def test_which_norm_shows_the_s_curves_first_then_trains_the_five_norms():
    at = open_tab(WHICH, **TINY_NORMS)
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("vega_lite_chart")) == 1 and "per-token input std" in texts(at.markdown)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert len(at.get("vega_lite_chart")) == 3
    summary, dyt, times, leaks = (d.value for d in at.dataframe)
    assert len(summary) == 5 and len(dyt) == 5 and len(times) == 3
    assert (leaks.loc[0, ["future_leak", "batch_leak"]] > 0).all() and (leaks.loc[1:, ["future_leak", "batch_leak"]] == 0).all().all()


@pytest.mark.parametrize("query, words", [
    (dict(tn_sblock=8, tn_depth=2), "past the model"),
    (dict(tn_steps=1000, tn_width=128, tn_depth=8, tn_context=128), "fewer steps"),
])
def test_which_norm_controls_at_their_extremes_say_what_to_change(query, words):
    at = open_tab(WHICH, **{**TINY_NORMS, **query})
    assert any(words in e.value for e in at.error) and not at.get("vega_lite_chart")
