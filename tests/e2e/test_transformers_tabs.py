"""The Transformers page's Stability and Which-norm tabs in a real browser, each opened from a
link (the tab is bound to the URL's ``transformers_tab``) on tiny settings: the Stability tab
ready to sweep with the link's rates (the sweep itself runs in the AppTests); the Which-norm
tab opens on its S-curve chart."""

from __future__ import annotations

import pytest

from tests.e2e import harness as H
from tests.e2e.plans import MAIN, by_path, page_url, problems

pytestmark = pytest.mark.e2e
CHARTS = '[data-testid="stVegaLiteChart"]'
TINY_SWEEP = dict(ts_rates="0.01,0.3", ts_steps=50, ts_warmup=0, ts_depth=1, ts_width=16, ts_heads=2, ts_context=8)
TINY_NORMS = dict(tn_steps=20, tn_depth=2, tn_width=16, tn_context=8, tn_sblock=2)


def open_tab(app: H.AppPage, server, tab: str, **query) -> None:
    app.goto(page_url(server, by_path("transformers"), transformers_tab=tab, batch_size=4, **query), timeout_ms=120_000)
    # The tab strip can mount after the run is idle: wait for the linked tab to show as selected.
    app.page.locator(MAIN).get_by_role("tab", name=tab, selected=True).wait_for(timeout=30_000)
    found = problems(app)
    assert not found, "the page is not healthy:\n" + "\n".join(found)


def test_stability_tab_opens_from_a_link_ready_to_sweep(app, warm_server):
    open_tab(app, warm_server, "📈 Stability", **TINY_SWEEP)
    main = app.page.locator(MAIN)
    main.get_by_text("the points arrive run by run", exact=False).first.wait_for(timeout=60_000)
    assert main.get_by_role("button", name="Run the sweep").is_enabled()
    assert "ts_rates=0.01%2C0.3" in app.page.url or "ts_rates=0.01,0.3" in app.page.url


def test_which_norm_tab_opens_on_the_s_curves(app, warm_server):
    open_tab(app, warm_server, "⚖️ Which norm", **TINY_NORMS)
    main = app.page.locator(MAIN)
    main.get_by_text("per-token input std", exact=False).first.wait_for(timeout=120_000)
    # Vega mounts a chart after the script's text is shown (on a first visit, about a second later).
    app.page.locator(f"{MAIN} {CHARTS}").first.wait_for(timeout=30_000)
    assert app.page.locator(f"{MAIN} {CHARTS}").count() == 1
    assert not problems(app)
