"""The Gradients page in a real browser: open it, change the norm and the upstream gradient, and
check that the readouts, the URL and the charts (the marks Vega drew) follow."""

from __future__ import annotations

import pytest

from tests.e2e import harness as H
from tests.e2e.harness import E2E_ARTIFACTS
from tests.e2e.plans import MAIN, by_path, metric, page_url, problems

pytestmark = pytest.mark.e2e
CHARTS = '[data-testid="stVegaLiteChart"]'


def assert_healthy(app: H.AppPage) -> None:
    found = problems(app)
    assert not found, "the page is not healthy:\n" + "\n".join(found)


def chart_marks(app: H.AppPage) -> list[tuple[str, ...]]:
    """Each Vega chart of the page as drawn: the aria-label of every mark in its SVG, which
    Vega writes from the mark's data (a heatmap cell: i, j and ∂y_i/∂x_j). Pixels are no use
    here: the same chart screenshotted twice can differ by antialiasing."""
    charts = app.page.locator(f"{MAIN} {CHARTS}")
    charts.first.wait_for(state="visible", timeout=60_000)
    app.page.wait_for_timeout(500)  # let Vega finish drawing
    return [tuple(charts.nth(i).locator('[role="graphics-symbol"]').evaluate_all(
        "marks => marks.map(m => m.getAttribute('aria-label'))")) for i in range(charts.count())]


def choose(app: H.AppPage, label: str, option: str) -> None:
    box = app.page.locator(f'{MAIN} input[role="combobox"][aria-label="{label}"]')
    box.click()
    box.press_sequentially(option)
    box.press("Enter")
    app.wait_for_rerun()


def test_changing_norm_and_upstream_gradient_updates_the_charts(app, warm_server):
    app.goto(page_url(warm_server, by_path("gradients")))
    page = app.page
    assert_healthy(app)
    assert float(metric(page, "max |Δ| dx")) < 1e-12
    assert float(metric(page, "max |entry| across samples")) > 0.1  # BatchNorm couples the samples
    identity, heatmap, coupling = chart_marks(app)
    assert sum(m.startswith("input x_j") for m in heatmap) == 25 * 25  # one cell per (i, j) of the worked example
    assert chart_marks(app) == [identity, heatmap, coupling], "the same charts must give the same marks"

    choose(app, "Normalization", "LayerNorm")
    assert_healthy(app)
    assert "g_norm=layer" in page.url
    assert float(metric(page, "max |entry| across samples")) == 0.0  # one block per sample
    after_norm = chart_marks(app)
    assert after_norm[1] != heatmap, "the Jacobian heatmap did not change with the norm"
    assert after_norm[0] != identity, "the identity-vs-eps chart did not change with the norm"

    app.click(page.locator(MAIN).get_by_text("All ones", exact=True))
    assert_healthy(app)
    assert "g_dy=ones" in page.url
    assert any("undone by subtracting the mean" in t for t in page.locator(MAIN).all_inner_texts())
    after_upstream = chart_marks(app)
    assert after_upstream[0] != after_norm[0], "the identity-vs-eps chart did not change with dy"
    assert after_upstream[2] == coupling  # the 1/N sweep is BatchNorm's whatever the page's norm and dy
    app.screenshot(E2E_ARTIFACTS / "gradients-layernorm-ones.png")


def test_rmsnorm_opened_from_a_link(app, warm_server):
    """RMSNorm selected through the URL: its closed form matches autograd and it couples no samples."""
    app.goto(page_url(warm_server, by_path("gradients"), g_norm="rms"))
    assert_healthy(app)
    assert any("RMSNorm" in t for t in app.page.locator(MAIN).all_inner_texts())
    assert float(metric(app.page, "max |Δ| dx")) < 1e-12
    assert float(metric(app.page, "max |entry| across samples")) == 0.0  # one block per sample


def open_part(app: H.AppPage, title: str) -> list[tuple[str, ...]]:
    """Click the part's tab, let its default computation finish, return its charts' marks."""
    tab = app.page.locator(MAIN).get_by_role("tab", name=title)
    app.click(tab, timeout_ms=180_000)
    assert tab.get_attribute("aria-selected") == "true"
    app.page.locator(MAIN).get_by_role("heading", name=title).wait_for(state="visible", timeout=120_000)
    return chart_marks(app)


def test_parts_three_and_four_at_their_defaults(app, warm_server):
    """Each tab's default: trained live, then its charts drawn, its measured words shown."""
    app.goto(page_url(warm_server, by_path("gradients")))
    marks = open_part(app, "3 · Gradient flow in depth")
    assert_healthy(app)
    assert len(marks) == 7 and all(marks), "part 3: a chart drew nothing"
    words = " ".join(app.page.locator(MAIN).all_inner_texts())
    assert "std at layer 1 is" in words and "that at layer 20" in words  # the default depth, measured
    assert "Yang et al. 2019" in words
    app.screenshot(E2E_ARTIFACTS / "gradients-flow.png")
    marks = open_part(app, "4 · The landscape")
    assert_healthy(app)
    assert len(marks) == 6 and all(marks), "part 4: a chart drew nothing"
    words = " ".join(app.page.locator(MAIN).all_inner_texts())
    assert "Measured here: the loss band is" in words and "in train mode on one fixed batch" in words
    app.screenshot(E2E_ARTIFACTS / "gradients-landscape.png")
