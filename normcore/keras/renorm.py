"""Keras 3's Batch Renormalization (``BatchNormalization(renorm=True)``), read from Keras 3.15.1.

Keras's renorm differs from ``normcore.BatchRenorm*d`` (the paper's form on torch's buffers):
r and d come from *extra* moving statistics, ``renorm_mean`` / ``renorm_stddev``, updated with
``renorm_momentum``, while inference keeps using ``moving_mean`` / ``moving_variance``, which
follow ``momentum``. So unclipped training is *not* inference here. In training::

    σ_B = sqrt(var_B + ε)            s = max(renorm_stddev, sqrt(ε))
    r = clip(σ_B / s, rmin, rmax)    d = clip((μ_B − renorm_mean) / s, −dmax, dmax)     (no gradient)
    y = (x − μ_B) · rsqrt(var_B + ε) · (r·γ) + (d·γ + β)

then, in this order: renorm_mean, renorm_stddev ← toward μ_B, σ_B with ``renorm_momentum``;
moving_mean, moving_stddev ← toward μ_B, σ_B with ``momentum``; moving_variance =
relu(moving_stddev² − ε), its own old value discarded. A missing clipping key is no bound.
"""

from __future__ import annotations

import torch

from ..checks import NormcoreError

RENORM_WEIGHTS = ("moving_stddev", "renorm_mean", "renorm_stddev")  # after Keras's four, in its order
RENORM_FILLS = (1.0, 0.0, 1.0)  # sqrt(moving_variance's 1), moving_mean's 0, sqrt(1)
CLIPPING_KEYS = ("rmax", "rmin", "dmax")


def checked_clipping(renorm: bool, renorm_clipping):
    """Keras's validation, only when ``renorm``: None is {}, unknown keys, rmax < rmin, dmax < 0 raise."""
    if not renorm:
        return renorm_clipping
    clipping = dict(renorm_clipping or {})
    unknown = sorted(set(clipping) - set(CLIPPING_KEYS))
    if unknown:
        raise NormcoreError(f"renorm_clipping has unknown key(s) {unknown}; Keras takes {list(CLIPPING_KEYS)} (a missing key is no bound).")
    rmax, rmin, dmax = (clipping.get(k) for k in CLIPPING_KEYS)
    if rmax is not None and rmin is not None and rmax < rmin:
        raise NormcoreError(f"renorm_clipping: rmax ({rmax}) must be at least rmin ({rmin}).")
    if dmax is not None and dmax < 0:
        raise NormcoreError(f"renorm_clipping: dmax must be non-negative, got {dmax}.")
    return clipping


def correction(mean, var, renorm_mean, renorm_stddev, eps: float, clipping: dict):
    """(r, d), detached, from the batch's μ_B, var_B and the renorm statistics (all one shape)."""
    mean, var = mean.detach(), var.detach()
    stddev = torch.sqrt(var + eps)
    s = torch.maximum(renorm_stddev.to(mean.dtype), torch.sqrt(torch.tensor(eps, dtype=mean.dtype)))
    r = stddev / s
    d = (mean - renorm_mean.to(mean.dtype)) / s
    if clipping.get("rmin") is not None:
        r = torch.clamp(r, min=clipping["rmin"])
    if clipping.get("rmax") is not None:
        r = torch.clamp(r, max=clipping["rmax"])
    if clipping.get("dmax") is not None:
        d = torch.clamp(d, -clipping["dmax"], clipping["dmax"])
    return r, d


def composed_affine(r, d, gamma, beta):
    """(r·γ, d·γ + β): x̂·r + d folded into the affine, as Keras's ``_compose_transforms``."""
    scale = r if gamma is None else r * gamma
    offset = d if gamma is None else d * gamma
    return scale, offset if beta is None else offset + beta


def update_statistics(layer, mean: torch.Tensor, var: torch.Tensor) -> None:
    """Keras's ``_update_renorm_statistics``: the renorm pair, then moving_mean/stddev, then moving_variance."""
    mean, var = mean.detach(), var.detach()
    stddev = torch.sqrt(var + layer.epsilon)
    with torch.no_grad():
        for momentum, pairs in ((layer.renorm_momentum, ((layer.renorm_mean, mean), (layer.renorm_stddev, stddev))),
                                (layer.momentum, ((layer.moving_mean, mean), (layer.moving_stddev, stddev)))):
            for moving, batch in pairs:
                moving.copy_(moving.to(batch.dtype) * momentum + batch * (1.0 - momentum))
        new_stddev = layer.moving_stddev.to(var.dtype)
        layer.moving_variance.copy_(torch.relu(new_stddev * new_stddev - layer.epsilon))


def torch_renorm_arguments(config: dict, renorm_cls: bool) -> tuple[dict, list[str]]:
    """(r_max/d_max keyword arguments, notes) for converting a Keras layer's config to torch.

    ``renorm_cls``: the target is a ``normcore.BatchRenorm*d`` (it takes r_max and d_max).
    """
    if not config.get("renorm"):
        return {}, []
    if not renorm_cls:
        return {}, ["renorm=True: not carried over (torch's BatchNorm has no Batch Renormalization); "
                    "convert to normcore.BatchRenorm1d/2d/3d to keep training with it."]
    clipping = config.get("renorm_clipping") or {}
    r_max, d_max = clipping.get("rmax"), clipping.get("dmax")
    kwargs = {"r_max": float("inf") if r_max is None else float(r_max), "d_max": float("inf") if d_max is None else float(d_max)}
    notes = [
        "renorm_mean, renorm_stddev, moving_stddev and renorm_momentum: not carried over. normcore's BatchRenorm "
        "corrects toward running_mean/running_var (the paper's form), updated with momentum alone; Keras keeps a "
        "second pair of statistics for r and d. Eval outputs are the same; further training differs."
    ]
    rmin = clipping.get("rmin")
    if rmin is not None and (r_max is None or abs(rmin * kwargs["r_max"] - 1) > 1e-12):
        notes.append(f"renorm_clipping rmin={rmin}: BatchRenorm clips r to [1/r_max, r_max] (here r_max={kwargs['r_max']}); rmin is not kept.")
    if r_max is None or d_max is None:
        notes.append("renorm_clipping: a missing rmax or dmax (no bound in Keras) became r_max or d_max = inf.")
    return kwargs, notes
