"""The Data-parallel BN page in a real browser on a real server: Stop, a tab closed mid-run, and
the server's death by SIGTERM or SIGKILL end the server's worker processes. (A tiny 2-worker run
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


def test_a_tab_closed_mid_run_ends_its_workers(browser, warm_server):
    context = browser.new_context(viewport=H.VIEWPORT)
    app = H.AppPage.open(context)
    start_long_run(app, warm_server)
    context.close()  # the session disconnects; Streamlit asks its script to stop at once
    gone = wait_for(lambda: server_workers(warm_server) == [], GONE_WITHIN_S, "workers after the tab closed")
    print(f"workers gone {gone:.1f} s after the tab closed")


def test_workers_exit_when_the_streamlit_server_dies_by_SIGTERM_or_SIGKILL(browser):
    """Two real servers (``streamlit run app.py``) each start a run from the page, whose worker
    hangs (the fault hook: no collective, no queue traffic that could fail); then one server
    gets SIGTERM, the other SIGKILL, which leaves it no clean-up of its own. The workers must
    be gone within 10 s: after SIGKILL only their parent watchdog can end them."""
    hang = {faults.VARIABLE: "hang@*:2"}
    servers = {sig: H.StreamlitServer(env=hang).start() for sig in (signal.SIGTERM, signal.SIGKILL)}
    contexts = []
    try:
        hung: dict[int, list[int]] = {}
        apps = []
        for server in servers.values():  # both servers load the page at once
            contexts.append(browser.new_context(viewport=H.VIEWPORT))
            apps.append(H.AppPage.open(contexts[-1]))
            apps[-1].page.goto(page_url(server, by_path("data_parallel"), dp_norms="group", dp_workers="1",
                                        dp_batch="64"), wait_until="domcontentloaded", timeout=120_000)
        for app in apps:
            app.wait_loaded(timeout_ms=120_000)
            button(app.page.locator(MAIN), "Run").click()
        for sig, server in servers.items():
            wait_for(lambda: "injected fault: worker" in server.log_path.read_text(), 90, "the worker hanging")
            hung[sig] = [p.pid for p in server_workers(server)]
            assert len(hung[sig]) == 1, hung
        for sig, server in servers.items():
            os.kill(server.pid, sig)
        for sig, server in servers.items():
            gone = wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                            for p in hung[sig]), GONE_WITHIN_S, f"workers after {sig.name}")
            print(f"worker gone {gone:.1f} s after the server's {sig.name}")
    finally:
        for context in contexts:
            with contextlib.suppress(Exception):
                context.close()
        for server in servers.values():
            server.stop()
        for pid in [pid for pids in hung.values() for pid in pids] if "hung" in locals() else []:
            with contextlib.suppress(psutil.Error):  # a worker the server's end left behind: not for the next tests
                psutil.Process(pid).kill()
