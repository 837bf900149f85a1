"""Fixtures for the real-browser tests: one Streamlit server and one headless Chromium for
the whole tests/e2e package, and a fresh browser context (tab, cookies, console log) per test.

Without Chromium or Playwright the tests are skipped with the reason, so the unit and
AppTest suites stay runnable anywhere; with CI=true they fail instead, so a broken browser
set-up cannot pass CI silently.
"""

from __future__ import annotations

import pytest

from tests.e2e import harness as H
from tests.e2e.harness import E2E_ARTIFACTS


@pytest.fixture(scope="package")
def browser_ready() -> None:
    problem = H.browser_problem()
    if problem is None:
        return
    if H.in_ci():
        pytest.fail(f"CI=true but the browser tests cannot run: {problem}", pytrace=False)
    pytest.skip(f"browser tests need a browser: {problem}")


@pytest.fixture(scope="package")
def server(browser_ready):
    E2E_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = E2E_ARTIFACTS / "streamlit.log"
    log.unlink(missing_ok=True)
    with H.StreamlitServer(log_path=log) as srv:
        yield srv


@pytest.fixture(scope="package")
def browser(browser_ready):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = H.launch_chromium(p)
        yield chromium
        chromium.close()


@pytest.fixture(scope="package")
def warm_server(server, browser):
    """The server after one visit to the front page, so that no test pays the cold first
    run (torch imports, data sets) inside its own timings, and test order does not matter
    (Streamlit treats a fresh server's first run specially; see the cold-server test)."""
    context = browser.new_context(viewport=H.VIEWPORT)
    try:
        H.AppPage.open(context).goto(server.url(), timeout_ms=120_000)
    finally:
        context.close()
    return server


@pytest.fixture
def app(browser, warm_server, request):
    """A fresh tab (own context: no shared session, cookies or storage) on the warm server."""
    context = browser.new_context(viewport=H.VIEWPORT)
    context.set_default_timeout(30_000)
    page = H.AppPage.open(context)
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:  # keep a picture of what the browser showed
        name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
        try:
            page.screenshot(E2E_ARTIFACTS / "failures" / f"{name}.png")
        except Exception as exc:  # the page may be gone; the test's own error matters more
            print(f"(no failure screenshot: {exc})")
    context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
