"""The "Small batches" train-vs-eval scenario (Batch Renormalization): what its numbers must show."""

from __future__ import annotations

import pytest

from normcore.lab.experiments import train_eval as te
from normcore.lab.settings import DEFAULTS


@pytest.fixture(scope="module")
def result():
    return te.run_scenario("renorm", DEFAULTS, {"steps": 80})


def test_gaps_order_as_the_paper_says_and_groupnorm_has_none(result):
    gaps = result.frames["results"].pivot(index="setting", columns="norm", values="train_eval_gap")
    assert set(gaps.columns) == set(te.RENORM_NORMS) and len(gaps) == 5
    assert (gaps["GroupNorm"] < 1e-6).all()  # no batch statistics: train and eval are one computation
    # Batch Renorm trains toward its eval: far smaller gaps than BatchNorm's at every setting.
    assert (gaps["Batch Renorm"] < 0.5 * gaps["BatchNorm"]).all()
    assert gaps.loc["micro-batch 2", "BatchNorm"] > gaps.loc["micro-batch 16", "BatchNorm"]


def test_r_and_d_follow_the_schedule_bounds(result):
    trace = result.frames["trace"]
    assert trace.r_max.iloc[0] == 1.0 and trace.d_max.iloc[0] == 0.0 and trace.r_max.max() == 3.0
    assert (trace["mean r"] <= trace.r_max + 1e-6).all() and (trace["mean |d|"] <= trace.d_max + 1e-6).all()
    at2 = trace[(trace.setting == "micro-batch 2") & (trace.r_max == 3.0)]["mean r"]
    assert 0.5 < at2.mean() < 0.95  # r centres near 1/√2 at two values per channel


def test_headline_names_every_norm_and_the_paper(result):
    assert all(n in result.headline.value for n in te.RENORM_NORMS)
    assert any("Ioffe 2017" in m.message for m in result.messages)
