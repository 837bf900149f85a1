"""The data-parallel run (normcore.lab.distributed): the command line, torchrun, the API, its checks.

Each run spawns real workers (seconds each here), so the runs are few and tiny: one epoch,
large per-worker batches (few steps).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from normcore.lab import datasets, limits
from normcore.lab.distributed import EpochReport, DDPConfig, StepProgress, problems, run
from normcore.lab.distributed.launch import run_series
from normcore.lab.distributed.config import FIELDS, TRAIN_SIZE

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--per-worker-batch", "64"]
EPOCH_LINE = re.compile(r"epoch 1/1 +loss [\d.]+ +train acc [\d.]+% +test acc ([\d.]+)% +step [\d.]+ ms +"
                        r"SyncBN all-reduces [\d.]+ ms/step \(\d+%\)")


def _run_cli(command: list[str], timeout: float = 240) -> str:
    env = os.environ | {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = process.communicate(timeout=timeout)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, out[-4000:]
    return out


def test_the_command_line_spawns_two_workers_and_reports_each_epoch():
    out = _run_cli([sys.executable, "-m", "normcore.lab.distributed", "--workers", "2", *TINY])
    assert "2 workers (spawned), model mlp, norm sync" in out and "64 per worker = 128 per step" in out
    match = EPOCH_LINE.search(out)
    assert match, out
    assert float(match.group(1)) > 50  # 10 steps of SGD already beat chance (10 %) by far
    assert re.search(r"workers up in [\d.]+ s \(gloo on cpu\); finished in", out), out


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_torchrun_runs_the_same_code_as_its_workers():
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    out = _run_cli([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "normcore.lab.distributed", *TINY])
    assert "2 workers (torchrun), model mlp, norm sync" in out
    assert len(EPOCH_LINE.findall(out)) == 1, out  # worker 0 alone prints


def test_the_api_reports_progress_and_a_stop_ends_every_worker():
    events = []
    stop_after_first_epoch = lambda: any(isinstance(e, EpochReport) for e in events)  # noqa: E731
    result = run(DDPConfig(workers=2, norm="sync", per_worker_batch=64, epochs=3), events.append, stop_after_first_epoch)
    assert result.status == "stopped" and result.message == "Stopped after 1 of 3 epochs; the workers were ended."
    assert [e.epoch for e in result.epochs] == [1]
    steps = [e for e in events if isinstance(e, StepProgress)]
    assert steps and steps[-1].step == steps[-1].steps == TRAIN_SIZE // 128
    report = result.epochs[0]
    assert report.sync_calls_per_step == 2 * 3  # two SyncBatchNorm layers, three all-reduces each
    assert 0 < report.sync_ms < report.step_ms and 0.1 < report.test_accuracy <= 1
    for pid in result.worker_pids:  # ended and reaped: no such process any more
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the run"


def test_broadcast_buffers_copies_worker_0s_running_statistics_to_the_others():
    """Local BN, the same seed, with and without DDP's buffer broadcast (one set of workers).
    Train-mode BN normalizes with batch statistics, so training is the same; worker 0's running
    statistics are the broadcast's source, so they are equal; the other worker's are reset to
    them before every forward, so they end one update apart instead of drifting."""
    configs = [DDPConfig(workers=2, norm="local", per_worker_batch=64, epochs=1, broadcast_buffers=b) for b in (False, True)]
    drifting, broadcast = (result.epochs[-1] for result in run_series(configs))
    assert broadcast.rank_means[0] == drifting.rank_means[0] and broadcast.test_accuracy == drifting.test_accuracy
    apart = [sum(abs(a - b) for a, b in zip(*report.rank_means)) for report in (drifting, broadcast)]
    assert 0 < apart[1] < 0.8 * apart[0], apart  # 1.4-2.1x closer over seeds 0-5


def test_invalid_configurations_are_refused_before_spawning_with_what_to_change():
    result = run(DDPConfig(workers=limits.MAX_WORKERS + 1))
    assert result.status == "invalid" and "workers" in result.message and result.worker_pids == []
    too_many = problems(DDPConfig(workers=8, per_worker_batch=256), under_torchrun=True)
    assert too_many == ["8 workers × 256 samples = 2,048 per step is more than the 1,347 training samples. "
                        "Use fewer workers or a smaller per-worker batch."]
    assert "per-worker batch of at least 2" in " ".join(problems(DDPConfig(norm="local", per_worker_batch=1)))
    assert problems(DDPConfig(norm="sync", per_worker_batch=1, workers=2)) == []  # 2 values over the workers
    assert "divisible" in " ".join(problems(DDPConfig(norm="group", width=30, num_groups=4)))
    assert problems(DDPConfig(workers=64, per_worker_batch=16), under_torchrun=True) == []  # torchrun decides the count


def test_the_fields_defaults_are_the_config_defaults_and_the_train_size_is_the_splits():
    assert FIELDS.defaults() == DDPConfig().values()
    assert TRAIN_SIZE == datasets.load_digits_split(0).x_train.shape[0]


# -- one schema: the command line refuses what the page refuses, or names the cap it lifts ----

_IN_RANGE = {  # each run field the page offers, within the page's range
    "workers": st.integers(1, 2), "per_worker_batch": st.integers(1, 256), "epochs": st.integers(1, 20),
    "width": st.sampled_from([4, 8, 64, 256]), "depth": st.integers(1, 6), "seed": st.integers(0, 9999),
    "lr": st.floats(0.001, 1.0), "model": st.sampled_from(["mlp", "cnn"]), "norm": st.sampled_from(["local", "sync", "group"]),
}
_PAST = {  # and just past either end of it
    "workers": (0, 5), "per_worker_batch": (0, 257), "epochs": (0, 21), "width": (3, 257), "depth": (0, 7),
    "seed": (-1, 10_000), "lr": (0.0009, 1.5),
}


@hsettings(max_examples=40, deadline=None)
@given(values=st.fixed_dictionaries(_IN_RANGE), past=st.sampled_from([None, *_PAST]), end=st.integers(0, 1))
def test_the_command_line_refuses_what_the_page_refuses_or_names_the_cap_it_lifts(values, past, end):
    from normcore.lab.distributed.__main__ import flag, parse
    from normcore.lab.experiments import data_parallel as D

    if past is not None:
        values[past] = _PAST[past][end]
    norm = values.pop("norm")
    options = D.DataParallelOptions(norms=(norm,), **values)
    page = D.problems(options)
    argv = [item for name, value in values.items() for item in (flag(name), str(value))] + ["--norm", norm]
    command_line = problems(parse(argv))
    assert bool(command_line) <= bool(page)  # nothing the page allows is refused here
    if page and not command_line:  # allowed here only past a cap the command line lifts, by name
        assert "distributed_work" in limits.COMMAND_LINE_LIFTS and page == D.options.work_problems(options)


def test_the_command_line_refuses_out_of_range_values_before_spawning_and_says_what_it_lifts():
    from normcore.lab.distributed.__main__ import EPILOG, main

    assert main(["--lr", "5", "--seed", "10000", "--width", "2"]) == 2  # the page's ranges; no worker started
    assert "limits.distributed_work" in EPILOG and f"{limits.MAX_COMMAND_LINE_RUN_S:.0f} s" in EPILOG
