"""The Deploy & port page's Fold tab in AppTest: its default view, every control at its extremes
without an exception, the URL both ways, and the download."""

from __future__ import annotations

import pytest

from normcore.lab import limits
from normcore.lab.experiments.deploy.fold_options import FIELDS
from tests.apptest_pages import open_page

PAGE = "pages/deploy_port.py"
TAB_TITLES = ["🧩 Fold BatchNorm", "🔁 Port between frameworks", "🎯 Precision"]  # pages/deploy_port.py::TABS
FOLD_TAB = TAB_TITLES[0]


def shown(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def assert_fold_view(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    metrics = shown(at)
    assert float(metrics["max |Δ| folded vs unfolded"]) < 1e-4
    assert float(metrics["max |Δ| torch.nn.utils.fusion"]) < 1e-4
    assert metrics["inference speed-up"].endswith("×")
    assert len(at.get("vega_lite_chart")) == 1 and len(at.get("download_button")) == 1
    assert any("weights_only=True" in c.value for c in at.code)
    assert [s.value for s in at.main.subheader] == ["The classic mistakes, made live", "Download the folded weights"]


@pytest.fixture(scope="module")
def at():
    at = open_page(PAGE, timeout=120)
    at.session_state["deploy_tab"] = FOLD_TAB  # the way a visitor's tab choice is kept
    at.run()
    return at


def test_default_view_folds_the_trained_cnn(at):
    assert [t.label for t in at.tabs] == TAB_TITLES
    assert_fold_view(at)
    assert shown(at)["parameters"] == f"{5114 - 2 * 16 * 2:,}"  # the default CNN less γ and β of 2×16 channels
    text = " ".join(m.value for m in at.markdown)
    for mistake in ("one batch of 16 digits", "γ dropped from the bias", "as if the ReLU were not there",
                    "Folded in float16", "without transpose=True"):
        assert mistake in text, mistake
    assert any("folded body.0.1 (BatchNorm2d) into body.0.0 (Conv2d)" in c.value for c in at.code)


def test_the_smallest_settings(at):
    for name in ("width", "depth", "batch", "repeats"):
        at.slider(key=f"fold_{name}").set_value(int(FIELDS[name].low))
    at.number_input(key="fold_seed").set_value(0)
    at.run()
    assert_fold_view(at)
    assert shown(at)["parameters"] == f"{(9 * 4 + 4) + 4 * 16 * 10 + 10:,}"  # conv 1→4 with bias, the head
    assert at.query_params["f_width"] == "4" and at.query_params["f_depth"] == "1"


def test_the_largest_settings_cap_the_timing_and_say_so(at):
    at.radio(key="fold_source").set_value("calibrated")
    for name in ("width", "depth", "batch", "repeats"):
        at.slider(key=f"fold_{name}").set_value(int(FIELDS[name].high))
    at.number_input(key="fold_seed").set_value(2**31 - 1)
    at.run()
    assert_fold_view(at)
    assert any("Timing:" in w.value and f"instead of {limits.MAX_FOLD_REPEATS}" in w.value for w in at.warning)
    assert at.query_params["f_model"] == "calibrated" and at.query_params["f_seed"] == str(2**31 - 1)


def test_a_link_opens_the_tab_with_its_options_and_explains_a_bad_one():
    at = open_page(PAGE, timeout=120, f_width="8", f_depth="1", f_model="calibrated", f_batch="9999")
    assert not at.exception and not at.error
    assert at.slider(key="fold_width").value == 8 and at.radio(key="fold_source").value == "calibrated"
    assert any("Ignored URL parameter f_batch='9999'" in w.value for w in at.warning)
    assert shown(at)["parameters"] == f"{(9 * 8 + 8) + 8 * 16 * 10 + 10:,}"
