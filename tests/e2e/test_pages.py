"""Every page of the lab in a real headless Chromium against a real `streamlit run app.py`.

The pages are discovered from ``pages/shared/navigation.py``, so a new page is covered by
``test_page`` (open, move a slider, press its main button, no exception, no console error,
screenshot) without touching this file; ``tests/e2e/plans.py`` says, where the generic
choice is not the right one, which slider and button a page's check should use.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.e2e import harness as H
from tests.e2e.harness import E2E_ARTIFACTS
from tests.e2e.plans import (
    ALL_PAGES, DIALOG, MAIN, OVERVIEW, PAGES, PLANS, Plan, button, by_path, metric, move_slider, page_url,
    press_main_button, problems, slider, visible,
)

pytestmark = pytest.mark.e2e


def assert_healthy(app: H.AppPage) -> None:
    found = problems(app)
    assert not found, "the page is not healthy:\n" + "\n".join(found)


@pytest.mark.parametrize("info", ALL_PAGES, ids=[p.url_path for p in ALL_PAGES])
def test_page(app, warm_server, info):
    plan = PLANS.get(info.url_path, Plan())
    started = time.monotonic()
    app.goto(page_url(warm_server, info, **plan.query))
    assert app.page.locator(f"{MAIN} h1").first.is_visible(), "page has no title"
    assert_healthy(app)
    done = [move_slider(app, plan)]
    assert_healthy(app)
    done.append(press_main_button(app, plan))
    assert_healthy(app)
    if plan.check:
        plan.check(app, warm_server)
    shot = app.screenshot(E2E_ARTIFACTS / f"{info.url_path}.png")
    print(f"{info.url_path}: {'; '.join(done)}; {time.monotonic() - started:.1f} s; {shot}")


def test_every_tab_of_every_page_opens(app, warm_server):
    """Tabs that compute only when open (train_vs_eval's scenarios) must each work in the browser."""
    opened = 0
    for info in ALL_PAGES:
        app.goto(page_url(warm_server, info))
        tabs = app.page.locator(MAIN).get_by_role("tab")
        for i in range(tabs.count()):
            app.click(tabs.nth(i), timeout_ms=180_000)
            assert tabs.nth(i).get_attribute("aria-selected") == "true"
            assert_healthy(app)
            opened += 1
    print(f"{opened} tabs opened")


def test_sidebar_navigation_reaches_every_page(app, warm_server):
    app.goto(warm_server.url())
    links = app.page.locator(H.SIDEBAR_LINKS)
    assert links.count() == len(ALL_PAGES)
    for info in ALL_PAGES:
        app.click(app.page.locator(H.SIDEBAR_LINKS).filter(has_text=info.title).first)
        wanted = "/" if info is OVERVIEW else f"/{info.url_path}"
        app.page.wait_for_url(re.compile(re.escape(warm_server.base_url + wanted) + r"(\?.*)?$"))
        app.wait_for_rerun()
        assert app.page.locator(f"{MAIN} h1").first.is_visible()
        assert_healthy(app)


def test_overview_links_open_every_page(app, warm_server):
    for info in PAGES:
        app.goto(warm_server.url())
        app.click(app.page.locator(MAIN).get_by_role("link", name=f"Open {info.title}"))
        app.page.wait_for_url(re.compile(re.escape(f"{warm_server.base_url}/{info.url_path}") + r"(\?.*)?$"))
        app.wait_for_rerun()
        assert_healthy(app)


# Words of the overview's card titles that the browser broke across lines (a break after a hyphen is not inside a word).
WORDS_BROKEN_INSIDE = """() => {
  const broken = [];
  for (const title of document.querySelectorAll('[data-testid="stMain"] [data-testid="stColumn"] h3')) {
    const walker = document.createTreeWalker(title, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.textContent.matchAll(/[^\\s-]+-?/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        if (new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1) broken.push(word[0]);
      }
    }
  }
  return broken;
}"""


def test_overview_card_titles_never_break_inside_a_word(app, warm_server):
    """Six cards in six columns broke "Training compariso / n" at 1280 px: a grid of three per row,
    narrower screens a card's minimum width (pages/shared/navigation.py: CARD_GRID_CSS)."""
    app.goto(warm_server.url())
    assert app.page.locator(f"{MAIN} h3").count() == len(PAGES)
    for width in (1920, 1280, 900):  # the layout follows the window in the browser: no rerun
        app.page.set_viewport_size({"width": width, "height": 900})
        app.page.wait_for_timeout(300)
        assert app.page.evaluate(WORDS_BROKEN_INSIDE) == [], width
    assert_healthy(app)


def test_live_stream_plays_and_pauses(app, warm_server):
    app.goto(page_url(warm_server, by_path("live_statistics")))
    main = app.page.locator(MAIN)
    assert metric(app.page, "num_batches_tracked") == "0"
    app.click(button(main, "Play"))
    deadline = time.monotonic() + 30
    while int(metric(app.page, "num_batches_tracked")) < 3:  # Play ticks every 0.5 s
        assert time.monotonic() < deadline, "Play did not stream batches"
        app.page.wait_for_timeout(250)
    app.click(button(main, "Pause"))
    paused_at = metric(app.page, "num_batches_tracked")
    app.page.wait_for_timeout(1500)
    assert metric(app.page, "num_batches_tracked") == paused_at, "the stream kept going after Pause"
    app.click(button(main, "Step"))
    assert int(metric(app.page, "num_batches_tracked")) > int(paused_at)
    assert_healthy(app)


def test_live_statistics_opens_with_rmsnorm_selected(app, warm_server):
    """A link with norm=rms: RMSNorm is selected, and the page shows its output is not zero-mean."""
    app.goto(page_url(warm_server, by_path("live_statistics"), norm="rms", mean_offset=5))
    page, main = app.page, app.page.locator(MAIN)
    assert page.locator('input[role="combobox"][aria-label="Normalization"]').input_value() == "RMSNorm"
    assert main.get_by_text("not zero-mean").count() >= 1 and main.get_by_text("Mean offset").count() >= 1
    measured, predicted = float(metric(page, "Output mean, measured")), float(metric(page, "Output mean, predicted"))
    assert measured == pytest.approx(predicted, abs=1e-3) and measured > 0.95  # 5/√26 ≈ 0.98
    assert metric(page, "Output RMS, measured") == "1.000"
    app.click(button(main, "Step"))
    assert metric(page, "num_batches_tracked") == "—"
    assert main.get_by_text("RMSNorm keeps no running statistics").count() == 1
    assert "norm=rms" in page.url and "mean_offset=5" in page.url
    assert_healthy(app)
    app.screenshot(E2E_ARTIFACTS / "live_statistics-rms.png")


def test_training_config_upload_runs_and_downloads(app, warm_server, tmp_path):
    from normcore.lab.experiments.training import RunConfig

    app.goto(page_url(warm_server, by_path("training")))
    page, main = app.page, app.page.locator(MAIN)
    main.get_by_text("Load a saved run configuration").click()
    uploader = main.locator('[data-testid="stFileUploader"]')
    assert "1MB" in uploader.inner_text(), "the hosted-demo upload limit (.streamlit/config.toml) is not in effect"
    # A broken file is refused with a message, not a traceback.
    bad = tmp_path / "broken.json"
    bad.write_text('{"kind": "normcore-training-config", "epochs": ')
    uploader.locator('input[type="file"]').set_input_files(bad)
    # The upload's HTTP request comes before its rerun, so wait for the outcome itself:
    # on a loaded machine the rerun can start later than wait_for_rerun's start window.
    refused = page.locator('[data-testid="stAlertContentError"]').filter(has_text="cannot be loaded")
    refused.wait_for(timeout=60_000)
    app.wait_for_rerun()
    assert refused.count() == 1
    assert_healthy(app)
    # A tiny saved configuration loads and runs at once.
    tiny = tmp_path / "tiny.json"
    tiny.write_text(RunConfig(epochs=1, width=8, depth=1, norms=("batch", "layer"), devices=("cpu",)).to_json())
    uploader.locator('input[type="file"]').set_input_files(tiny)
    loaded = page.locator('[data-testid="stAlertContentSuccess"]').filter(has_text="Configuration loaded")
    loaded.wait_for(timeout=180_000)
    app.wait_for_rerun(timeout_ms=180_000)
    assert loaded.count() == 1
    assert_healthy(app)
    # Both downloads hold what the page shows.
    with page.expect_download() as csv_download:
        button(main, "Results (CSV)").click()
    rows = Path(csv_download.value.path()).read_text().splitlines()
    assert "Test accuracy" in rows[0] and len(rows) == 3, rows  # header + BatchNorm + LayerNorm
    with page.expect_download() as json_download:
        button(main, "Configuration (JSON)").click()
    saved = json.loads(Path(json_download.value.path()).read_text())
    assert (saved["epochs"], saved["width"], saved["norms"]) == (1, 8, ["batch", "layer"])
    assert_healthy(app)


def test_deep_link_opens_the_same_view(app, warm_server):
    live = by_path("live_statistics")
    app.goto(page_url(warm_server, live, batch_size=64, norm="group", num_groups=4))
    page = app.page
    assert slider(page, "Batch size N").input_value() == "64"
    assert slider(page, "Groups G (GroupNorm)").input_value() == "4"
    assert page.locator('input[role="combobox"][aria-label="Normalization"]').input_value() == "GroupNorm"
    # The URL keeps describing the view, so copying it again shares the same thing.
    for param in ("batch_size=64", "norm=group", "num_groups=4"):
        assert param in page.url
    assert_healthy(app)


def test_training_link_opens_that_comparison_and_its_curves_grow_while_it_trains(app, warm_server):
    training = by_path("training")
    app.goto(page_url(warm_server, training, model="cnn", width=32, epochs=6, norms="none,batch"))
    page, main = app.page, app.page.locator(MAIN)
    assert page.locator('input[role="combobox"][aria-label="Model"]').input_value().startswith("CNN")
    assert slider(page, "Epochs").input_value() == "6" and slider(page, "Width (units or channels)").input_value() == "32"
    for param in ("model=cnn", "width=32", "epochs=6", "norms=none%2Cbatch"):
        assert param in page.url, page.url
    button(main, "Run").click()
    # Live: both charts are on the page while the second variant trains (the first one's
    # curves are complete by then), before the run has finished.
    charts, progress = main.locator('[data-testid="stVegaLiteChart"]'), main.locator('[data-testid="stProgress"]')
    deadline, seen_live = time.monotonic() + 120, False
    while time.monotonic() < deadline and not seen_live:
        seen_live = charts.count() >= 2 and "Training 2/2" in progress.inner_text()
        page.wait_for_timeout(100)
    assert seen_live, "the curves did not appear while the run was training"
    page.screenshot(path=str(E2E_ARTIFACTS / "training-live.png"))
    app.wait_for_rerun(timeout_ms=180_000, started_within_ms=0)
    assert "Finished" in progress.inner_text()
    assert_healthy(app)


def test_bad_url_parameter_is_explained(app, warm_server):
    live = by_path("live_statistics")
    app.goto(page_url(warm_server, live, batch_size="lots", channels=4))
    warning = app.page.locator('[data-testid="stAlertContentWarning"]').filter(has_text="batch_size")
    assert warning.count() >= 1, "a bad URL parameter should be explained in a warning"
    assert slider(app.page, "Batch size N").input_value() == "32"
    assert_healthy(app)


def test_shared_link_on_a_cold_server_has_no_page_not_found(browser, browser_ready):
    """A fresh server's first session is routed by Streamlit's pages/-folder scan before
    st.navigation takes over; a link to a url_path that is not a script name in pages/ then
    got a 'Page not found' dialog. navigation.py keeps every url_path equal to its script's
    stem, and this guards it."""
    live = by_path("live_statistics")
    with H.StreamlitServer(log_path=E2E_ARTIFACTS / "streamlit-cold.log") as server:
        context = browser.new_context(viewport=H.VIEWPORT)
        try:
            app = H.AppPage.open(context)
            app.goto(page_url(server, live, batch_size=64), timeout_ms=120_000)
            assert not visible(app.page.locator(DIALOG)), "'Page not found' on the first visit"
        finally:
            context.close()
