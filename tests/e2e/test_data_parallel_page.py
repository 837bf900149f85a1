"""The Data-parallel BN page in a real browser on a real server: Stop, a tab closed mid-run, and
the server's SIGTERM end the server's worker processes. (A tiny 2-worker run
drawing its charts is the page's check in tests/e2e/test_pages.py, through its plan.)"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil
import pytest

from normcore.lab.distributed import faults
from tests.e2e import harness as H
from tests.e2e.plans import MAIN, button, by_path, page_url, server_workers

pytestmark = pytest.mark.e2e
LONG = dict(dp_norms="local", dp_batch="4", dp_epochs="20")  # ~100 s of training: only a stop ends it early
GONE_WITHIN_S = 10.0


def wait_for(condition, timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, f"{what}: not within {timeout_s} s"
        time.sleep(0.2)
    return time.monotonic() - start


def start_long_run(app: H.AppPage, server) -> None:
    app.goto(page_url(server, by_path("data_parallel"), **LONG))
    button(app.page.locator(MAIN), "Run").click()
    app.page.get_by_text("local: epoch 1/20").first.wait_for(timeout=60_000)  # training, not starting
    assert len(server_workers(server)) == 2


def test_stop_ends_the_workers_and_the_page_says_so(app, warm_server):
    start_long_run(app, warm_server)
    button(app.page.locator(MAIN), "Stop").click()
    gone = wait_for(lambda: server_workers(warm_server) == [], GONE_WITHIN_S, "workers after Stop")
    app.page.get_by_text("Stopped by you: the workers were ended.").first.wait_for(timeout=10_000)
    print(f"workers gone {gone:.1f} s after Stop")


def test_a_closed_tab_and_the_servers_SIGTERM_each_end_a_hung_run(browser):
    """A real server (``streamlit run app.py``) whose workers hang at step 2 (the fault hook: no
    collective, no queue traffic that could fail). A run from one tab, then the tab closed: the
    session disconnects and Streamlit stops its script at once. Then a run from another tab, and
    the server gets SIGTERM: Streamlit's own shutdown, with a script thread blocked in the run.
    Each time the worker must be gone within 10 s. (SIGKILL, which leaves the server no clean-up
    at all, is tests/test_data_parallel_faults.py's: there only the workers' parent watchdog can
    end them, whatever the parent.)"""
    server = H.StreamlitServer(env={faults.VARIABLE: "hang@*:2"}).start()
    url = page_url(server, by_path("data_parallel"), dp_norms="group", dp_workers="1", dp_batch="64")
    contexts, hung = [], []

    def start_hung_run(runs_before: int) -> list[int]:
        contexts.append(browser.new_context(viewport=H.VIEWPORT))
        app = H.AppPage.open(contexts[-1])
        app.goto(url, timeout_ms=120_000)
        button(app.page.locator(MAIN), "Run").click()
        wait_for(lambda: server.log_path.read_text().count("injected fault: worker") > runs_before, 90, "the worker hanging")
        pids = [p.pid for p in server_workers(server)]
        assert len(pids) == 1, pids
        hung.extend(pids)
        return pids

    def gone(pids: list[int], after: str) -> None:
        seconds = wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                           for p in pids), GONE_WITHIN_S, f"workers after {after}")
        print(f"worker gone {seconds:.1f} s after {after}")

    try:
        pids = start_hung_run(0)
        contexts[-1].close()
        gone(pids, "the tab closed")
        pids = start_hung_run(1)
        os.kill(server.pid, signal.SIGTERM)
        gone(pids, "the server's SIGTERM")
    finally:
        for context in contexts:
            with contextlib.suppress(Exception):
                context.close()
        server.stop()
        for pid in hung:
            with contextlib.suppress(psutil.Error):  # a worker the server's end left behind: not for the next tests
                psutil.Process(pid).kill()
