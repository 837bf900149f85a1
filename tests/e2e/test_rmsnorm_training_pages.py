"""RMSNorm in a real browser on the Training comparison and Train vs eval pages, each opened
from a link (URL parameters) with RMSNorm selected."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from normcore.lab import devices
from tests.e2e import harness as H
from tests.e2e.harness import E2E_ARTIFACTS
from tests.e2e.plans import MAIN, button, by_path, page_url, problems, slider

pytestmark = pytest.mark.e2e


def assert_healthy(app: H.AppPage) -> None:
    found = problems(app)
    assert not found, "the page is not healthy:\n" + "\n".join(found)


def test_training_link_with_rmsnorm_trains_it_and_the_results_hold_its_row(app, warm_server):
    cpu = devices.all_targets()[0].key  # one thread where there are several: least disturbed on a busy machine
    app.goto(page_url(warm_server, by_path("training"), width=8, epochs=1, norms="rms,layer", devices=cpu))
    page, main = app.page, app.page.locator(MAIN)
    chosen = main.locator('[data-testid="stMultiSelect"]').filter(has_text="Normalizations").first
    assert "RMSNorm" in chosen.inner_text() and "LayerNorm" in chosen.inner_text()
    assert slider(page, "Epochs").input_value() == "1"
    app.click(button(main, "Run"), timeout_ms=180_000)
    assert "Finished" in main.locator('[data-testid="stProgress"]').inner_text()
    assert_healthy(app)
    with page.expect_download() as csv_download:
        button(main, "Results (CSV)").click()
    rows = list(csv.DictReader(Path(csv_download.value.path()).read_text().splitlines()))
    rms = next(r for r in rows if r["Normalization"] == "RMSNorm")
    assert rms["Status"] == "finished" and math.isfinite(float(rms["Test accuracy"]))
    app.screenshot(E2E_ARTIFACTS / "training-rmsnorm.png")


def test_train_vs_eval_link_with_rmsnorm_shows_it_does_not_differ(app, warm_server):
    app.goto(page_url(warm_server, by_path("train_vs_eval"), norm="rms"))
    page, main = app.page, app.page.locator(MAIN)
    assert page.locator('input[role="combobox"][aria-label="Normalization"]').input_value() == "RMSNorm"
    assert "norm=rms" in page.url
    # The warm-up tab (open first): RMSNorm has no running statistics, so the chart shows BatchNorm.
    info = main.locator('[data-testid="stAlertContentInfo"]').filter(has_text="RMSNorm keeps no running statistics")
    info.first.wait_for(state="visible", timeout=60_000)
    assert_healthy(app)
    app.click(main.get_by_role("tab").filter(has_text="Which norms"), timeout_ms=120_000)
    assert "GroupNorm and RMSNorm compute the same thing in both modes" in main.inner_text()
    assert main.locator('[data-testid="stVegaLiteChart"]').count() >= 1
    assert_healthy(app)
    app.screenshot(E2E_ARTIFACTS / "train_vs_eval-rmsnorm.png")
