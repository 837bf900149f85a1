"""The training page in AppTest: each mode runs, Stop keeps partial results, caps explain
themselves, downloads hold the right content, and no control's extreme raises."""

import io
import json
import posixpath

import math

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest, app_test

from tests import apptest_pages

from normcore.lab import devices, limits
from normcore.lab.experiments import training as T
from normcore.lab.experiments.training import variants as variants_module
from pages.shared import redraw


def open_page() -> AppTest:
    return apptest_pages.open_page("pages/training.py", timeout=120)


def tiny(at: AppTest, norms=("batch", "none")) -> AppTest:
    at.slider(key="training_width").set_value(8)
    at.slider(key="training_epochs").set_value(1)
    at.multiselect(key="training_norms").set_value(list(norms))
    at.multiselect(key="training_devices").set_value([devices.all_targets()[0].key])
    return at.run()


def button(at: AppTest, label: str):
    return next(b for b in at.button if label in b.label)


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def chart_rows(at: AppTest, title_start: str) -> pd.DataFrame:
    """The rows the chart whose title starts so draws (its Arrow datasets, concatenated)."""
    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        title = spec.get("title", "")
        if str(title.get("text", "") if isinstance(title, dict) else title).startswith(title_start):
            return pd.concat([pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in element.proto.datasets])
    raise AssertionError(f"no chart titled {title_start!r}")


class RecordingStorage(MemoryMediaFileStorage):
    """AppTest's in-memory media storage (a new one each run), remembered so a test can read
    the files the page's download buttons point at."""

    made: list = []

    def __init__(self, media_endpoint: str):
        super().__init__(media_endpoint)
        RecordingStorage.made.append(self)


@pytest.fixture
def media(monkeypatch):
    RecordingStorage.made = []
    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", RecordingStorage)
    return RecordingStorage.made


def downloads(at: AppTest, storages: list) -> dict[str, bytes]:
    """Each download button's label -> the bytes it serves (the latest run's storage)."""
    storage = storages[-1]
    return {d.proto.label: storage.get_file(posixpath.basename(d.proto.url)).content for d in at.get("download_button")}


def test_page_opens_with_defaults_and_says_whether_a_gpu_exists():
    at = open_page()
    info = texts(at.info)
    assert ("No GPU was found" in info) == (not devices.accelerators())
    assert not button(at, "Run").disabled
    assert at.multiselect(key="training_norms").value == ["none", "batch", "layer", "group", "rms"]


def test_compare_run_shows_curves_table_percentiles_and_caches():
    at = tiny(open_page())
    button(at, "Run").click().run()
    assert not at.exception and not at.error
    live = at.session_state["training_live"]
    assert live.status == "finished" and len(live.variants) == 2
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    titles = [str(s.get("title", "")) for s in specs]
    assert any("Training loss" in t for t in titles) and any("Accuracy" in t for t in titles)
    assert any("Input of the nonlinearity" in t for t in titles)
    table = at.dataframe[0].value
    assert list(table["Variant"]) == ["BatchNorm", "No norm"] and table["Test accuracy"].between(0, 1).all()
    # The same settings again: served from the cache (the very same record, no retraining).
    button(at, "Run").click().run()
    assert at.session_state["training_live"] is live and not at.exception


def test_download_contents_are_the_table_and_a_config_that_reloads(media):
    at = tiny(open_page())
    button(at, "Run").click().run()
    live = at.session_state["training_live"]
    files = downloads(at, media)
    csv = next(content for label, content in files.items() if "CSV" in label)
    config = next(content for label, content in files.items() if "JSON" in label)
    # The CSV parses to the table the page shows; the JSON reloads, through the upload's parser, to the run's config.
    shown = at.dataframe[0].value
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(csv), keep_default_na=False), shown.reset_index(drop=True), check_dtype=False)
    assert list(shown["Variant"]) == ["BatchNorm", "No norm"] and list(shown.columns[:3]) == ["Variant", "Normalization", "Device"]
    assert T.from_upload(config) == live.config and live.config.width == 8 and live.config.norms == ("batch", "none")


def test_uploading_a_config_reruns_that_experiment():
    config = T.RunConfig(width=8, epochs=1, norms=("layer",), devices=(devices.all_targets()[0].key,), lr=0.05, seed=3)
    at = open_page()
    at.get("file_uploader")[0].set_value(("run.json", config.to_json().encode(), "application/json"))
    at.run()
    assert not at.exception and not at.error
    live = at.session_state["training_live"]
    assert live.config == config and live.status == "finished"
    assert at.slider(key="training_width").value == 8 and at.number_input(key="training_lr").value == 0.05


@pytest.mark.parametrize("content,words", [
    (b'{"epochs": 99, "model": "rnn"}', "epochs: 99 is outside"),
    (b"\xff\xfe not json", "not valid JSON"),
    (b"{" + b" " * (limits.MAX_CONFIG_BYTES + 1) + b"}", "at most"),
])
def test_bad_uploads_are_explained_and_the_page_keeps_working(content, words):
    at = open_page()
    at.get("file_uploader")[0].set_value(("bad.json", content, "application/json"))
    at.run()
    assert not at.exception
    assert words in texts(at.error)
    assert "training_live" not in at.session_state and not button(at, "Run").disabled


def test_batch_sweep_mode(monkeypatch):
    monkeypatch.setattr(variants_module, "BATCH_SWEEP_SIZES", (8, 64))
    monkeypatch.setattr(variants_module, "MIN_SWEEP_STEPS", 10)
    at = tiny(open_page())
    at.radio(key="training_mode").set_value("batch_sweep").run()
    button(at, "Run").click().run()
    assert not at.exception
    live = at.session_state["training_live"]
    assert live.status == "finished" and len(live.summary()) == 10  # 5 normalizations × 2 batch sizes
    titles = " ".join(str(json.loads(c.proto.spec).get("title", "")) for c in at.get("vega_lite_chart"))
    assert "by batch size" in titles and "Wu & He 2018" in titles
    sweep = chart_rows(at, "This lab: final test accuracy by batch size")
    rms = sweep[sweep["normalization"] == "RMSNorm"]
    assert sorted(rms["batch_size"]) == [8, 64] and rms["test_accuracy"].between(0, 1).all()
    paper = at.dataframe[1].value
    assert paper.loc["BatchNorm", "2 images/GPU"] == "34.7" and paper.loc["GroupNorm", "2 images/GPU"] == "24.1"
    assert paper.loc["LayerNorm", "32 images/GPU"] == "25.3" and paper.loc["LayerNorm", "2 images/GPU"] == "—"
    assert "RMSNorm" not in paper.index and "no number for it" in texts(at.caption)  # as published: the paper predates it


def test_lr_sweep_mode_flags_divergence(monkeypatch):
    monkeypatch.setattr(variants_module, "LR_SWEEP_RATES", (0.1, 1e15))
    at = tiny(open_page())
    at.radio(key="training_mode").set_value("lr_sweep").run()
    button(at, "Run").click().run()
    assert not at.exception
    assert "Diverged at step" in texts(at.error)
    largest = at.dataframe[1].value
    assert list(largest["Normalization"]) == ["BatchNorm", "No norm"]
    assert "Largest learning rate that trains" in largest.columns


def test_rmsnorm_trains_in_the_mlp_and_the_cnn_at_the_batch_size_extremes_and_matches_torch_nn():
    at = tiny(open_page(), norms=("rms",))
    at.slider(key="control_batch_size").set_value(1).run()  # the training page's floor is 2
    assert "batch_size" in texts(at.error) and button(at, "Run").disabled
    accuracy = {}
    for model, batch_size, impl in (("mlp", 2, "normcore"), ("cnn", limits.MAX_TRAIN_BATCH_SIZE, "normcore"),
                                    ("cnn", limits.MAX_TRAIN_BATCH_SIZE, "torch")):
        at.selectbox(key="training_model").set_value(model)
        at.slider(key="control_batch_size").set_value(batch_size)
        at.radio(key="training_impl").set_value(impl).run()
        button(at, "Run").click().run()
        assert not at.exception and not at.error
        table = at.dataframe[0].value
        row = table[table["Normalization"] == "RMSNorm"]
        assert list(table["Variant"]) == ["RMSNorm"] and list(row["Batch size"]) == [batch_size]
        assert list(row["Status"]) == ["finished"] and math.isfinite(row["Test accuracy"].iloc[0])
        accuracy[(model, impl)] = row["Test accuracy"].iloc[0]
        assert at.session_state["training_live"].config.norms == ("rms",)
    # torch.nn.RMSNorm in the same model, same seed and batches: the same test accuracy.
    assert accuracy[("cnn", "normcore")] == pytest.approx(accuracy[("cnn", "torch")], abs=1 / 450)


def test_stop_keeps_the_partial_results():
    # A Stop click reruns the page while it trains, cutting the old run short where its
    # progress callback next touches the page. Reproduce what that leaves behind (a record
    # still marked running), then click Stop as the user would.
    at = tiny(open_page())
    at.number_input(key="control_seed").set_value(11).run()  # a seed no other test ran (nothing cached)
    config = T.RunConfig(width=8, epochs=1, norms=("batch", "none"), devices=(devices.all_targets()[0].key,), seed=11)

    class Interrupted(Exception):
        pass

    live = T.LiveRun(config, [])

    def cut_short(lv):
        if len(lv.rows) >= 5:
            raise Interrupted

    with pytest.raises(Interrupted):
        T.run(config, live, on_progress=cut_short)
    at.session_state["training_live"] = live
    button(at, "Stop").click().run()
    assert not at.exception
    assert live.status == "stopped" and "Stopped by you" in texts(at.warning)
    assert list(at.dataframe[0].value["Status"]) == ["stopped"]
    assert at.get("vega_lite_chart")  # the curves so far are still drawn


def test_stop_before_anything_trained():
    # Stop clicked while the first device was still warming up: nothing recorded yet.
    at = tiny(open_page())
    at.number_input(key="control_seed").set_value(12).run()
    config = T.RunConfig(width=8, epochs=1, norms=("batch", "none"), devices=(devices.all_targets()[0].key,), seed=12)
    live = T.LiveRun(config, T.plan(config)[0], phase="Warming up")
    at.session_state["training_live"] = live
    button(at, "Stop").click().run()
    assert not at.exception and live.status == "stopped"
    assert at.dataframe[0].value.empty and "Stopped by you" in texts(at.warning)


def test_caps_give_a_message_and_disable_run():
    at = open_page()
    at.selectbox(key="training_model").set_value("cnn")
    at.slider(key="training_width").set_value(limits.MAX_WIDTH)
    at.slider(key="training_depth").set_value(limits.MAX_DEPTH)
    at.slider(key="training_epochs").set_value(limits.MAX_EPOCHS)
    at.run()
    assert not at.exception and "cap" in texts(at.error)
    assert button(at, "Run").disabled


def test_no_exception_at_any_controls_extreme():
    at = open_page()
    at.selectbox(key="training_dataset").set_value("clusters").run()
    for key in ("training_width", "training_depth", "training_probe_layer", "training_epochs", "training_separation"):
        slider = at.slider(key=key)
        for value in (slider.min, slider.max):
            slider.set_value(value)
            at.run()
            assert not at.exception, (key, value)
    for key in ("training_lr",):
        for value in (1e-6, 100.0):
            at.number_input(key=key).set_value(value).run()
            assert not at.exception
    at.multiselect(key="training_norms").set_value([]).run()
    assert not at.exception and button(at, "Run").disabled
    at.multiselect(key="training_devices").set_value([]).run()
    assert not at.exception and "devices" in texts(at.error)
    at.multiselect(key="training_devices").set_value([devices.all_targets()[0].key])
    at.multiselect(key="training_norms").set_value(["instance"]).run()  # MLP: skipped with a reason
    assert not at.exception and "InstanceNorm" in texts(at.warning)
    at.slider(key="control_batch_size").set_value(1).run()
    assert not at.exception and "batch_size" in texts(at.error)
    at.slider(key="control_batch_size").set_value(limits.MAX_TRAIN_BATCH_SIZE).run()
    assert not at.exception


def test_a_shared_link_sets_the_controls_and_the_url_follows_them():
    cpu = devices.all_targets()[0].key
    at = apptest_pages.open_page("pages/training.py", timeout=120, model="cnn", epochs="2", norms="batch,instance",
                                 lr="0.05", devices=cpu, batch_size="16")
    assert at.selectbox(key="training_model").value == "cnn" and at.slider(key="training_epochs").value == 2
    assert at.multiselect(key="training_norms").value == ["batch", "instance"]
    assert at.number_input(key="training_lr").value == 0.05 and at.multiselect(key="training_devices").value == [cpu]
    assert at.slider(key="control_batch_size").value == 16  # a shared control, under its own name
    assert not at.warning and not at.exception
    # The URL holds exactly what differs from the defaults, so copying it shares this view.
    at.slider(key="training_epochs").set_value(3).run()  # back to the default: gone from the URL
    at.selectbox(key="training_optimizer").set_value("adam").run()
    url = at.query_params
    assert url["model"] == "cnn" and url["norms"] == "batch,instance" and url["optimizer"] == "adam"
    assert "epochs" not in url and "mode" not in url and url["batch_size"] == "16"


@pytest.mark.parametrize("param,value,words", [
    ("epochs", "999", f"epochs='999': 999 is outside the allowed range 1 to {limits.MAX_EPOCHS}"),
    ("norms", "batch,bogus", "unknown 'bogus'"),
    ("lr", "fast", "expected a number"),
    ("devices", "cpu,cuda:7", "Device 'cuda:7' is not available on this machine"),
    ("model", "transformer", "expected one of mlp, cnn"),
])
def test_a_bad_link_value_is_ignored_with_a_message(param, value, words):
    at = apptest_pages.open_page("pages/training.py", timeout=120, **{param: value})
    assert not at.exception
    warnings = texts(at.warning)
    assert f"Ignored URL parameter {param}" in warnings and words in warnings, warnings
    assert not button(at, "Run").disabled  # the defaults stand in; the page still works


# -- the live view's redraw budget (pages/shared/redraw.py) --------------------------------


TINY = T.RunConfig(width=8, depth=2, epochs=1, batch_size=64, norms=("batch", "none"), devices=("cpu",))


def test_draw_budget_throttles_and_always_draws_the_end(monkeypatch):
    clock = iter(range(1000))
    monkeypatch.setattr(redraw.time, "perf_counter", lambda: next(clock) * 0.01)  # 10 ms per reading
    live = T.LiveRun(TINY, [])
    budget = redraw.DrawBudget(every_s=0.5, share=0.5, progress_every_s=0.1)
    drawn, progress = [], []
    outcomes = [budget.draw(live, drawn.append, progress.append) for _ in range(100)]
    assert 0 < len(drawn) <= 100 * 0.02 / 0.5 + 1  # 2 readings per call at 10 ms: every 0.5 s at most
    assert len(progress) <= 100 * 0.02 / 0.1 and len(progress) > len(drawn)
    assert sum(outcomes) == len(drawn)
    live.status = "finished"
    assert budget.draw(live, drawn.append, progress.append) and drawn[-1] is live  # the final state, whatever the timing


def test_draw_budget_bounds_the_share_spent_drawing(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(redraw.time, "perf_counter", lambda: now[0])
    live = T.LiveRun(TINY, [])
    budget = redraw.DrawBudget(every_s=0.0, share=0.05, progress_every_s=10.0)

    def slow_draw(_live):  # each redraw costs 0.1 s of a run that advances 0.1 s per report
        now[0] += 0.1

    for _ in range(200):
        now[0] += 0.1
        budget.draw(live, slow_draw)
    assert budget.spent <= 0.05 * now[0] + 0.1  # at most one draw over the 5 % share


class Box:
    """Records what a page's placeholder was asked to show."""

    def __init__(self):
        self.calls = []

    def progress(self, fraction, text):
        self.calls.append(("progress", fraction, text))

    def vega_lite_chart(self, spec, width, height="content"):
        self.calls.append(("chart", spec))


def test_live_view_follows_a_run_and_draws_its_final_state():
    progress, left, right = Box(), Box(), Box()
    view = redraw.LiveView(progress, (left, right), lambda live: ({"n": len(live.rows)}, {"m": len(live.rows)}))
    live = T.LiveRun(TINY, T.plan(TINY)[0])
    assert view.follow(live, lambda on_progress: T.run(TINY, live, on_progress=on_progress)) is live
    assert progress.calls[0][0] == "progress" and progress.calls[-1][1:] == (1.0, live.progress_text())
    assert left.calls[-1] == ("chart", {"n": len(live.rows)}) and right.calls[-1] == ("chart", {"m": len(live.rows)})
