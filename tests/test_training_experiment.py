"""The training page's experiment: configs in and out, caps, variants, live recording, sweeps,
and the charts built from what comes back."""

import dataclasses
import json
import math
import threading
import time

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from normcore.lab import datasets, devices, limits, models
from normcore.lab.experiments import training as T
from normcore.lab.experiments.training import variants as variants_module
from normcore.lab.viz import training_charts as charts
from tests.vega import validated

CPU = devices.all_targets()[0].key  # 'cpu:1t' on a multi-core machine, else 'cpu'
TINY = T.RunConfig(width=8, depth=2, epochs=1, batch_size=64, norms=("batch", "none"), devices=("cpu",), lr=0.1)


# -- configuration files ------------------------------------------------------------------


def test_json_round_trip_and_key():
    config = T.RunConfig(mode="lr_sweep", momentum=None, norms=("group", "layer"), devices=(CPU,), eps=1e-3)
    assert T.from_json(config.to_json()) == config
    assert T.from_json(config.to_json().encode()) == config
    body = json.loads(config.to_json())
    assert body["kind"] == "normcore-training-run" and body["momentum"] is None
    assert config.key != T.RunConfig().key


def test_missing_fields_take_defaults():
    assert T.from_json('{"epochs": 2}') == T.RunConfig(epochs=2)


@pytest.mark.parametrize("text,words", [
    ("[1, 2]", "JSON object"),
    ("{not json", "not valid JSON"),
    ('{"lr": NaN}', "not valid JSON: NaN"),
    ('{"lr": Infinity}', "Infinity"),
    ('{"epochs": 31}', f"epochs: 31 is outside the allowed range 1 to {limits.MAX_EPOCHS}"),
    ('{"width": 100000}', "width: 100000 is outside"),
    ('{"batch_size": 1}', "batch_size: 1 is outside the allowed range 2"),
    ('{"epochs": true}', "epochs: expected a number, got bool"),
    ('{"epochs": "3"}', "epochs: expected a number, got str"),
    ('{"epochs": 2.5}', "epochs: expected a whole number"),
    ('{"eps": 2e-5}', "eps: expected one of"),
    ('{"norms": ["batch", "batch"]}', "norms: lists a name twice"),
    ('{"norms": ["weight"]}', "norms: unknown 'weight'"),
    ('{"norms": []}', "norms: must name at least one"),
    ('{"devices": ["cuda:9"]}', "devices: Device 'cuda:9' is not available"),
    ('{"devices": "cpu"}', "devices: expected a list"),
    ('{"mode": "grid"}', "mode: expected one of compare"),
    ('{"momentum": null, "seed": null}', "seed: must not be null"),
    ('{"kind": "something-else"}', "not a training-run configuration"),
    ('{"__class__": "os.system"}', "Unknown field(s): '__class__'"),
])
def test_bad_files_are_refused_field_by_field(text, words):
    with pytest.raises(T.ConfigError) as info:
        T.from_json(text)
    assert any(words in m for m in info.value.messages), info.value.messages


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(T.ConfigError) as info:
        T.from_json('{"epochs": 0, "lr": -1, "model": "rnn"}')
    assert [m.split(":")[0] for m in info.value.messages] == ["model", "lr", "epochs"]


def test_oversized_file_is_refused_before_parsing():
    big = '{"epochs": 1, "pad": "' + "x" * limits.MAX_CONFIG_BYTES + '"}'
    with pytest.raises(T.ConfigError, match=f"at most {limits.MAX_CONFIG_BYTES:,} bytes"):
        T.from_json(big)


# -- planning: variants, skips, caps ----------------------------------------------------


def test_compare_is_norms_times_devices():
    targets = [t.key for t in devices.all_targets()]
    variants, problems = T.plan(T.RunConfig(norms=("batch", "layer"), devices=tuple(targets)))
    assert [(v.norm, v.device) for v in variants] == [(n, d) for n in ("batch", "layer") for d in targets]
    assert not [p for p in problems if p.level == "error"]


def test_impossible_norms_are_skipped_with_a_reason():
    variants, problems = T.plan(T.RunConfig(model="mlp", norms=("instance", "group", "batch"), width=10, num_groups=4))
    assert [v.norm for v in variants] == ["batch"]
    text = " ".join(p.message for p in problems)
    assert "Skipped InstanceNorm" in text and "Skipped GroupNorm" in text and "1, 2, 5, 10" in text
    _, problems = T.plan(T.RunConfig(model="mlp", norms=("instance",)))
    assert any(p.level == "error" and "Nothing to train" in p.message for p in problems)


@pytest.mark.parametrize("changes,words", [
    (dict(model="cnn", width=256, depth=6, epochs=30), "multiply-accumulates"),
    (dict(mode="batch_sweep", epochs=30), "optimizer steps"),
    (dict(batch_size=2, epochs=30, norms=("none", "batch", "layer", "group")), "optimizer steps"),
])
def test_caps_block_a_run_with_a_message(changes, words):
    errors = T.errors(T.RunConfig(**changes))
    assert any(words in e and "cap" in e for e in errors), errors
    with pytest.raises(T.ConfigError, match=words):
        T.run(T.RunConfig(**changes))


def test_variant_cap(monkeypatch):
    monkeypatch.setattr(limits, "MAX_VARIANTS", 3)
    assert any("cap of 3" in e for e in T.errors(T.RunConfig(norms=("none", "batch", "layer", "group"))))


def test_sweeps_expand_to_their_grids():
    sweep, _ = T.plan(T.RunConfig(mode="batch_sweep", lr=0.1, epochs=2))
    assert {v.norm for v in sweep} == {"batch", "group", "layer", "rms", "none"} and len(sweep) == 5 * len(T.BATCH_SWEEP_SIZES)
    by_size = {v.batch_size: v for v in sweep if v.norm == "batch"}
    assert by_size[2].lr == pytest.approx(0.1 * 2 / 32) and by_size[256].lr == 0.1
    assert by_size[2].epochs == 2 and 1347 // 256 * by_size[256].epochs >= T.MIN_SWEEP_STEPS
    rates, _ = T.plan(T.RunConfig(mode="lr_sweep"))
    assert [(v.norm, v.lr) for v in rates] == [(n, r) for n in ("batch", "none") for r in T.LR_SWEEP_RATES]


# -- running --------------------------------------------------------------------------


def test_compare_run_records_every_variant():
    config = T.with_settings(TINY, devices=[t.key for t in devices.all_targets()])
    seen = []
    live = T.run(config, on_progress=lambda lv: seen.append(lv.fraction))
    assert live.status == "finished" and live.fraction == 1.0 and seen[-1] == 1.0
    assert seen == sorted(seen)  # progress only goes forward
    summary = live.summary()
    assert len(summary) == 2 * len(config.devices) and set(summary["status"]) == {"finished"}
    baseline = summary[summary["device"] == devices.all_targets()[0].key]
    assert (baseline["speedup_vs_cpu"] == 1.0).all()
    history = live.history()
    assert set(history["variant"]) == set(range(len(summary)))
    table = T.results_table(summary)
    assert list(table.columns) == list(T.RESULT_COLUMNS.values()) and len(table) == len(summary)


def test_an_interrupted_run_keeps_what_it_recorded():
    live = T.LiveRun(TINY, [])

    class Interrupted(Exception):
        pass

    def interrupt(lv):
        if len(lv.rows) >= 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        T.run(TINY, live, on_progress=interrupt)
    assert live.running and len(live.rows) == 3
    live.mark_interrupted("Stopped by you.")
    assert live.status == "stopped" and live.message == "Stopped by you."
    summary = live.summary()
    assert list(summary["status"]) == ["stopped"] and summary["steps"].iloc[0] == live.rows[-1]["step"]
    cache = T.FinishedTrainingRuns()
    cache.put(live)
    assert cache.get(TINY) is None  # a partial run is never served as the result


def test_stop_flag_stops_between_steps():
    calls = []
    live = T.run(TINY, stop=lambda: len(calls) > 0, on_progress=calls.append)
    assert live.status == "stopped" and "Stopped by the user" in live.message
    assert len(live.summary()) == 1


def test_result_cache_is_a_bounded_lru():
    cache = T.FinishedTrainingRuns(max_entries=2)
    runs = [T.LiveRun(T.RunConfig(seed=i), [], status="finished") for i in range(3)]
    for r in runs[:2]:
        cache.put(r)
    assert cache.get(T.RunConfig(seed=0)) is runs[0]  # now most recent
    cache.put(runs[2])
    assert len(cache) == 2 and cache.get(T.RunConfig(seed=1)) is None and cache.get(T.RunConfig(seed=0)) is runs[0]


def test_short_sweeps(monkeypatch):
    monkeypatch.setattr(variants_module, "BATCH_SWEEP_SIZES", (8, 64))
    monkeypatch.setattr(variants_module, "MIN_SWEEP_STEPS", 30)
    live = T.run(T.with_settings(TINY, mode="batch_sweep", devices=[CPU]))  # one thread: steady on a busy machine
    summary = live.summary()
    assert len(summary) == 10 and set(summary["batch_size"]) == {8, 64}
    rms = summary[summary["normalization"] == "RMSNorm"]
    assert list(rms["batch_size"]) == [8, 64] and rms["test_accuracy"].between(0, 1).all()
    assert summary.loc[summary["batch_size"] == 64, "epochs"].iloc[0] == math.ceil(30 / (1347 // 64))
    monkeypatch.setattr(variants_module, "LR_SWEEP_RATES", (0.3, 1e15))
    live = T.run(T.with_settings(TINY, mode="lr_sweep", width=16, epochs=2, devices=[CPU]))
    summary = live.summary()
    assert summary.loc[summary["lr"] == 1e15, "diverged"].all()
    largest = T.largest_trainable_lr(summary, T.chance_accuracy(live.config)).set_index("norm")
    for norm, group in summary.groupby("norm"):
        ok = group[(~group["diverged"]) & (group["test_accuracy"] >= 0.55)]
        expected = ok["lr"].max() if len(ok) else math.nan
        assert largest.loc[norm, "largest_lr"] == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_rmsnorm_trains_alike_with_normcore_and_torch_nn(model):
    # Oracle: the same comparison with torch.nn.RMSNorm in the model (impl="torch").
    config = T.with_settings(TINY, model=model, norms=["rms", "layer"], epochs=1, batch_size=128, lr=0.05, devices=[CPU])
    ours, theirs = (T.run(T.with_settings(config, impl=impl)) for impl in ("normcore", "torch"))
    a, b = ours.history(), theirs.history()
    assert list(a["label"].unique()) == ["RMSNorm", "LayerNorm"] and len(a) == len(b)
    assert (a["loss"] - b["loss"]).abs().max() <= 1e-4
    summary = ours.summary().set_index("normalization")
    assert summary.loc["RMSNorm", "status"] == "finished" and 0.1 < summary.loc["RMSNorm", "test_accuracy"] <= 1
    # RMSNorm does not centre: it is not LayerNorm under another name.
    assert (a.loc[a["norm"] == "rms", "loss"].to_numpy() != a.loc[a["norm"] == "layer", "loss"].to_numpy()).any()


def test_every_normalization_has_its_own_colour():
    assert set(charts.NORM_COLORS) == set(models.NORMS)
    assert len(set(charts.NORM_COLORS.values())) == len(charts.NORM_COLORS)


def test_largest_trainable_lr_by_hand():
    summary = pd.DataFrame(dict(
        norm=["batch"] * 4 + ["none"] * 4, lr=[0.01, 0.1, 1.0, 10.0] * 2,
        test_accuracy=[0.90, 0.95, 0.80, math.nan, 0.60, 0.50, 0.10, math.nan],
        diverged=[False, False, False, True, False, False, False, True]))
    out = T.largest_trainable_lr(summary, chance=0.1).set_index("norm")
    assert out.loc["batch", "largest_lr"] == 1.0 and out.loc["none", "largest_lr"] == 0.01
    assert T.largest_trainable_lr(pd.DataFrame(), 0.1).empty  # before any variant finished
    assert T.trains(0.55, False, 0.1) and not T.trains(0.549, False, 0.1) and not T.trains(0.99, True, 0.1)


def test_paper_numbers_are_wu_and_he_2018_table():
    paper = T.paper_group_norm_errors()
    bn = paper[paper["norm"] == "batch"].set_index("batch_size")["top1_error"]
    gn = paper[paper["norm"] == "group"].set_index("batch_size")["top1_error"]
    assert bn.to_dict() == {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7}
    assert gn.to_dict() == {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1}
    at32 = paper[paper["batch_size"] == 32].set_index("norm")["top1_error"].to_dict()
    assert at32 == {"batch": 23.6, "group": 24.1, "layer": 25.3, "instance": 28.4}


# -- charts ---------------------------------------------------------------------------


def test_charts_from_a_real_run_and_from_nothing():
    live = T.run(TINY)
    history, summary = live.history(), live.summary()
    empty = T.LiveRun(TINY, []).history()
    for build in (charts.loss_chart, charts.accuracy_chart, lambda h: charts.percentile_chart(h, 2)):
        spec = build(history)
        assert any(len(frame) for frame in spec["datasets"].values())
        validated(spec)
        validated(build(empty))
    spec = validated(charts.percentile_chart(history, 2))
    values = spec["datasets"]["percentiles"]
    assert spec["encoding"]["y"]["field"] == "value" and len(values) == 3 * len(history[history["norm"].isin(["batch", "none"])])
    assert {v["normalization"] for v in values} == {"BatchNorm", "No norm"}
    assert {v["percentile"] for v in values} == {"15th", "50th (median)", "85th"}
    validated(charts.batch_sweep_chart(summary))
    validated(charts.lr_sweep_chart(summary, T.largest_trainable_lr(summary, 0.1)))
    validated(charts.paper_chart(T.paper_group_norm_errors()))
    assert charts.loss_chart(history)["encoding"]["color"]["field"] == "normalization"
    for mode in T.MODES:  # what the page draws live, in every mode (and before anything finished)
        for run in (live, T.LiveRun(T.with_settings(TINY, mode=mode), [])):
            frames = run.chart_frames() | {"mode": mode}
            assert [validated(c) for c in charts.live_charts(**frames)]


def test_live_charts_reuse_one_template_and_fix_the_legend_from_the_plan():
    config = T.with_settings(TINY, norms=["none", "batch", "layer"])
    live = T.LiveRun(config, T.plan(config)[0])
    T.run(config, live, stop=iter([False] * 5 + [True] * 10**6).__next__)  # stopped inside the first variant
    assert set(live.history()["norm"]) == {"none"}
    charts.loss_chart(live.history().iloc[:0], **{k: v for k, v in live.chart_frames().items() if k in ("epochs", "norms", "devices")})
    before = charts._loss_template.cache_info()
    loss, accuracy = charts.live_charts(**live.chart_frames())
    assert charts._loss_template.cache_info().hits == before.hits + 1  # the same shape: no new Altair spec
    # All three planned norms are in the legend although only one has data so far, in their colours.
    assert loss["encoding"]["color"]["scale"] == {"domain": ["No norm", "BatchNorm", "LayerNorm"],
                                                  "range": [charts.NORM_COLORS[n] for n in ("none", "batch", "layer")]}
    assert accuracy["layer"][0]["encoding"]["color"]["scale"] == loss["encoding"]["color"]["scale"]
    # The template holds no data: only the datasets differ between two redraws.
    grown = live.history()
    first = charts.loss_chart(grown.iloc[:1], norms=("none",), devices=())
    second = charts.loss_chart(grown, norms=("none",), devices=())
    assert {k: v for k, v in first.items() if k != "datasets"} == {k: v for k, v in second.items() if k != "datasets"}
    assert len(first["datasets"]["loss"]) == 1 and len(second["datasets"]["loss"]) == len(grown)
    assert "view" not in first.get("config", {})  # Streamlit sizes the chart, not Altair's default 300 px
    # The epoch axis spans the planned run; runs of any length share the template.
    before = charts._accuracy_template.cache_info()
    for epochs in (3, 5):
        loss, accuracy = charts.loss_chart(grown, epochs, ("none",), ()), charts.accuracy_chart(grown, epochs, ("none",), ())
        assert [part["encoding"]["x"]["scale"] for part in [loss, *accuracy["layer"]]] == [{"domain": [0, epochs]}] * 3
        validated(loss), validated(accuracy)
    assert charts._accuracy_template.cache_info().misses <= before.misses + 1
    assert "scale" not in charts.loss_chart(grown, None, ("none",), ())["encoding"]["x"]  # no plan: the axis fits the data


def test_progress_text_says_what_the_run_is_doing():
    live = T.LiveRun(TINY, T.plan(TINY)[0])
    assert live.progress_text().startswith("Starting · ")  # nothing reported yet
    live.phase = "Warming up on CPU"
    assert live.progress_text().startswith("Warming up on CPU · ")
    seen = []
    T.run(TINY, live, on_progress=lambda lv: seen.append(lv.progress_text()))
    assert any(text.startswith("Training 1/2: BatchNorm · ") for text in seen)
    assert any(text.startswith("Training 2/2: No norm · ") for text in seen)
    assert live.progress_text().startswith("Finished · ") and seen[-1] == live.progress_text()


PAGE_VALUES = st.fixed_dictionaries({
    "mode": st.sampled_from(T.MODES), "dataset": st.sampled_from(datasets.DATASETS), "separation": st.floats(0, 20),
    "model": st.sampled_from(models.MODEL_KINDS), "width": st.integers(1, limits.MAX_WIDTH),
    "depth": st.integers(1, limits.MAX_DEPTH), "activation": st.sampled_from(list(models.ACTIVATIONS)),
    "probe_layer": st.integers(1, limits.MAX_DEPTH),
    "norms": st.lists(st.sampled_from(models.NORMS), min_size=1, max_size=limits.MAX_VARIANTS, unique=True),
    "impl": st.sampled_from(models.IMPLS), "lr": st.floats(1e-6, 100), "epochs": st.integers(1, limits.MAX_EPOCHS),
    "optimizer": st.sampled_from(list(T.OPTIMIZERS)),
    "devices": st.lists(st.sampled_from([t.key for t in devices.all_targets()]), min_size=1, unique=True),
})


@settings(max_examples=80, deadline=None)
@given(PAGE_VALUES)
def test_url_round_trip_carries_every_page_field(values):
    defaults = {name: T.RunConfig().values()[name] for name in T.URL_NAMES}  # (lists, as the widgets hold them)
    query = T.to_query(values, defaults)
    assert all(isinstance(v, str) for v in query.values())
    parsed, messages = T.from_query(query)
    assert messages == []
    restored = defaults | {name: list(v) if isinstance(v, tuple) else v for name, v in parsed.items()}
    assert restored == values
    assert set(query) == {T.URL_NAMES[n] for n in values if values[n] != defaults[n]}  # only what differs


# -- the schema, divergence as data, one training at a time ------------------------------


def test_the_schema_holds_every_field_at_run_configs_defaults():
    assert T.SCHEMA.names == tuple(f.name for f in dataclasses.fields(T.RunConfig))
    assert T.RunConfig(**T.SCHEMA.defaults()) == T.RunConfig()
    assert T.widget_form(T.SCHEMA.defaults()) == T.RunConfig().values()


def test_url_names_caps_and_shared_fields():
    assert T.URL_NAMES == {"mode": "mode", "dataset": "data", "separation": "separation", "model": "model",
                           "width": "width", "depth": "depth", "activation": "activation", "probe_layer": "probe",
                           "norms": "norms", "impl": "impl", "lr": "lr", "epochs": "epochs", "optimizer": "optimizer",
                           "devices": "devices"}
    high = {name: T.SCHEMA[name].high for name in ("width", "depth", "epochs", "batch_size")}
    assert high == {"width": 256, "depth": 6, "epochs": 30, "batch_size": 512}  # limits' MAX_* caps
    assert T.SCHEMA["batch_size"].low == 2 and T.SCHEMA["norms"].max_items == T.SCHEMA["devices"].max_items == 10
    assert T.SHARED_FIELDS == ("batch_size", "momentum", "eps", "num_groups", "seed")
    assert T.from_json('{"devices": [" cpu "]}').devices == ("cpu",)  # canonical device keys


def test_diverged_variants_are_read_from_the_flag_not_the_wording():
    summary = pd.DataFrame(dict(diverged=[False, True, False], note=["Diverged? Not this one.", "The loss became NaN.", ""]))
    assert T.diverged_notes(summary) == ["The loss became NaN."]
    assert T.diverged_notes(T.LiveRun(TINY, []).summary()) == []


def test_overlapping_runs_leave_the_thread_count_as_it_was():
    """Two sessions training a 1-thread target at overlapping times: the experiment trains
    one variant at a time, so the server is not left at 1 thread (torch's count is
    process-wide; a fresh thread, like a server's next script run, reads it)."""
    one = next((t for t in devices.all_targets() if t.threads == 1), None)
    if one is None:
        pytest.skip("needs a machine with 2 or more CPU threads")
    before = fresh_thread_count()
    failures, started = [], []

    def session(seed: int) -> None:
        slept = []

        def slow_first_report(live):  # each session's first report takes a while
            if live.rows and not slept:
                if not started:  # the second session starts now (a new thread, like a server's script run)
                    started.append(threading.Thread(target=session, args=(seed + 1,)))
                    started[0].start()
                slept.append(time.sleep(0.5))

        try:
            T.run(T.with_settings(TINY, devices=[one.key], norms=["batch"], seed=seed), on_progress=slow_first_report)
        except Exception as exc:  # collected: asserted in the main thread
            failures.append(exc)

    first = threading.Thread(target=session, args=(101,))
    first.start()
    first.join()
    started[0].join()
    assert failures == []
    assert fresh_thread_count() == before


def fresh_thread_count() -> int:
    seen = {}
    probe = threading.Thread(target=lambda: seen.update(n=torch.get_num_threads()))
    probe.start()
    probe.join()
    return seen["n"]
