"""RMSNorm on the Live statistics page: its output has RMS 1 but is not zero-mean.

RMSNorm divides each sample by √(E[x²] + ε) and subtracts nothing. With μ and σ² the
sample's mean and (biased) variance over its C·H·W values, E[x²] = μ² + σ², so its output has

    mean μ / √(μ² + σ² + ε),   std σ / √(μ² + σ² + ε),   RMS √((μ² + σ²) / (μ² + σ² + ε)) ≈ 1

where LayerNorm's has mean 0 and std ≈ 1. At μ = 0 the two nearly agree; as |μ| grows
against σ, RMSNorm's output mean goes to ±1 and its spread to 0. :func:`rms_view` shows this
on one batch: per sample the mean square it divided by, the predicted output mean (from the
input's μ and σ², by the formula above) beside the measured one, and LayerNorm next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from normcore import functional as F
from normcore.lab.settings import LabSettings

from normcore.lab.experiments.live.units import unit_truth

TORCH_DEFAULT_EPS = torch.finfo(torch.float32).eps  # torch.nn.RMSNorm(eps=None) on float32 input

TABLE_TITLE = "Per sample: the mean square RMSNorm divided by, and its output mean, predicted and measured (float64)"
# The per-sample table's columns and what the page calls them.
COLUMNS = {
    "mean_before": "input μ",
    "var_before": "input σ²",
    "mean_square": "mean square E[x²]",
    "divisor": "÷ √(E[x²] + eps)",
    "predicted_mean_after": "out mean predicted",
    "mean_after": "out mean measured",
    "rms_after": "out RMS",
}
COMPARISON_TITLE = "The same batch through LayerNorm and RMSNorm (per sample, averaged over the batch)"


def predicted_output_mean(mean, var, eps: float):
    """RMSNorm's output mean for input of mean μ and variance σ²: μ / √(μ² + σ² + ε)."""
    return mean / np.sqrt(mean**2 + var + eps)


@dataclass(frozen=True)
class RmsView:
    per_sample: pd.DataFrame  # sample, then COLUMNS
    comparison: pd.DataFrame  # normalization, output mean, output std, output RMS
    readouts: list[tuple[str, str, str]]  # (label, value, explanation)
    note: str


def _per_sample_moments(t: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample over (C, H, W), in float64: mean, biased variance, root mean square."""
    flat = t.double().flatten(1)
    var, mean = torch.var_mean(flat, dim=1, correction=0)
    return mean.numpy(), var.numpy(), flat.square().mean(1).sqrt().numpy()


def per_sample_table(x: torch.Tensor, y: torch.Tensor, mean_square: torch.Tensor, eps: float) -> pd.DataFrame:
    """One row per sample: the input's μ and σ², the mean square the layer divided by (its
    ``last_stats``), the divisor, and the output mean predicted from μ, σ² beside the measured one."""
    mean_in, var_in, _ = _per_sample_moments(x)
    mean_out, _, rms_out = _per_sample_moments(y)
    ms = mean_square.double().reshape(-1).numpy()
    return pd.DataFrame({
        "sample": range(x.shape[0]), "mean_before": mean_in, "var_before": var_in, "mean_square": ms,
        "divisor": np.sqrt(ms + eps), "predicted_mean_after": predicted_output_mean(mean_in, var_in, eps),
        "mean_after": mean_out, "rms_after": rms_out,
    })


def comparison(x: torch.Tensor, y_rms: torch.Tensor, eps: float) -> pd.DataFrame:
    """Output mean, std and RMS per sample (averaged over the batch) of LayerNorm and of RMSNorm
    on the same batch, both with this eps and γ = 1."""
    rows = []
    for name, y in (("LayerNorm", F.layer_norm(x, x.shape[1:], eps=eps)), ("RMSNorm", y_rms)):
        mean, var, rms = _per_sample_moments(y)
        rows.append((name, mean.mean(), np.sqrt(var).mean(), rms.mean()))
    return pd.DataFrame(rows, columns=["normalization", "output mean", "output std", "output RMS"])


def _readouts(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    return [
        ("Output mean, measured", f"{table['mean_after'].mean():#.4g}",
         "Each sample's output mean, averaged over the batch: RMSNorm subtracts no mean."),
        ("Output mean, predicted", f"{table['predicted_mean_after'].mean():#.4g}",
         "μ/√(μ² + σ² + eps) from each sample's input mean μ and variance σ², averaged over the batch."),
        ("Output RMS, measured", f"{table['rms_after'].mean():#.4g}",
         "√(mean(y²)) per sample: 1 up to eps, whatever the mean offset."),
    ]


def note(s: LabSettings) -> str:
    """What to do to see the difference from LayerNorm, and which eps is used."""
    return (
        "RMSNorm's output has RMS 1 but is **not zero-mean**: its mean per sample is μ/√(μ² + σ² + eps). "
        f"Move **Mean offset** (sidebar, *Input distribution*; now {s.mean_offset:g}) to see the difference "
        "from LayerNorm: at offset 0 the two nearly agree; at a large offset RMSNorm's output mean goes to ±1 "
        f"and its spread shrinks. eps is the shared eps control ({s.eps:.0e}; 1e-5 by default, torch's LayerNorm "
        f"default), not torch.nn.RMSNorm's eps=None (float32's machine epsilon, {TORCH_DEFAULT_EPS:.1e}), so "
        "RMSNorm and LayerNorm here differ only in the mean."
    )


def rms_view(s: LabSettings, x: torch.Tensor, y: torch.Tensor, mean_square: torch.Tensor) -> RmsView:
    """The RMSNorm panel of one batch: ``y`` is the layer's output for ``x`` and
    ``mean_square`` the mean square it divided by (its ``last_stats``), one per sample."""
    table = per_sample_table(x, y, mean_square, s.eps)
    return RmsView(table, comparison(x, y, s.eps), _readouts(table), note(s))


def output_mean(y: torch.Tensor) -> float:
    """The stream's "batch" value for RMSNorm: each sample's output mean, averaged over the batch."""
    return float(y.double().mean())  # equal counts per sample: the mean of the per-sample means


def population_values(s: LabSettings, quiet_channel: bool = False, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The population's RMSNorm values (one unit, all channels): the output mean
    μ̄/√(μ̄² + V + eps) and the mean square μ̄² + V, from the pooled mean μ̄ and variance V."""
    truth = unit_truth(s, quiet_channel, offset)
    mean_square = truth.mean**2 + truth.var
    return predicted_output_mean(truth.mean, truth.var, s.eps), mean_square
