"""The Deploy & port page in a real browser: it opens on the Fold tab with its readouts, a
control moves the URL, and the downloaded state_dict loads with torch.load(weights_only=True)."""

from __future__ import annotations

import pytest
import torch

from tests.e2e import harness as H
from tests.e2e.harness import E2E_ARTIFACTS
from tests.e2e.plans import MAIN, by_path, metric, page_url, problems, slider

pytestmark = pytest.mark.e2e


def assert_healthy(app: H.AppPage) -> None:
    found = problems(app)
    assert not found, "the page is not healthy:\n" + "\n".join(found)


def test_fold_tab_default_view_and_its_download(app, warm_server, tmp_path):
    app.goto(page_url(warm_server, by_path("deploy_port")), timeout_ms=120_000)
    page = app.page
    assert_healthy(app)
    fold_tab = page.locator(MAIN).get_by_role("tab").first
    assert "Fold BatchNorm" in fold_tab.inner_text() and fold_tab.get_attribute("aria-selected") == "true"
    assert float(metric(page, "max |Δ| folded vs unfolded")) < 1e-4
    assert metric(page, "inference speed-up").endswith("×")
    page.locator(f'{MAIN} [data-testid="stVegaLiteChart"]').first.wait_for(state="visible")
    assert any("weights_only=True" in t for t in page.locator(f'{MAIN} [data-testid="stCode"]').all_inner_texts())

    with page.expect_download() as download:
        page.locator(MAIN).get_by_role("button", name="Folded state_dict", exact=False).click()
    saved = tmp_path / "folded.pt"
    download.value.save_as(saved)
    state = torch.load(saved, weights_only=True)
    assert "body.0.0.weight" in state and not any(k.startswith("body.0.1.") for k in state)  # the BN is folded away
    assert_healthy(app)

    thumb = slider(page, "Batch the train-mode fold sees").first
    app.press_slider(thumb, "End")
    assert_healthy(app)
    assert "f_batch=256" in page.url
    assert "one batch of 256 digits" in page.locator(MAIN).inner_text()
    app.screenshot(E2E_ARTIFACTS / "deploy_port-fold.png")
