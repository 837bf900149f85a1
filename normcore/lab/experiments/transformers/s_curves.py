"""The S-curves of Zhu et al. 2025 ("Transformers without Normalization", Fig. 4): a trained
model's LayerNorm maps its input to its output (before the affine) along one straight line per
token, of slope 1/σ_token; pooled over tokens with different spreads σ the cloud bends into a
tanh-like S. Zhu et al. replace LayerNorm by ``tanh(αx)·γ + β`` (Dynamic Tanh).

:func:`layer_norm_points` reads one LayerNorm's input and normalized output per token;
:func:`fit_tanh` fits ``c·tanh(αx)`` and a line ``b·x`` to the cloud; :func:`s_curves` does both
on a briefly trained pre-LN model (the comparison's LayerNorm run, trained once and cached).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch
from torch.nn import functional as F

from normcore.lab import devices
from normcore.lab.text_corpus import load_corpus

from normcore.lab.experiments.transformers.part2_options import NormOptions
from normcore.lab.experiments.transformers.training import train_lm
from normcore.lab.experiments.transformers.warmup import FINISHED_RUNS, ONE_THREAD

POINT_TOKENS = 48  # tokens (each a line of width points) in the scatter
ALPHAS = torch.logspace(-2, 1, 301, dtype=torch.float64)  # α grid of the tanh fit
LINEAR_NOTE = ("The first block's LayerNorm sees the embeddings, whose per-token spreads are alike, so its S is "
               "nearly a line at this scale; later blocks' inputs spread further apart and bend into the S. "
               "That is why a later layer is shown by default.")


@torch.no_grad()
def layer_norm_points(model, norm_module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``norm_module``'s input and its output before the affine, as (N, C) float64 tensors for
    the N = B·T tokens of one forward pass of ``tokens``."""
    seen = []
    hook = norm_module.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    try:
        model(tokens)
    finally:
        hook.remove()
    x = seen[0].reshape(-1, seen[0].shape[-1]).double()
    return x, F.layer_norm(x, x.shape[-1:], eps=norm_module.eps)


def fit_tanh(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Least squares of ``c·tanh(αx)`` (α on a log grid, c in closed form) and of ``b·x``:
    the parameters and each fit's root-mean-square residual."""
    x, y = x.reshape(-1).double(), y.reshape(-1).double()
    best = (math.inf, 1.0, 1.0)
    for alpha in ALPHAS:
        t = torch.tanh(alpha * x)
        c = float((t @ y) / (t @ t).clamp_min(1e-300))
        rms = float((y - c * t).pow(2).mean().sqrt())
        best = min(best, (rms, float(alpha), c))
    b = float((x @ y) / (x @ x).clamp_min(1e-300))
    return dict(alpha=best[1], scale=best[2], tanh_rms=best[0], slope=b, line_rms=float((y - b * x).pow(2).mean().sqrt()))


@dataclass
class SCurves:
    """One LayerNorm's cloud (``points``: x, y, token), its fits and per-token input spreads."""

    block: int
    which: str
    points: pd.DataFrame
    fit: dict
    token_std: tuple[float, float]  # the smallest and largest per-token std of the input
    curve: pd.DataFrame  # the fitted c·tanh(αx) and b·x over the cloud's range

    def sentence(self) -> str:
        f = self.fit
        better = "tanh fits better" if f["tanh_rms"] < 0.95 * f["line_rms"] else "nearly a line: tanh does no better"
        return (f"Block {self.block}'s {self.which}: per-token input std {self.token_std[0]:.2f}–{self.token_std[1]:.2f}; "
                f"{f['scale']:.2f}·tanh({f['alpha']:.2f}x) leaves an RMS residual of {f['tanh_rms']:.3f}, a line "
                f"{f['line_rms']:.3f}: {better}.")


def trained_layer_norm_model(o: NormOptions, cache=FINISHED_RUNS):
    """The comparison's LayerNorm run, trained once with its model kept (cached)."""
    from normcore.lab.experiments.transformers.norm_comparison import norm_config

    config = norm_config(o, "layer")
    run = cache.get(config) if cache is not None else None
    if run is None or run.model is None:
        with devices.placed(ONE_THREAD):
            run = train_lm(config, keep_model=True)
        if cache is not None:
            cache.put(run)
    return run.model


def s_curves(o: NormOptions, cache=FINISHED_RUNS) -> SCurves:
    """The chosen LayerNorm's cloud (block ``o.s_block``, ``o.s_norm``) on one validation batch."""
    model = trained_layer_norm_model(o, cache)
    corpus = load_corpus()
    tokens, _ = next(iter(corpus.batches("validation", 1, o.batch_size, o.context, seed=o.seed)))
    x, y = layer_norm_points(model, getattr(model.blocks[o.s_block - 1], o.s_norm), tokens)
    fit = fit_tanh(x, y)
    std = x.std(dim=-1, unbiased=False)
    keep = torch.linspace(0, x.shape[0] - 1, min(POINT_TOKENS, x.shape[0])).long()
    chars = [corpus.decode([int(t)]) for t in tokens.reshape(-1)[keep]]
    points = pd.DataFrame(dict(x=x[keep].reshape(-1).numpy(), y=y[keep].reshape(-1).numpy(),
                               token=[f"{i}:{c!r}" for i, c in enumerate(chars) for _ in range(x.shape[1])]))
    grid = torch.linspace(float(x[keep].min()), float(x[keep].max()), 100, dtype=torch.float64)
    curve = pd.concat([pd.DataFrame(dict(x=grid.numpy(), y=(fit["scale"] * torch.tanh(fit["alpha"] * grid)).numpy(), fit="tanh")),
                       pd.DataFrame(dict(x=grid.numpy(), y=(fit["slope"] * grid).numpy(), fit="line"))], ignore_index=True)
    return SCurves(o.s_block, o.s_norm, points, fit, (float(std.min()), float(std.max())), curve)


__all__ = ["LINEAR_NOTE", "SCurves", "fit_tanh", "layer_norm_points", "s_curves", "trained_layer_norm_model"]
