"""No worker left behind: each fault is injected into a real run, then psutil checks that no
worker process is left and the run's result says what happened.

Faults come from the test-only hook ``NORMCORE_DP_FAULT`` (normcore.lab.distributed.faults),
read by the spawned workers. Runs are tiny (MLP, 2 workers, big per-worker batches). The
server's SIGKILL is a real ``python -m normcore.lab.distributed`` process killed mid-run (the
same runner as the page's); its SIGTERM is a real ``streamlit run app.py`` server's, in
tests/e2e/test_workers_end.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from normcore.lab.distributed import DDPConfig, run
from normcore.lab.distributed import faults, launch

ROOT = Path(__file__).resolve().parents[1]
GONE_WITHIN_S = 10.0
TINY = dict(workers=2, norm="sync", per_worker_batch=64, epochs=2)


def descendants(pid: int | None = None) -> list[psutil.Process]:
    """Worker processes under ``pid`` (this process by default): multiprocessing's spawned
    children, not its resource tracker."""
    try:
        found = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in found:
        try:
            if "resource_tracker" not in " ".join(p.cmdline()):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return out


def assert_no_worker_left(pids, within_s: float = GONE_WITHIN_S) -> None:
    deadline = time.monotonic() + within_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.1)
    assert not alive, f"workers {alive} outlived their run by more than {within_s} s"


def faulty_run(monkeypatch, fault: str, **limits_):
    """Run with ``fault``; also returns the seconds from worker 0's first step report (the
    fault strikes at step 2, right after it) to the end of run()."""
    monkeypatch.setenv(faults.VARIABLE, fault)
    first = []
    result = run(DDPConfig(**TINY), lambda _event: first.append(first[0] if first else time.monotonic()), **limits_)
    elapsed = time.monotonic() - first[0]
    assert result.worker_pids, "the workers never started"
    assert_no_worker_left(result.worker_pids, within_s=0.5)  # gone by the time run() returns
    assert descendants() == []
    return result, elapsed


def test_a_killed_worker_ends_the_run_and_the_others_are_ended(monkeypatch):
    result, elapsed = faulty_run(monkeypatch, "kill@1:2")
    assert elapsed < GONE_WITHIN_S
    assert result.status == "failed"
    # the parent sees worker 1 gone, or worker 0 first notices it in a collective (gloo: connection closed)
    assert ("worker 1 was killed (SIGKILL)" in result.message or "worker 0 raised" in result.message), result.message


def test_a_hung_worker_ends_the_run_at_the_collective_timeout(monkeypatch):
    result, elapsed = faulty_run(monkeypatch, "hang@1:2", collective_timeout_s=2.0)
    assert result.status == "failed"
    assert "worker 0 waited more than 2 s in a collective" in result.message, result.message
    assert elapsed < 2.0 + GONE_WITHIN_S  # the collective's timeout, then every worker ended


def test_the_time_cap_ends_the_run(monkeypatch):
    """The cap counts from the call: process start, then training (~60 s of it here)."""
    monkeypatch.delenv(faults.VARIABLE, raising=False)
    start = time.monotonic()
    result = run(DDPConfig(workers=2, norm="local", per_worker_batch=4, epochs=20), time_cap_s=3.0)
    assert result.status == "timed out", result.message
    assert result.message == "The run hit its time cap of 3 s; every worker was ended."
    assert time.monotonic() - start < 3.0 + GONE_WITHIN_S
    assert_no_worker_left(result.worker_pids, within_s=0.5)


def test_one_run_per_server_at_a_time_the_others_are_told():
    assert launch._ONE_RUN.acquire(blocking=False)
    try:
        result = run(DDPConfig(**TINY))
    finally:
        launch._ONE_RUN.release()
    assert result.status == "busy" and result.worker_pids == []
    assert "Another data-parallel run is using this server's workers" in result.message


def test_the_fault_hook_reads_only_its_own_form():
    assert faults.parse("hang@3:12") == faults.Fault("hang", 3, 12)
    assert faults.parse("hang@*:2") == faults.Fault("hang", -1, 2) and faults.parse("hang@*:2").to_text() == "hang@*:2"
    assert faults.parse("") is None and faults.parse(None) is None
    for bad in ("explode@1:2", "raise@x:1", "raise1:2", "raise@1"):
        with pytest.raises(ValueError, match="KIND@RANK:STEP"):
            faults.parse(bad)


def test_workers_exit_when_their_server_dies_by_SIGKILL():
    """The server (here the command line: the page's runner) is killed mid-run by SIGKILL, which
    leaves it no clean-up. Its worker hangs (no collective, no queue traffic that could fail):
    only the worker's parent watchdog can end it. Without the watchdog this test fails."""
    env = os.environ | {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), faults.VARIABLE: "hang@*:2"}
    server = subprocess.Popen([sys.executable, "-m", "normcore.lab.distributed", "--workers", "1", "--norm", "group",
                               "--per-worker-batch", "64", "--epochs", "2"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers: list[int] = []
    try:
        lines = []
        for line in server.stdout:  # until the worker says it hangs (in training, stuck)
            lines.append(line)
            if "injected fault: worker" in line:
                break
        else:
            raise AssertionError(f"the server ended before its worker hung:\n{''.join(lines)[-3000:]}")
        workers = [p.pid for p in descendants(server.pid)]
        assert len(workers) == 1, workers
        server.kill()
        assert server.wait(10) == -signal.SIGKILL
        assert_no_worker_left(workers)
    finally:  # whatever happened, leave nothing behind for the next tests
        server.kill()
        server.wait()
        for pid in workers:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
