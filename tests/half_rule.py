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


class Figures:
    """The closing-note figures, gathered as the tests run: per entry and dtype the samples run
    (and those torch and normcore both refused), the worst |normcore − f64| and |torch − f64|
    over every compared tensor, and every tensor where torch's error is the smaller."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict] = {}
        self.torch_closer: list[tuple[str, str, str, str, float, float]] = []

    def record(self, entry: str, dtype, sample: str, ours: dict | None, theirs: dict | None, exact: dict | None) -> None:
        row = self.rows.setdefault((entry, str(dtype)[6:]), {"samples": 0, "refused": 0, "normcore": 0.0, "torch": 0.0})
        row["samples"] += 1
        if exact is None:  # both raised
            row["refused"] += 1
            return
        for key, f64 in exact.items():
            mine, theirs_error = max_error(ours[key], f64), max_error(theirs[key], f64)
            row["normcore"], row["torch"] = max(row["normcore"], mine), max(row["torch"], theirs_error)
            if mine > theirs_error:
                self.torch_closer.append((entry, str(dtype)[6:], sample, key, mine, theirs_error))

    def markdown(self) -> str:
        lines = ["| entry | dtype | samples (both refused) | worst \\|normcore − f64\\| | worst \\|torch − f64\\| |",
                 "|---|---|---|---|---|"]
        lines += [f"| {e} | {d} | {r['samples']} ({r['refused']}) | {r['normcore']:.3g} | {r['torch']:.3g} |"
                  for (e, d), r in self.rows.items()]
        closer = [f"  {e} {d} {s} {k}: normcore {m:.3g}, torch {t:.3g}" for e, d, s, k, m, t in self.torch_closer]
        return "\n".join(lines + [f"torch closer to float64 than normcore: {len(closer)} tensors", *closer])
