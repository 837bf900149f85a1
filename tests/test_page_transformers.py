"""The Transformers page in AppTest: the first view and its sentence, every control at its
extremes (caps and sidebar limits say what to change), the depth sweep on demand with Stop,
the warm-up runs (tiny), a Stop that keeps the finished runs, the cache, and the URL both ways."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from normcore.lab import limits
from normcore.lab.experiments.transformers import warmup as W
from normcore.lab.experiments.transformers.options import NORM_NOTE, InitOptions, WarmupOptions
from normcore.lab.settings import FIELDS as SIDEBAR
from normcore.lab.transformer_norms import NORMS
from tests import apptest_pages
from tests.apptest_pages import chart_rows, texts

PAGE = "pages/transformers.py"
WARMUP_TAB = "🔥 Warm-up"
SMALL_INIT = dict(ti_width=16, ti_heads=2, ti_context=8)  # a backward pass in milliseconds
TINY_WARMUP = dict(tw_depth=1, tw_steps=10, tw_warmup=5, tw_width=16, tw_heads=2, tw_context=8)


def open_page(**query) -> AppTest:
    return apptest_pages.open_page(PAGE, 120, **query)


def button(at: AppTest, start: str):
    return next(b for b in at.main.button if b.label.startswith(start))


def test_first_view_is_the_default_depth_with_its_sentence_and_the_norm_note():
    at = open_page()
    assert not at.error and len(at.get("vega_lite_chart")) == 1
    rows = chart_rows(at)
    assert sorted(set(rows["placement_label"])) == ["peri-LN", "post-LN", "pre-LN"] and rows["block"].max() == 12
    post = rows[(rows["placement_label"] == "post-LN") & (rows["block"] == 12)]["ffn_grad_norm"].item()
    said = texts(at.markdown)
    assert f"At depth 12 (Xavier-normal, N(0, 1) embeddings init)" in said and f"{post:.3g} with post-LN" in said
    assert NORM_NOTE in texts(at.caption) and NORM_NOTE in texts(at.sidebar.caption)
    assert [w.key for w in at.sidebar.slider] == ["control_batch_size"]  # the shared controls that apply
    assert [w.key for w in at.sidebar.select_slider] == ["control_eps"]
    start = time.perf_counter()
    at.run()
    assert time.perf_counter() - start < 1.0  # cached (≤ 300 ms on a quiet machine: benchmarks.pages)


def test_init_controls_at_their_extremes_and_every_norm():
    at = open_page(**SMALL_INIT)
    at.slider(key="ti_depth").set_value(limits.MAX_TRANSFORMER_INIT_DEPTH).run()
    at.slider(key="ti_seeds").set_value(limits.MAX_TRANSFORMER_SEEDS).run()
    assert not at.error and chart_rows(at)["block"].max() == limits.MAX_TRANSFORMER_INIT_DEPTH
    at.slider(key="ti_width").set_value(limits.MAX_TRANSFORMER_WIDTH)
    at.slider(key="ti_context").set_value(limits.MAX_TRANSFORMER_CONTEXT).run()
    assert "over this server's cap" in texts(at.error) and not at.get("vega_lite_chart")
    for key, value in (("ti_depth", 2), ("ti_seeds", 1), ("ti_width", 8), ("ti_context", 8)):
        at.slider(key=key).set_value(value)
    at.select_slider(key="ti_heads").set_value(8)
    at.radio(key="ti_init").set_value("gpt2")
    at.radio(key="ti_impl").set_value("torch").run()
    for norm in NORMS:
        at.selectbox(key="ti_norm").set_value(norm).run()
        assert not at.exception and not at.error, (norm, texts(at.error))
        assert len(at.get("vega_lite_chart")) == 1 and "At depth 2 (GPT-2" in texts(at.markdown), norm
    at.sidebar.slider(key="control_batch_size").set_value(SIDEBAR["batch_size"].high).run()
    assert "over this page's cap of 128" in texts(at.error) and not at.get("vega_lite_chart")
    at.sidebar.slider(key="control_batch_size").set_value(1).run()
    assert "at least 2 sequences" in texts(at.error)
    at.sidebar.slider(key="control_batch_size").set_value(2)
    for eps in (min(SIDEBAR["eps"].options), max(SIDEBAR["eps"].options)):
        at.sidebar.select_slider(key="control_eps").set_value(eps).run()
        assert not at.error and len(at.get("vega_lite_chart")) == 1
    assert at.query_params["ti_init"] == "gpt2" and at.query_params["ti_heads"] == "8"


def test_the_depth_sweep_runs_on_demand_is_cached_and_stops(monkeypatch):
    at = open_page(ti_depth=6, **SMALL_INIT)
    assert "Against depth, and the two inits" in texts(at.subheader) and len(at.get("vega_lite_chart")) == 1
    button(at, "▶️ Run the depth sweep").click().run()
    assert not at.error and len(at.get("vega_lite_chart")) == 4
    said = texts(at.markdown)
    assert "post / pre goes from" in said and "The residual stream's mean norm per token, from block 1 to block 6" in said
    at.radio(key="ti_init").set_value("gpt2").run()  # the sweep runs both inits: not recomputed
    assert len(at.get("vega_lite_chart")) == 4
    button(at, "⏹️ Stop").click().run()
    assert "Stopped" in texts(at.warning) and len(at.get("vega_lite_chart")) == 1
    # A cap between this first view's work (4.6e7 multiply-accumulates) and the sweep's (3.4e8):
    monkeypatch.setattr(limits, "MAX_TRANSFORMER_INIT_MACS", 1e8)
    at.run()
    assert "over this server's cap" in texts(at.error) and button(at, "▶️ Run the depth sweep").disabled
    assert len(at.get("vega_lite_chart")) == 1  # the first view still shows


def warmup_tab(**query) -> AppTest:
    return open_page(transformers_tab=WARMUP_TAB, **query)


def test_the_four_warmup_runs_train_live_and_come_back_from_the_cache():
    at = warmup_tab(**TINY_WARMUP)
    assert "Press ▶️ Train the four runs" in texts(at.info) and W.PAPER_FINDING in texts(at.info)
    button(at, "▶️ Train the four runs").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["status"]) == ["finished"] * 4 and list(table["steps"]) == [10] * 4
    assert list(table["label"]) == ["post-LN, no warm-up", "post-LN, 5-step warm-up", "pre-LN, no warm-up",
                                    "pre-LN, 5-step warm-up"]
    curves = chart_rows(at)
    assert set(curves["label"]) == set(table["label"]) and curves["step"].max() == 10
    loss = table.set_index("label")["final_loss"]
    assert f"post-LN ends at training loss {loss['post-LN, no warm-up']:.2f} without warm-up" in texts(at.markdown)
    again = warmup_tab(**TINY_WARMUP)  # another session, same settings: from the cache, nothing pressed
    assert again.dataframe[0].value.equals(table)
    start = time.perf_counter()
    again.run()
    assert time.perf_counter() - start < 1.0


def test_a_stop_keeps_the_finished_runs():
    # A Stop click reruns the page while it trains, cutting the run short where its progress
    # callback next touches the page. Reproduce what that leaves, then click Stop.
    at = warmup_tab(tw_seed=7, **TINY_WARMUP)
    shared = at.session_state["lab_settings"]  # the sidebar's batch size and eps apply
    options = replace(at.session_state["tw_options"], batch_size=shared.batch_size, eps=shared.eps)
    live = W.WarmupComparison(options)

    class Interrupted(Exception):
        pass

    def cut_short(comparison):
        if len(comparison.runs) == 3 and comparison.runs[2].rows:
            raise Interrupted

    with pytest.raises(Interrupted):
        W.run_warmup(options, live=live, on_progress=cut_short)
    at.session_state["tw_live"] = live
    button(at, "⏹️ Stop").click().run()
    assert not at.exception and "Stopped by you." in texts(at.warning)
    assert list(at.dataframe[0].value["status"]) == ["finished", "finished", "stopped"]
    assert len(at.get("vega_lite_chart")) == 1 and "needs all four runs to finish" in texts(at.markdown)


def test_warmup_controls_at_their_extremes_say_what_to_change():
    at = warmup_tab(**TINY_WARMUP)
    at.slider(key="tw_warmup_steps").set_value(limits.MAX_TRANSFORMER_STEPS).run()
    assert "more than the 10 training steps" in texts(at.error) and button(at, "▶️ Train").disabled
    at.slider(key="tw_steps").set_value(limits.MAX_TRANSFORMER_STEPS)
    at.slider(key="tw_depth").set_value(limits.MAX_TRANSFORMER_DEPTH)
    at.slider(key="tw_width").set_value(limits.MAX_TRANSFORMER_WIDTH)
    at.slider(key="tw_context").set_value(limits.MAX_TRANSFORMER_CONTEXT).run()
    assert "4 runs × 1000 steps" in texts(at.error) and button(at, "▶️ Train").disabled
    for key, value in (("tw_steps", 10), ("tw_warmup_steps", 1), ("tw_depth", 1), ("tw_width", 8), ("tw_context", 8)):
        at.slider(key=key).set_value(value)
    at.select_slider(key="tw_lr").set_value(max(WarmupOptions.SCHEMA["lr"].options))
    at.select_slider(key="tw_clip").set_value(max(WarmupOptions.SCHEMA["clip"].options))
    at.select_slider(key="tw_heads").set_value(8)
    at.selectbox(key="tw_norm").set_value("dyt")
    at.radio(key="tw_impl").set_value("torch")
    at.number_input(key="tw_seed").set_value(2**31 - 1).run()
    assert not at.error and not button(at, "▶️ Train").disabled
    button(at, "▶️ Train").click().run()
    assert not at.exception and len(at.dataframe[0].value) == 4
    assert at.session_state["tw_live"].options == WarmupOptions(
        steps=10, warmup_steps=1, depth=1, width=8, context=8, lr=0.05, clip=5.0, heads=8, norm="dyt", impl="torch",
        seed=2**31 - 1, eps=at.session_state["lab_settings"].eps)


def test_the_url_carries_both_tabs_options_both_ways():
    at = warmup_tab(tw_lr="0.001", tw_depth="6", tw_clip="1", ti_depth="3", ti_init="gpt2", tw_steps="oops")
    assert "Ignored URL parameter tw_steps='oops'" in texts(at.warning)
    assert at.session_state["tw_options"] == WarmupOptions(lr=1e-3, depth=6, clip=1.0)
    at.slider(key="tw_depth").set_value(4).run()  # back to its default: gone from the URL
    url = dict(at.query_params)
    assert "tw_depth" not in url and url["tw_lr"] == "0.001" and "tw_steps" not in url
    assert url["ti_depth"] == "3" and url["ti_init"] == "gpt2"  # the other tab's, kept
    again = open_page(**url)
    assert again.session_state["tw_options"] == at.session_state["tw_options"]
    init_tab = open_page(**{k: v for k, v in url.items() if k != "transformers_tab"})
    assert init_tab.session_state["ti_options"] == InitOptions(depth=3, init="gpt2")
    assert "At depth 3 (GPT-2" in texts(init_tab.markdown)
