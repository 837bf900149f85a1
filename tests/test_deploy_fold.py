"""The Fold tab's experiment (normcore.lab.experiments.deploy): the folded digits CNN against the
unfolded one, its counts, timing and download, and each classic mistake against the right way."""

from __future__ import annotations

import io

import pytest
import torch
from torch.testing import assert_close

from normcore.lab import limits
from normcore.lab.experiments.deploy import fold as F
from normcore.lab.experiments.deploy import mistakes as M
from normcore.lab.experiments.deploy.fold_options import FIELDS, FoldOptions
from normcore.lab.models import make_model

WIDTH, DEPTH = 8, 2


@pytest.fixture(scope="module", params=["trained", "calibrated"])
def folded(request):
    o = FoldOptions(source=request.param, width=WIDTH, depth=DEPTH, repeats=5)
    cnn = F.build_model(o)
    return o, cnn, F.run(o, cnn)


def test_the_fold_equals_the_unfolded_model_and_so_does_torchs(folded):
    _, cnn, r = folded
    assert not cnn.model.training
    rows = r.parity.set_index("comparison")
    assert rows.max_abs_delta.max() < 1e-4 and (rows.predictions_changed == 0).all()
    assert r.accuracy == cnn.accuracy


def test_trained_model_learns_the_digits():
    cnn = F.build_model(FoldOptions(width=WIDTH, depth=1))
    assert cnn.accuracy > 0.85


def test_counts_lose_each_batchnorm_and_its_four_vectors(folded):
    _, _, r = folded
    c = r.counts.set_index("what")
    assert c.loc["BatchNorm layers"].tolist() == [DEPTH, 0]
    layers_before, layers_after = c.loc["layers (leaf modules, Identity not counted)"]
    assert layers_before - layers_after == DEPTH
    params_before, params_after = c.loc["parameters"]
    assert params_before - params_after == 2 * WIDTH * DEPTH  # γ and β; the convs already had biases
    values_before, values_after = c.loc["values in the state_dict (parameters + buffers)"]
    assert values_before - values_after == 4 * WIDTH * DEPTH  # and μ, σ²


def test_timing_alternates_the_versions_and_reports_a_ratio(folded):
    o, _, r = folded
    assert r.timing.passes == o.repeats and r.timing.speedup > 0 and r.timing.unfolded_ms > 0 and r.timing.folded_ms > 0
    repeats, message = limits.fold_timing_repeats(limits.MAX_FOLD_REPEATS, 1e9)
    assert repeats == limits.MAX_FOLD_TIMING_MACS // 2e9 and "instead of 200" in message
    assert limits.fold_timing_repeats(30, 1e3) == (30, None)


def test_the_speedup_is_the_unfolded_time_over_the_folded_one():
    x = torch.randn(256, 256)
    light, heavy = torch.nn.Linear(256, 256), torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(6)])
    assert F.time_versions(heavy, light, x, 5).speedup > 2 > 0.5 > F.time_versions(light, heavy, x, 5).speedup


def test_the_download_loads_with_weights_only_into_the_batchnorm_free_cnn(folded, tmp_path, monkeypatch):
    o, cnn, r = folded
    state = torch.load(io.BytesIO(r.state_bytes), weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    (tmp_path / F.FILE_NAME).write_bytes(r.state_bytes)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(r.snippet, scope)  # the snippet the tab shows, as it is
    with torch.no_grad():
        assert_close(scope["model"](cnn.data.x_test), cnn.model(cnn.data.x_test))
    assert "weights_only=True" in r.snippet and not scope["model"].training


def test_every_mistake_is_far_worse_than_the_right_way(folded):
    _, _, r = folded
    rows = r.mistakes.set_index("key")
    assert list(rows.index) == ["train_mode", "dropped_gamma", "across_relu", "float16", "transpose"]
    for key in ("train_mode", "dropped_gamma", "across_relu", "transpose"):
        assert rows.error[key] > 1e-2 and rows.right_error[key] < 1e-4, key
    assert rows.right_error["across_relu"] == 0  # normcore.fold_batchnorm leaves it: the model as it was
    # float16: the right way keeps the rounding of float16 weights; the mistake adds float16 arithmetic
    assert rows.error["float16"] > 1.3 * rows.right_error["float16"] and rows.right_error["float16"] < 1e-2
    assert "Call model.eval() first" in rows.explanation["train_mode"]
    assert "pass transpose=True" in rows.explanation["transpose"]
    assert "not linear" in rows.explanation["across_relu"]


def test_a_larger_batch_bakes_in_less_noise():
    o = FoldOptions(source="calibrated", width=WIDTH, depth=DEPTH)
    cnn = F.build_model(o)
    with torch.no_grad():
        reference = cnn.model(cnn.data.x_test)
        small, large = (M.train_mode(cnn, FoldOptions(source="calibrated", width=WIDTH, depth=DEPTH, batch=b), reference)
                        for b in (2, limits.MAX_FOLD_BATCH))
    assert small.error > large.error > 1e-3


def test_options_from_the_url_and_their_checks():
    o, messages = FoldOptions.from_query({"f_width": "32", "f_depth": "9", "f_model": "calibrated", "f_batch": "x"})
    assert (o.width, o.depth, o.source, o.batch) == (32, FIELDS["depth"].default, "calibrated", FIELDS["batch"].default)
    assert len(messages) == 2 and "f_depth" in messages[0] and "f_batch" in messages[1]
    assert FoldOptions.from_query(o.to_query())[0] == o and o.to_query() == {"f_width": "32", "f_model": "calibrated"}
    with pytest.raises(ValueError, match="width"):
        FoldOptions(width=limits.MAX_FOLD_WIDTH + 1)
    assert all(name.startswith("f_") for name in FIELDS.url_names)
    assert make_model("cnn", norm="none", width=4, depth=1)  # what the snippet builds


def test_the_mistakes_chart_draws_an_exact_zero_at_its_floor(folded):
    from normcore.lab.viz.deploy_charts import FLOOR, mistakes_chart

    spec = mistakes_chart(folded[2].mistakes).to_dict()
    rows = [r for data in spec["datasets"].values() for r in data]
    zero = [r for r in rows if r["error"] == 0]
    assert zero and all(r["shown"] == FLOOR and r["label"] == "0 (exactly)" for r in zero)
    assert len(spec["layer"]) == 3
