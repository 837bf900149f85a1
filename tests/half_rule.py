"""The half-precision rule of issue 26, shared by every test of float16/bfloat16 (and the
closing-note figures in ``benchmarks/half_precision.py``):

    max|normcore − f64| ≤ max|torch − f64| + atol + rtol · max|f64|

f64 is torch run in float64 on the same (upcast) values; atol, rtol are
``torch.testing.assert_close``'s defaults for the half dtype.
"""

from __future__ import annotations

import torch

HALF = (torch.float16, torch.bfloat16)
TOLERANCE = {torch.float16: (1e-5, 1e-3), torch.bfloat16: (1e-5, 1.6e-2)}  # assert_close's (atol, rtol)


def max_error(t, f64) -> float:
    """max|t − f64|; NaN where the arbiter has NaN is exact."""
    err = (t.double() - f64).abs()
    err = torch.where(t.isnan() & f64.isnan(), 0.0, err)
    return err.nan_to_num(float("inf")).max().item() if err.numel() else 0.0


def assert_within_rule(ours: dict, theirs: dict, exact: dict, dtype, label: str = "") -> None:
    """Every tensor of ``exact`` (float64): normcore's dtype and shape are torch's, and its error
    is within torch's plus one assert_close tolerance of the dtype."""
    atol, rtol = TOLERANCE[dtype]
    assert set(ours) == set(theirs) == set(exact)
    for key, f64 in exact.items():
        assert (ours[key].dtype, ours[key].shape) == (theirs[key].dtype, theirs[key].shape), key
        mine, torch_error = max_error(ours[key], f64), max_error(theirs[key], f64)
        largest = f64.abs().nan_to_num(0.0, posinf=0.0, neginf=0.0).max().item() if f64.numel() else 0.0
        bound = torch_error + atol + rtol * largest
        assert mine <= bound, f"{label}{key}: normcore {mine:.3g} > torch {torch_error:.3g} + tolerance = {bound:.3g}"
