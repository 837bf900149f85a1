"""The Precision tab's lab (normcore.lab.experiments.deploy.precision).

Oracles: float64 on the same rounded input, written out here with numpy-free torch float64
arithmetic; float16's largest value (65,504) and the dtype's own spacing for the input flags.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from normcore.lab.experiments.deploy import precision as X


@pytest.fixture(scope="module")
def float32_sweeps():
    return X.run(X.PrecisionOptions(per_decade=1)), X.run(X.PrecisionOptions(view="std", per_decade=1, offset=1e4))


def test_the_reference_is_the_textbook_formula_in_float64():
    x = X.make_input(1e3, 0.5, "float32")
    x64 = x.double()
    mean = x64.mean((0, 2, 3), keepdim=True)
    by_hand = (x64 - mean) / (((x64 - mean) ** 2).mean((0, 2, 3), keepdim=True) + 1e-5).sqrt()
    torch.testing.assert_close(X.reference("normcore", x, 1e-5), by_hand, rtol=1e-12, atol=1e-12)


def test_normcore_is_within_1e_5_of_float64_wherever_float32_holds_the_input(float32_sweeps):
    for frame in float32_sweeps:
        held = frame[(frame["method"] == "normcore") & (frame["input"] == "")]
        assert len(held) >= 4  # offset sweep: 0 … 1e7; std sweep at 1e4: 1 … 1e-3
        assert held["error"].max() <= 1e-5, held[["x", "error"]]
    assert (float32_sweeps[0]["input"] == "constant").any()  # offset 1e8: spacing 8, a std of 1 rounds away


@settings(max_examples=15, deadline=None)
@given(log_offset=st.floats(0, 7.5), log_std=st.floats(-4, 0), seed=st.integers(0, 1000))
def test_normcore_within_1e_5_at_random_points(log_offset, log_std, seed):
    offset, std = 10 ** log_offset, 10 ** log_std
    x = X.make_input(offset, std, "float32", seed)
    if X.input_flag(x):
        return  # float32 cannot hold this input: nothing to measure the method by
    y, _ = X.run_method("normcore", x, 1e-5)
    assert X.relative_error(y, X.reference("normcore", x, 1e-5)) <= 1e-5


def test_naive_is_worse_than_two_pass_at_large_offsets_and_goes_negative(float32_sweeps):
    frame = float32_sweeps[0].set_index(["x", "method"])
    for offset in (1e2, 1e3, 1e4, 1e5, 1e6):
        naive, two_pass = frame.loc[(offset, "naive"), "error"], frame.loc[(offset, "two_pass"), "error"]
        assert naive > 10 * two_pass, offset
    rows = X.measure_point(1e4, 1e-2, "float32", 1e-5)
    naive = next(r for r in rows if r["method"] == "naive")
    assert naive["negative"] and naive["variance"] < 0 and naive["reference_variance"] > 0
    by_method = {r["method"]: r["error"] for r in rows}
    assert min(by_method["torch_bn"], by_method["torch_ln"], by_method["torch_gn"]) > 1e-2  # the table
    assert by_method["normcore"] < 1e-5 and by_method["rms"] < 1e-6


def test_rmsnorm_the_control_has_no_cancellation(float32_sweeps):
    held = float32_sweeps[0][(float32_sweeps[0]["method"] == "rms")]
    assert held["error"].max() < 1e-6


def test_the_float16_overflow_point_and_its_fix():
    found = X.float16_overflow(per_decade=2)
    threshold = math.sqrt(65504.0)
    assert found.threshold == pytest.approx(threshold)
    offsets = [o for o, _ in X.sweep_points("offset", 2)]
    assert found.offset == min(o for o in offsets if o > threshold)  # the first point past it
    assert not math.isfinite(found.naive_variance)
    assert found.fixed_variance == pytest.approx(found.reference_variance, rel=0.05)
    below = X.make_input(100.0, 1.0, "float16")
    assert torch.isfinite(X.run_method("naive", below, 1e-5)[1]).all()


def test_inputs_the_dtype_cannot_hold_are_flagged():
    assert X.input_flag(X.make_input(1e5, 1.0, "float16")) == "inf"  # over 65,504
    assert X.input_flag(X.make_input(1e4, 1.0, "bfloat16")) == "constant"  # spacing 64 at 1e4
    assert X.input_flag(X.make_input(1e4, 1e-4, "float32")) == "constant"  # spacing ~1e-3
    assert X.input_flag(X.make_input(1e2, 1.0, "float16")) == ""


def test_options_from_the_url_and_the_sweep_points():
    o, messages = X.PrecisionOptions.from_query({"x_dtype": "float8", "x_points": "4", "x_offset": "1e6"})
    assert o.dtype == "float32" and o.per_decade == 4 and o.offset == 1e6 and "x_dtype" in messages[0]
    points = X.sweep_points("offset", 4)
    assert points[0] == (0.0, 1.0) and points[-1][0] == pytest.approx(1e8) and len(points) == 34
    assert X.sweep_points("std", 1, 1e2)[-1] == (1e2, pytest.approx(1e-6))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_normcore_half_layers_as_shipped_are_one_rounding_from_float64(dtype):
    """normcore's BatchNorm, LayerNorm, GroupNorm and RMSNorm (γ/β moved to the dtype with the layer)
    in float16/bfloat16: wherever the dtype holds the input, their error is that of float64's
    output rounded once to the dtype; torch's BatchNorm, which keeps μ in the dtype, is 10× past it."""
    frame = X.sweep("offset", dtype, per_decade=1)
    held = frame[frame["input"] == ""]
    assert set(held["offset"]) >= {0.0, 1.0, 10.0, 100.0} and set(X.NORMCORE_LAYERS) < set(held["method"])
    ours = ("normcore", *X.NORMCORE_LAYERS)
    for offset, std in held[["offset", "std"]].drop_duplicates().itertuples(index=False):
        x = X.make_input(offset, std, dtype)
        errors = held[held["offset"] == offset].set_index("method")["error"]
        for method in ours:
            y64 = X.reference(method, x, 1e-5)
            one_rounding = X.relative_error(y64.to(getattr(torch, dtype)), y64)
            assert errors[method] <= 1.01 * one_rounding + 1e-5, (method, offset, errors[method], one_rounding)
    at_100 = held[held["offset"] == 100.0].set_index("method")["error"]
    assert at_100["torch_bn"] > 10 * at_100["normcore"]
