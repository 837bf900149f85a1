"""The Data-parallel page's batch sweep: its options and URL form, its caps, the
live record (a point per finished (batch, norm) run), the error table and the charts, from
hand-made reports (and a stood-in runner). The page test runs a tiny real sweep."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normcore.lab import limits
from normcore.lab.distributed import EpochReport, RunResult, StepProgress
from normcore.lab.distributed.config import TRAIN_SIZE
from normcore.lab.experiments import data_parallel as D
from normcore.lab.viz import data_parallel_charts as charts

OFFERED = ("2", "4", "8", "16", "32", "64")


def report(epoch, acc):
    return EpochReport(epoch=epoch, train_loss=1.0, train_accuracy=acc, test_accuracy=acc, step_ms=1.0, sync_ms=0.0,
                       sync_calls_per_step=0.0, samples_per_s=1.0, wall_s=1.0)


def settings_of(batches=("4", "64"), epochs=2, workers=2):
    return D.sweep_settings(D.DataParallelOptions(workers=workers), D.SweepOptions(epochs=epochs, batches=batches))


def test_defaults_sweep_every_offered_batch_for_one_epoch_within_the_caps():
    o, s = D.DataParallelOptions(), D.SweepOptions()
    assert s.epochs == 1 and s.batches == OFFERED and D.sweep_problems(o, s) == []
    w = D.sweep_settings(o, s)
    assert w.batches == (2, 4, 8, 16, 32, 64) and w.workers == 2 and w.model == "mlp"
    assert D.SWEEP_FIELDS.url_names == ("dp_sweep_epochs", "dp_sweep_batches")


@settings(max_examples=25, deadline=None)
@given(st.integers(1, limits.MAX_SWEEP_EPOCHS), st.lists(st.sampled_from(OFFERED), min_size=1, max_size=6, unique=True))
def test_sweep_options_survive_their_url_form(epochs, batches):
    s = D.SweepOptions(epochs=epochs, batches=tuple(batches))
    back, messages = D.SweepOptions.from_query(s.to_query())
    assert messages == [] and back == s


def test_the_sweep_cap_counts_every_run_and_says_what_to_change():
    # 1 worker, 2 epochs, all batches: 3 norms × 2 epochs × Σ TRAIN_SIZE // b
    steps = 3 * 2 * sum(TRAIN_SIZE // b for b in (2, 4, 8, 16, 32, 64))
    assert steps > limits.MAX_SWEEP_STEPS
    found = D.sweep_problems(D.DataParallelOptions(workers=1), D.SweepOptions(epochs=2))
    assert found == [f"This sweep needs {steps:,} optimizer steps, over this demo's cap of {limits.MAX_SWEEP_STEPS:,}. "
                     "Use fewer epochs, more workers, or leave out the smallest batches (they take the most steps)."]
    assert D.sweep_problems(D.DataParallelOptions(workers=1), D.SweepOptions(epochs=2, batches=("8", "64"))) == []
    assert D.sweep_problems(D.DataParallelOptions(), D.SweepOptions(epochs=4)) != []  # over MAX_SWEEP_EPOCHS
    assert D.sweep_problems(D.DataParallelOptions(), D.SweepOptions(batches=("3",))) != []
    assert D.sweep_problems(D.DataParallelOptions(width=512, depth=8), D.SweepOptions(batches=("64",))) != []


def test_the_live_record_adds_a_point_when_a_run_finishes_its_last_epoch():
    record = D.SweepRecord(settings_of())
    assert record.running and record.fraction == 0.0 and record.frame().empty
    assert record.progress_text().startswith("Starting 2 worker processes")
    assert record.record(0, StepProgress(1, 5, 10)) is None
    assert record.progress_text().startswith("Run 1/6: local BN at batch 4 per worker, step 5/10")
    assert record.fraction == pytest.approx(0.25 / 6)
    assert record.record(0, report(1, 0.5)) is None  # epoch 1 of 2: no point yet
    assert record.record(0, report(2, 0.75)) == {"per_worker_batch": 4, "norm": "local BN", "test error": 25.0}
    record.record(1, StepProgress(1, 1, 10))
    assert record.progress_text().startswith("Run 2/6: SyncBN at batch 4 per worker, step 1/10")
    record.record(1, report(2, 0.9))
    record.record(5, report(2, 0.6))  # the last run: GroupNorm at 64
    assert record.fraction == pytest.approx(3 / 6)
    record.mark_interrupted("Stopped by you.")
    assert not record.running and record.message == "Stopped by you."
    table = D.error_table(record.frame())
    assert list(table.columns) == ["local BN", "SyncBN", "GroupNorm"] and list(table.index) == [4, 64]
    assert table.loc[4, "local BN"] == 25.0 and table.loc[4, "SyncBN"] == pytest.approx(10.0)
    assert table.loc[64, "GroupNorm"] == pytest.approx(40.0)
    assert math.isnan(table.loc[64, "local BN"]) and math.isnan(table.loc[4, "GroupNorm"])


def test_finish_keeps_the_worst_status_and_the_cache_only_finished_sweeps():
    w = settings_of(batches=("64",), epochs=1)
    record = D.SweepRecord(w)
    record.finish([RunResult(c, "finished", wall_s=3.0) for c in record.configs[:2]] +
                  [RunResult(record.configs[2], "timed out", "The run hit its time cap.", wall_s=3.0)])
    assert record.status == "timed out" and record.message == "The run hit its time cap." and record.wall_s == 3.0
    cache = D.FinishedDataParallelRuns()
    cache.put(record)
    assert cache.get(w) is None
    record.status = "finished"
    cache.put(record)
    assert cache.get(settings_of(batches=("64",), epochs=1)) is record and cache.get(settings_of()) is None


def test_the_configs_are_every_batch_and_norm_with_the_pages_model():
    w = D.sweep_settings(D.DataParallelOptions(workers=3, model="cnn", width=16, depth=1, lr=0.1, seed=7),
                         D.SweepOptions(epochs=3, batches=("64", "2")))
    got = [(c.per_worker_batch, c.norm, c.workers, c.model, c.width, c.depth, c.lr, c.seed, c.epochs)
           for c in D.SweepRecord(w).configs]
    assert got == [(b, n, 3, "cnn", 16, 1, 0.1, 7, 3) for b in (2, 64) for n in ("local", "sync", "group")]


def test_the_charts_carry_the_lab_points_on_a_log2_axis_and_the_papers_curves():
    record = D.SweepRecord(settings_of())
    record.record(0, report(2, 0.75))
    spec = charts.sweep_chart(record.frame())
    rows = next(iter(spec["datasets"].values()))
    assert rows == [{"per_worker_batch": 4, "norm": "local BN", "test error": 25.0}]
    assert spec["encoding"]["x"]["scale"] == {"type": "log", "base": 2}
    paper = charts.paper_sweep_chart(D.paper_curves())
    points = {(r["norm"], r["per_worker_batch"]): r["top-1 error"] for r in next(iter(paper["datasets"].values()))}
    assert points[("BatchNorm (per GPU)", 2)] == 34.7 and points[("GroupNorm", 2)] == 24.1  # Wu & He 2018, table 1
    assert len(points) == 10 and paper["encoding"]["x"]["scale"] == {"type": "log", "base": 2}
    assert "**shape**, not the level" in D.SHAPE_NOTE


def test_a_sweep_that_never_started_says_why_in_words():
    record = D.SweepRecord(settings_of(batches=("64",), epochs=1))
    record.finish([RunResult(c, "busy", "Another data-parallel run is using this server's workers.") for c in record.configs])
    assert record.status == "busy" and record.progress_text().startswith("Not started: 0 of 3 runs in ")
    assert "nan" not in record.progress_text()


def test_a_sweep_stopped_after_its_first_point_keeps_it(monkeypatch):
    """The runner (stood in for: real stops are tests/test_distributed.py's and the browser's)
    reports two steps and the epoch of run 1, then asks ``should_stop``, as run_series does
    while it waits, and ends the series as stopped."""
    from normcore.lab.experiments.data_parallel import sweep

    def stopping_series(configs, on_progress, should_stop, **_):
        for event in (StepProgress(1, 1, 10), StepProgress(1, 10, 10), report(1, 0.9)):
            on_progress(0, event)
        assert should_stop()
        message = "Stopped after 0 of 1 epochs; the workers were ended."
        return [RunResult(configs[0], "finished", wall_s=2.0)] + [RunResult(c, "stopped", message, wall_s=2.0)
                                                                    for c in configs[1:]]
    monkeypatch.setattr(sweep, "run_series", stopping_series)
    record = D.SweepRecord(settings_of(batches=("64",), epochs=1))
    seen = []
    D.run_page_sweep(record, lambda r: seen.append(len(r.points)), should_stop=lambda: len(record.points) >= 1)
    assert record.status == "stopped" and not record.running and record.message.startswith("Stopped after")
    assert record.points == [{"per_worker_batch": 64, "norm": "local BN", "test error": pytest.approx(10.0)}]
    assert seen == [0, 0, 1, 1]  # progress reported before the point, then with it, then at the end
    assert record.progress_text() == "Stopped: 1 of 3 runs in 2.0 s."


def test_the_page_sweep_runs_under_its_own_time_cap(monkeypatch):
    from normcore.lab.experiments.data_parallel import sweep
    seen = {}

    def fake_series(configs, on_progress, should_stop, **kw):
        seen.update(kw, runs=len(configs))
        return [RunResult(c, "finished", wall_s=1.0) for c in configs]
    monkeypatch.setattr(sweep, "run_series", fake_series)
    D.run_page_sweep(D.SweepRecord(settings_of()))
    assert seen == {"time_cap_s": limits.MAX_SWEEP_RUN_S, "runs": 6}
    assert limits.MAX_SWEEP_RUN_S >= limits.MAX_DISTRIBUTED_RUN_S
