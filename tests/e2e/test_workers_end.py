"""The Data-parallel BN page's worker processes end, in a real browser on a real server: on Stop,
when the tab is closed mid-run, and on the server's SIGTERM. (A tiny 2-worker run drawing its
charts is the page's check in tests/e2e/test_pages.py, through its plan.)

Named to run after tests/e2e/test_pages.py: the first browser test of a run pays the machine's
cold start (Chromium's first launch, the first torch import from disk), whichever test it is."""

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
GONE_WITHIN_S = 10.0


def wait_for(condition, timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, f"{what}: not within {timeout_s} s"
        time.sleep(0.2)
    return time.monotonic() - start


def test_stop_a_closed_tab_and_the_servers_SIGTERM_each_end_a_hung_run(browser):
    """A real server (``streamlit run app.py``) whose workers hang at step 2 (the fault hook: no
    collective, no queue traffic that could fail, so only the page's own ending can stop them):
    1. a run, then Stop: the worker ends and the page says so;
    2. a run, then its tab closed: the session disconnects and Streamlit stops its script at once;
    3. a run, then SIGTERM to the server: Streamlit's own shutdown, its script thread blocked in the run.
    Each time the worker must be gone within 10 s. One worker each: every worker costs ~4 s of
    CPU to start (torch, and torch._dynamo, which DDP imports); ending several at once is the
    runner's tests' (a killed or hung worker, and Stop, in tests/test_distributed.py). (SIGKILL, which leaves the server no clean-up
    at all, is tests/test_data_parallel_faults.py's: there only the workers' parent watchdog can
    end them, whatever the parent.)"""
    server = H.StreamlitServer(env={faults.VARIABLE: "hang@*:2"}).start()
    contexts, hung = [], []

    def start_hung_run(app: H.AppPage | None = None) -> tuple[H.AppPage, list[int]]:
        """Press Run in ``app`` (a new tab on the page by default) and wait for the worker to hang."""
        if app is None:
            contexts.append(browser.new_context(viewport=H.VIEWPORT))
            app = H.AppPage.open(contexts[-1])
            app.goto(page_url(server, by_path("data_parallel"), dp_norms="group", dp_workers="1", dp_batch="64"),
                     timeout_ms=120_000)
        said = server.log_path.read_text().count("injected fault: worker")
        button(app.page.locator(MAIN), "Run").click()
        wait_for(lambda: server.log_path.read_text().count("injected fault: worker") > said, 90, "the worker hanging")
        pids = [p.pid for p in server_workers(server)]
        assert len(pids) == 1, pids
        hung.extend(pids)
        return app, pids

    def gone(pids: list[int], after: str) -> None:
        seconds = wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                           for p in pids), GONE_WITHIN_S, f"workers after {after}")
        print(f"workers gone {seconds:.1f} s after {after}")

    try:
        first_tab, pids = start_hung_run()
        button(first_tab.page.locator(MAIN), "Stop").click()
        gone(pids, "Stop")
        first_tab.page.get_by_text("Stopped by you: the workers were ended.").first.wait_for(timeout=10_000)
        _, pids = start_hung_run()
        contexts[-1].close()
        gone(pids, "the tab closed")
        _, pids = start_hung_run(first_tab)  # Run again where it was stopped
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
