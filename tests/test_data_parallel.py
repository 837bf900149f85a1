"""The Data-parallel BN experiment without workers: options and their URL form, checks and caps,
the live record, the tables and charts built from hand-made epoch reports."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normcore.lab import limits
from normcore.lab.distributed import EpochReport, StepProgress
from normcore.lab.distributed.config import TRAIN_SIZE
from normcore.lab.distributed.launch import fault_message
from normcore.lab.distributed.pool import exit_words
from normcore.lab.experiments import data_parallel as D
from normcore.lab.experiments.data_parallel.options import total_steps
from normcore.lab.viz import data_parallel_charts as charts


def report(epoch, acc, step_ms, sync_ms, averaged=math.nan, spread=math.nan, means=()):
    return EpochReport(epoch=epoch, train_loss=1.0, train_accuracy=acc, test_accuracy=acc, step_ms=step_ms,
                       sync_ms=sync_ms, sync_calls_per_step=6.0 if sync_ms else 0.0, samples_per_s=1000.0, wall_s=1.0,
                       mean_spread=spread, var_spread=spread, test_accuracy_averaged=averaged, rank_means=means)


def finished() -> D.Comparison:
    c = D.Comparison(D.DataParallelOptions(epochs=2))
    for index, norm in enumerate(c.norms):
        c.record(index, StepProgress(1, 5, 10))
        for epoch in (1, 2):
            bn = norm != "group"
            c.record(index, report(epoch, 0.5 + 0.1 * epoch, 10.0, 4.0 if norm == "sync" else 0.0,
                                   averaged=0.75 if bn else math.nan, spread=(0.2 if norm == "local" else 0.0) if bn else math.nan,
                                   means=((0.1, 0.2), (0.3, 0.4)) if bn else ()))
    c.status = "finished"
    return c


def test_defaults_are_three_norms_on_two_workers_and_within_every_cap():
    o = D.DataParallelOptions()
    assert o.norms == ("local", "sync", "group") and o.workers == 2
    assert D.problems(o) == [] and o.to_query() == {}
    assert [c.norm for c in D.run_configs(o)] == ["local", "sync", "group"]
    assert {c.workers for c in D.run_configs(o)} == {2} and all(c.device == "cpu" for c in D.run_configs(o))
    assert total_steps(o) == 3 * 2 * (TRAIN_SIZE // 64)


@settings(max_examples=40, deadline=None)
@given(norms=st.lists(st.sampled_from(("local", "sync", "group")), min_size=1, max_size=3, unique=True),
       workers=st.integers(1, limits.MAX_WORKERS), batch=st.integers(2, 64), broadcast=st.booleans())
def test_options_survive_their_url_form(norms, workers, batch, broadcast):
    o = D.DataParallelOptions(norms=tuple(norms), workers=workers, per_worker_batch=batch, broadcast_buffers=broadcast)
    again, messages = D.DataParallelOptions.from_query(o.to_query())
    assert messages == [] and again.key == D.DataParallelOptions(**{**again.__dict__, "norms": tuple(norms)}).key
    assert set(again.norms) == set(norms) and again.workers == workers and again.broadcast_buffers == broadcast


def test_problems_say_what_to_change():
    assert D.problems(D.DataParallelOptions(norms=())) == ["norms: must name at least one."]
    too_many = D.problems(D.DataParallelOptions(workers=limits.MAX_WORKERS + 1))
    assert too_many and "workers" in too_many[0]
    steps = D.problems(D.DataParallelOptions(per_worker_batch=2, epochs=limits.MAX_DISTRIBUTED_EPOCHS))
    assert any("optimizer steps, over this demo's cap" in m for m in steps)
    big = D.problems(D.DataParallelOptions(model="mlp", width=limits.MAX_WIDTH, depth=limits.MAX_DEPTH))
    assert any("parameters, over this demo's cap" in m for m in big)
    assert any("per-worker batch of at least 2" in m for m in D.problems(D.DataParallelOptions(per_worker_batch=1)))


def test_a_hosted_server_caps_workers_at_two():
    assert limits.worker_cap({}) == limits.MAX_WORKERS == 4
    assert limits.worker_cap({limits.HOSTED_VARIABLE: "1"}) == limits.MAX_HOSTED_WORKERS == 2
    assert limits.workers_allowed(3, {limits.HOSTED_VARIABLE: "1"}).startswith("3 workers is over this server's cap of 2")
    assert limits.workers_allowed(2, {limits.HOSTED_VARIABLE: "1"}) is None


def test_the_live_record_counts_progress_and_keeps_what_arrived():
    c = D.Comparison(D.DataParallelOptions(norms=("sync", "group"), epochs=2))
    assert c.running and c.fraction == 0.0 and c.progress_text().startswith("Starting 2 worker processes")
    c.record(0, StepProgress(1, 5, 10))
    assert c.fraction == pytest.approx(0.5 / 4) and c.progress_text().startswith("sync: epoch 1/2, step 5/10")
    c.record(0, report(1, 0.8, 10.0, 4.0))
    assert c.fraction == pytest.approx(1 / 4)
    c.mark_interrupted("Stopped by you.")
    assert not c.running and c.message == "Stopped by you." and len(c.epochs["sync"]) == 1


def test_tables_read_the_last_epoch_of_each_norm():
    c = finished()
    results = D.results_table(c)
    assert list(results["Epochs done"]) == [2, 2, 2] and list(results["Test accuracy"]) == pytest.approx([0.7] * 3)
    gap = D.eval_gap_table(c)
    assert list(gap["Normalization"]) == ["local BN", "SyncBN"]  # GroupNorm keeps no running statistics
    assert list(gap["Gap (points)"]) == pytest.approx([5.0, 5.0])  # 75 % averaged vs 70 % worker 0's
    steps = D.step_time_table(c).set_index(["norm", "part"])["ms"]
    assert steps[("SyncBN", "SyncBN collectives")] == 4.0 and steps[("SyncBN", "compute (incl. DDP gradient all-reduce)")] == 6.0
    means = D.rank_means_frame(c)
    assert len(means) == 2 * 2 * 2 and set(means["worker"]) == {"worker 0", "worker 1"}


def test_charts_carry_the_tables_data():
    c = finished()
    accuracy, steps = charts.live_charts(c)
    assert len(next(iter(accuracy["datasets"].values()))) == 6  # 3 norms × 2 epochs
    assert len(next(iter(steps["datasets"].values()))) == 6  # 3 norms × 2 parts
    assert charts.rank_means_chart(D.rank_means_frame(c))["facet"]["column"]["field"] == "norm"


def test_the_cache_keeps_finished_runs_only():
    cache = D.FinishedDataParallelRuns(max_entries=1)
    c = finished()
    cache.put(c)
    assert cache.get(D.DataParallelOptions(epochs=2)) is c
    stopped = D.Comparison(D.DataParallelOptions(epochs=3))
    stopped.mark_interrupted("Stopped")
    cache.put(stopped)
    assert cache.get(stopped.options) is None


def test_fault_messages_name_the_worker_and_the_cause():
    assert exit_words(-9) == "was killed (SIGKILL)" and exit_words(1) == "exited with code 1"
    raised = fault_message("worker 1:\nTraceback (most recent call last):\n  File x\nValueError: bad\n", 20.0)
    assert raised == "The run failed: worker 1 raised ValueError: bad; every worker was ended."
    dead = fault_message("worker 0 was killed (SIGKILL) without answering", 20.0)
    assert dead == "The run failed: worker 0 was killed (SIGKILL) without answering; the other workers were ended."


def test_accumulation_matches_one_batch_for_group_norm_only():
    from normcore.lab.experiments.data_parallel.accumulation import accumulation_table

    table = accumulation_table(8, k_values=(1, 4)).set_index(["Normalization", "k micro-batches"])
    diff = table["Relative gradient difference"]
    assert diff[("BatchNorm", 1)] == 0.0 and diff[("GroupNorm", 1)] == 0.0  # one micro-batch is the batch
    assert diff[("GroupNorm", 4)] < 1e-12  # per-sample statistics: accumulation is exact
    assert diff[("BatchNorm", 4)] > 1e-2  # per-micro-batch statistics: a different gradient
    assert list(table["Samples"]) == [8, 32, 8, 32]
