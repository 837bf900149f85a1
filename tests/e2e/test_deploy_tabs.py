"""The Deploy & port page's Port and Precision tabs in a real browser: each opened from a link
(the tab is bound to the URL's ``deploy_tab``), healthy, with its charts drawn; one control
changed on each, and the page follows."""

from __future__ import annotations

import pytest

from tests.e2e import harness as H
from tests.e2e.plans import MAIN, by_path, page_url, problems

pytestmark = pytest.mark.e2e
CHARTS = '[data-testid="stVegaLiteChart"]'
PORT, PRECISION = "🔁 Port between frameworks", "🎯 Precision"


def assert_healthy(app: H.AppPage) -> None:
    found = problems(app)
    assert not found, "the page is not healthy:\n" + "\n".join(found)


def open_tab(app: H.AppPage, server, tab: str, **query) -> None:
    app.goto(page_url(server, by_path("deploy_port"), deploy_tab=tab, **query), timeout_ms=120_000)
    selected = app.page.locator(MAIN).get_by_role("tab", name=tab)
    assert selected.get_attribute("aria-selected") == "true"
    charts = app.page.locator(f"{MAIN} {CHARTS}")
    charts.first.wait_for(state="visible", timeout=60_000)
    assert_healthy(app)


def drawn_charts(app: H.AppPage) -> int:
    """Charts whose SVG has marks in it (Vega drew them)."""
    app.page.wait_for_timeout(500)
    charts = app.page.locator(f"{MAIN} {CHARTS}")
    return sum(charts.nth(i).locator('[role="graphics-symbol"]').count() > 0 for i in range(charts.count()))


def test_port_tab_opens_from_a_link_and_shows_the_axis_error(app, warm_server):
    open_tab(app, warm_server, PORT, p_steps=10)
    assert drawn_charts(app) == 2
    main = app.page.locator(MAIN)
    assert main.get_by_text("normcore.BatchNorm1d(16, eps=0.001, momentum=0.01, unbiased_running_var=False)").count() == 1
    app.click(main.get_by_text("as typed: the target's default axis", exact=True))
    assert_healthy(app)
    assert "p_axis=as_typed" in app.page.url
    assert main.get_by_text("running_mean should contain 5 elements not 16", exact=False).count() >= 1


def test_precision_tab_opens_from_a_link_and_follows_the_dtype(app, warm_server):
    open_tab(app, warm_server, PRECISION)
    assert drawn_charts(app) == 2
    main = app.page.locator(MAIN)
    assert main.get_by_text("float16 overflow", exact=False).count() == 1
    app.click(main.get_by_text("bfloat16", exact=True))
    assert_healthy(app)
    assert "x_dtype=bfloat16" in app.page.url and drawn_charts(app) == 2
