"""Live parity: how far the normcore layer is from its torch.nn twin on the same batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

PARITY_TOLERANCE = 1e-4  # relative to max(1, |torch value|): float32 rounding is ~1e-7


@dataclass(frozen=True)
class Parity:
    """Max |normcore − torch.nn| on the same batch: output, running mean, running variance
    (None where the layer keeps no running statistics)."""

    output: float
    running_mean: float | None
    running_var: float | None
    ok: bool

    @property
    def summary(self) -> str:
        gaps = [("output", self.output), ("running mean", self.running_mean), ("running var", self.running_var)]
        text = " · ".join(f"{name} {gap:.1e}" for name, gap in gaps if gap is not None)
        return ("✅" if self.ok else "⚠️") + " normcore vs torch.nn, max |Δ| this step: " + text


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    # In the inputs' own dtype: two float32 values this close subtract exactly (Sterbenz), and
    # a float64 copy of a batch at the caps costs more than the whole comparison.
    return float((a - b).abs_().max())


def compare(layer: torch.nn.Module, twin: torch.nn.Module, y: torch.Tensor, y_twin: torch.Tensor) -> Parity:
    out, ok = _max_abs(y, y_twin), True
    ok &= out <= PARITY_TOLERANCE * max(1.0, float(y_twin.abs().max()))
    found = {}
    for name in ("running_mean", "running_var"):
        mine, theirs = getattr(layer, name, None), getattr(twin, name, None)
        if mine is None or theirs is None:
            found[name] = None
            continue
        found[name] = _max_abs(mine, theirs)
        ok &= found[name] <= PARITY_TOLERANCE * max(1.0, float(theirs.abs().max()))
    return Parity(out, found["running_mean"], found["running_var"], bool(ok))
