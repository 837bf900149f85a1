"""The Data-parallel BN page in AppTest: its first view, a tiny 2-worker run through it, and
what it says when a worker fails or another run holds the server's workers."""

from __future__ import annotations

import json
import time

import psutil
import pyarrow as pa

from normcore.lab.distributed import faults, launch
from tests.apptest_pages import open_page, texts

PAGE = "pages/data_parallel.py"
TINY = dict(dp_batch="64", dp_epochs="1")  # 10 steps per normalization


def run_button(at):
    return next(b for b in at.main.button if b.label.endswith("Run"))



def workers_left() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())]


def test_first_view_starts_nothing_and_reads_its_url():
    at = open_page(PAGE, dp_workers="3", dp_norms="sync,group", dp_lr="nope")
    assert "Press ▶️ Run" in texts(at.info) or "press ▶️ Run" in texts(at.info)
    assert "Ignored URL parameter dp_lr='nope'" in texts(at.warning)
    assert at.session_state["dp_workers"] == 3 and at.session_state["dp_norms"] == ["sync", "group"]
    assert not run_button(at).disabled and workers_left() == []
    assert "torchrun --nnodes 2" in texts(at.code) and "was not run here" in texts(at.markdown)
    start = time.perf_counter()
    at.run()
    assert time.perf_counter() - start < 2.0  # the view before Run is cheap (≤ 1 s on an idle machine)


def test_a_tiny_two_worker_run_shows_every_result_and_leaves_no_worker():
    at = open_page(PAGE, **TINY)
    run_button(at).click()
    at.run()
    assert not at.exception and not at.error, texts(at.error)
    results = at.dataframe[0].value
    assert list(results["Epochs done"]) == [1, 1, 1]
    assert (results["Test accuracy"] > 30).all(), results  # percent: 10 steps already beat chance (10 %)
    gap = at.dataframe[1].value  # [0] results, [1] the eval gap (the paper's table is in the batch sweep section)
    assert list(gap["Normalization"]) == ["local BN", "SyncBN"]
    assert gap.set_index("Normalization").loc["SyncBN", "Largest running-mean difference"] == 0.0
    assert gap.set_index("Normalization").loc["local BN", "Largest running-mean difference"] > 0.0
    steps = at.dataframe[2].value.set_index(["norm", "part"])["ms"]
    assert steps.loc[("SyncBN", "SyncBN collectives")] > 0 == steps.loc[("local BN", "SyncBN collectives")]
    assert len(at.get("vega_lite_chart")) == 3  # accuracy by epoch, step time, per-worker running means
    accumulation = at.dataframe[3].value.set_index(["Normalization", "k micro-batches"])["Relative gradient difference"]
    assert accumulation[("GroupNorm", 8)] < 1e-12 < accumulation[("BatchNorm", 8)]
    assert workers_left() == []
    again = open_page(PAGE, **TINY)  # another session, same settings: from the cache, no workers
    assert again.dataframe[0].value.equals(results)


def test_a_worker_that_raises_is_reported_on_the_page_and_no_worker_is_left(monkeypatch):
    monkeypatch.setenv(faults.VARIABLE, "raise@0:2")
    at = open_page(PAGE, dp_norms="group", dp_workers="1", **TINY)  # several workers failing: the runner's tests
    run_button(at).click()
    at.run()
    assert not at.exception
    assert "The run failed: worker 0 raised RuntimeError: injected fault: worker 0 raised at step 2" in texts(at.error)
    assert "every worker was ended" in texts(at.error)
    assert workers_left() == []


def test_a_second_run_while_one_holds_the_workers_is_told_to_wait():
    at = open_page(PAGE, dp_norms="group", **TINY)
    assert launch._ONE_RUN.acquire(blocking=False)
    try:
        run_button(at).click()
        at.run()
    finally:
        launch._ONE_RUN.release()
    assert "Another data-parallel run is using this server's workers" in texts(at.warning)
    assert workers_left() == []


SWEEP = "▶️ Run the batch sweep"  # its own button (SKIP_BUTTONS in the widget fuzz)


def sweep_button(at):
    return next(b for b in at.main.button if b.label == SWEEP)


def sweep_table(at):
    return next(d.value for d in at.dataframe if d.value.index.name == "batch per worker")


def test_the_batch_sweep_fills_its_chart_and_table_beside_the_papers_and_leaves_no_worker():
    at = open_page(PAGE, dp_workers="1", dp_sweep_batches="64")  # 3 runs of 21 steps on the page's 1 worker
    assert at.session_state["dp_sweep_batches"] == ["64"] and at.session_state["dp_sweep_epochs"] == 1
    assert f"Press {SWEEP}" in texts(at.info)
    sweep_button(at).click()
    at.run()
    assert not at.exception and not at.error, texts(at.error)
    table = sweep_table(at)
    assert list(table.index) == [64] and list(table.columns) == ["local BN", "SyncBN", "GroupNorm"]
    assert ((table > 0) & (table < 70)).all(axis=None), table  # test error %: 10 steps already beat chance (90 %)
    titles = [json.loads(c.proto.spec).get("title") for c in at.get("vega_lite_chart")]
    assert titles == ["This lab: test error by batch per worker",
                      "The GroupNorm paper: ImageNet top-1 error"]
    lab = pa.ipc.open_stream(at.get("vega_lite_chart")[0].proto.datasets[0].data.data).read_all().to_pandas()
    assert sorted(lab["norm"]) == ["GroupNorm", "SyncBN", "local BN"] and list(lab["per_worker_batch"]) == [64] * 3
    assert "**shape**, not the level" in texts(at.caption)
    assert workers_left() == []
    again = open_page(PAGE, dp_workers="1", dp_sweep_batches="64")  # another session, same settings: from the cache
    assert sweep_table(again).equals(table) and workers_left() == []


def test_the_batch_sweep_waits_while_another_run_holds_the_workers():
    at = open_page(PAGE, dp_sweep_batches="32")
    assert launch._ONE_RUN.acquire(blocking=False)
    try:
        sweep_button(at).click()
        at.run()
    finally:
        launch._ONE_RUN.release()
    assert "Another data-parallel run is using this server's workers" in texts(at.warning)
    assert workers_left() == []
