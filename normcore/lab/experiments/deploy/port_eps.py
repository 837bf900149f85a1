"""Port, LayerNorm and RMSNorm: the same transformer-like stack with each framework's default eps.

Codebases disagree on eps: 1e-12 (BERT-style LayerNorm), 1e-6 (LLaMA-style RMSNorm, Keras's
``RMSNormalization``), 1e-5 (``torch.nn.LayerNorm``), 1e-3 (Keras's ``LayerNormalization``) and
``None`` (``torch.nn.RMSNorm``: ``torch.finfo(dtype).eps``, 1.19e-7 for a float32 model). A stack
of pre-norm residual blocks ``h ← h + W₂·ReLU(W₁·norm(h))`` runs in float64 (so only eps
differs) with the source's eps and with each other default; the difference per block is
max |Δh| over the source's root mean square of h.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch
import torch.nn.functional as F

from normcore.lab import limits
from normcore.lab.fields import Field, QueryOptions, Schema

EPS_DEFAULTS = ("1e-12", "1e-6", "1e-5", "1e-3", "none")  # as the URL and the widget carry them
FLOAT32_EPS = torch.finfo(torch.float32).eps  # what eps=None means for a float32 model
EPS_LABELS = {
    "1e-12": "1e-12 (BERT-style LayerNorm)", "1e-6": "1e-6 (LLaMA RMSNorm, Keras RMSNormalization)",
    "1e-5": "1e-5 (torch.nn.LayerNorm)", "1e-3": "1e-3 (keras.layers.LayerNormalization)",
    "none": "None (torch.nn.RMSNorm: finfo(float32).eps ≈ 1.19e-7)",
}
NORMS = ("layer", "rms")
NORM_LABELS = {"layer": "LayerNorm", "rms": "RMSNorm"}
DIM, HIDDEN, TOKENS = 32, 64, 64

FIELDS = Schema((
    Field("norm", "Norm in the blocks", "layer", "choice", "LayerNorm centres and scales; RMSNorm only scales.",
          choices=NORMS, labels=NORM_LABELS, widget="radio", url="p_ln_norm"),
    Field("source_eps", "Source eps", "1e-5", "choice", "The eps the model was trained with.", choices=EPS_DEFAULTS,
          labels=EPS_LABELS, url="p_ln_eps"),
    Field("depth", "Residual blocks", 12, "int", "Pre-norm residual blocks in the stack.", 1, limits.MAX_EPS_DEPTH, 1,
          url="p_ln_depth"),
    Field("scale", "Activation std", 1.0, "float", "The std of the tokens entering the stack: eps matters when it "
          "is not small against the variance.", choices=(1.0, 1e-1, 1e-2, 1e-3), labels=lambda v: f"{v:g}",
          snap=True, url="p_ln_scale"),
))


@dataclass(frozen=True)
class EpsOptions(QueryOptions):
    SCHEMA: ClassVar[Schema] = FIELDS

    norm: str = FIELDS["norm"].default
    source_eps: str = FIELDS["source_eps"].default
    depth: int = FIELDS["depth"].default
    scale: float = FIELDS["scale"].default



def problems(o: EpsOptions) -> list[str]:
    if o.norm == "layer" and o.source_eps == "none":
        return ["eps=None is torch.nn.RMSNorm's default; torch.nn.LayerNorm needs a number. Pick RMSNorm or a number."]
    return []


def value(eps: str) -> float:
    """The number an eps default stands for."""
    return FLOAT32_EPS if eps == "none" else float(eps)


def keep_code(norm: str, eps: str) -> str:
    """The source's eps spelled out in both frameworks, so a port keeps it (defaults differ)."""
    if norm == "layer":
        return (f"torch.nn.LayerNorm({DIM}, eps={eps})\n"
                f"keras.layers.LayerNormalization(epsilon={eps})  # its default is 1e-3")
    if eps == "none":
        return (f"torch.nn.RMSNorm({DIM}, eps=None)  # finfo(dtype).eps: 1.19e-7 in float32\n"
                f"keras.layers.RMSNormalization(epsilon={FLOAT32_EPS:.8g})  # torch's None, for float32")
    return (f"torch.nn.RMSNorm({DIM}, eps={eps})  # its default None is finfo(dtype).eps\n"
            f"keras.layers.RMSNormalization(epsilon={eps})")


def blocks(depth: int, seed: int = 0):
    """Each block's (W₁, W₂) in float64, scaled so the residual stream grows slowly."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(HIDDEN, DIM, generator=g, dtype=torch.float64) / DIM ** 0.5,
             torch.randn(DIM, HIDDEN, generator=g, dtype=torch.float64) / (HIDDEN * depth) ** 0.5)
            for _ in range(depth)]


def run_stack(norm: str, eps: float, weights, tokens: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream after each block."""
    out, h = [], tokens
    for w1, w2 in weights:
        n = F.layer_norm(h, (DIM,), eps=eps) if norm == "layer" else F.rms_norm(h, (DIM,), eps=eps)
        h = h + torch.relu(n @ w1.T) @ w2.T
        out.append(h)
    return out


def differences(o: EpsOptions, seed: int = 0) -> pd.DataFrame:
    """Per target eps and block: max |Δh| / rms(h) against the source's eps."""
    weights = blocks(o.depth, seed)
    tokens = o.scale * torch.randn(TOKENS, DIM, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    reference = run_stack(o.norm, value(o.source_eps), weights, tokens)
    rows = []
    for eps in EPS_DEFAULTS:
        if eps == o.source_eps or (o.norm == "layer" and eps == "none"):
            continue  # the same run; LayerNorm has no eps=None
        for i, (a, b) in enumerate(zip(reference, run_stack(o.norm, value(eps), weights, tokens))):
            rows.append({"eps": EPS_LABELS[eps], "eps_value": value(eps), "layer": i + 1,
                         "difference": ((a - b).abs().max() / a.square().mean().sqrt()).item()})
    return pd.DataFrame(rows)
