"""Batch Renormalization (Ioffe 2017, arXiv 1702.03275): BatchNorm that trains toward its eval.

In training the batch's statistics normalize and are then corrected toward the running ones::

    y = γ · ((x − μ_B)/σ_B · r + d) + β,   r = clip(σ_B/σ, 1/r_max, r_max),
                                            d = clip((μ_B − μ)/σ, −d_max, d_max)

with σ_B = sqrt(var_B + ε) (biased batch variance), σ = sqrt(running_var + ε) (torch's
unbiased running variance) and r, d held constant in the backward pass
(``renorm_backward.py``). Unclipped, training computes what eval computes with the running
statistics before the update; with r_max = 1 and d_max = 0 it is BatchNorm. Everything else,
buffers, state_dict, the running update and eval, is BatchNorm's: a BatchRenorm2d's
state_dict loads strictly into ``torch.nn.BatchNorm2d``. At 2 values per channel r centres
near 1/√2: the biased batch std is corrected toward the population's.

``r_max`` and ``d_max`` are plain attributes; :func:`renorm_schedule` gives the paper's
relaxation of them as a pure function of the step.
"""

from __future__ import annotations

import torch

from . import checks, transforms
from . import functional as F
from .functional import _channel_plan, _update_running, _view
from .modules import _BatchNorm
from .moments import NormStats
from .renorm_backward import RenormalizeWithBatchStats

__all__ = ["BatchRenorm1d", "BatchRenorm2d", "BatchRenorm3d", "batch_renorm", "renorm_schedule"]

# Ioffe 2017, §4: r_max = 1, d_max = 0 for the first 5k steps, then relaxed to reach
# r_max = 3 at 40k steps and d_max = 5 at 25k steps.
PAPER_WARMUP, PAPER_D_END, PAPER_R_END = 5_000, 25_000, 40_000


def renorm_schedule(step: int, total_steps: int, ramp_end: float = 0.5) -> tuple[float, float]:
    """(r_max, d_max) at ``step`` of a run of ``total_steps``: the paper's schedule, scaled.

    The paper holds r_max = 1, d_max = 0 (plain BatchNorm) for 5k steps, then ramps them
    linearly to d_max = 5 at 25k and r_max = 3 at 40k steps, and keeps them there. Here every
    one of those step counts is multiplied by ``ramp_end · total_steps / 40k``: the paper's 40k
    (both at their final values) falls at the fraction ``ramp_end`` of the run (half, by
    default), and warm-up and ramps keep the paper's proportions (warm-up 1/8 of that, d_max
    done at 5/8). A pure function of the step, so a resumed run recovers its place.
    """
    if total_steps <= 0 or not 0 < ramp_end <= 1:
        raise checks.NormcoreError(f"renorm_schedule needs total_steps > 0 and 0 < ramp_end <= 1, got {total_steps}, {ramp_end}.")
    scale = ramp_end * total_steps / PAPER_R_END
    warmup = PAPER_WARMUP * scale

    def ramp(end: float, final: float, start: float) -> float:
        frac = min(max((step - warmup) / (end * scale - warmup), 0.0), 1.0)
        return start + (final - start) * frac

    return ramp(PAPER_R_END, 3.0, 1.0), ramp(PAPER_D_END, 5.0, 0.0)


def batch_renorm(input, running_mean, running_var, weight=None, bias=None, momentum=0.1, eps=1e-5,
                 r_max=3.0, d_max=5.0, *, return_stats=False):
    """One training step of Batch Renormalization; updates the running statistics in place.

    Returns y, or ``(y, stats, r, d)`` with ``return_stats=True`` (r and d per channel).
    Checks and raises as ``batch_norm`` in training; the running statistics are required (they
    are what r and d correct toward). An input with no values is BatchNorm's: returned empty.
    """
    key = ("batch_renorm", checks.spec(input), *map(checks.spec, (running_mean, running_var, weight, bias)), eps)

    def check():
        checks.check_batch_norm_call(input, running_mean, running_var, weight, bias, True, eps)
        checks.check_running_pair(running_mean, running_var, True, "batch_renorm", "running statistics given")
        return None if input.numel() == 0 else _channel_plan(input, "batch", weight, bias)

    plan = checks.validated(key, check)
    if plan is None:
        y, stats = F.batch_norm(input, running_mean, running_var, weight, bias, True, momentum, eps, return_stats=True)
        ones = input.new_ones(input.shape[1:2])
        return (y, stats, ones, ones * 0) if return_stats else y
    x = input if input.dtype == plan.dtype else input.to(plan.dtype)
    w, b = _view(weight, plan.affine_shape, plan.dtype), _view(bias, plan.affine_shape, plan.dtype)
    rm, rv = (_view(t, plan.affine_shape).to(plan.dtype) for t in (running_mean, running_var))
    y, mean, var, r, d, *_ = transforms.apply(RenormalizeWithBatchStats, x, w, b, rm, rv, plan.dims, eps, r_max, d_max)
    mean, var = mean.reshape(plan.stats_shape), var.reshape(plan.stats_shape)
    _update_running(running_mean, running_var, mean, var, momentum, plan.count, True)  # after r and d
    y = y if y.dtype == input.dtype else y.to(input.dtype)
    if not return_stats:
        return y
    return y, NormStats(mean, var, "batch", plan.count), r.reshape(plan.stats_shape), d.reshape(plan.stats_shape)


class _BatchRenorm(_BatchNorm):
    """BatchNorm's parameters, buffers, eval and running update; Batch Renormalization's training."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, *, r_max: float = 3.0, d_max: float = 5.0, device=None, dtype=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.r_max, self.d_max = r_max, d_max
        self.last_correction: tuple[torch.Tensor, torch.Tensor] | None = None  # (r, d) of the last training step

    def extra_repr(self) -> str:
        return super().extra_repr() + f", r_max={self.r_max}, d_max={self.d_max}"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Eval, an empty batch, or no running statistics to correct toward: BatchNorm's forward."""
        if not (self.training and self.track_running_stats) or input.numel() == 0:
            self.last_correction = None
            return super().forward(input)
        self._check_input(input)
        checks.check_channels(input, self.num_features, type(self).__name__)
        y, self.last_stats, r, d = batch_renorm(
            input, self.running_mean, self.running_var, self.weight, self.bias,
            self._momentum_factor(), self.eps, self.r_max, self.d_max, return_stats=True,
        )
        self.num_batches_tracked.add_(1)
        self.last_correction = (r, d)
        return y


class BatchRenorm1d(_BatchRenorm):
    """Batch Renormalization over (N, C) or (N, C, L) input; a drop-in for BatchNorm1d."""

    _input_ranks, _layout = (2, 3), "(N, C) or (N, C, L)"


class BatchRenorm2d(_BatchRenorm):
    """Batch Renormalization over (N, C, H, W) input; a drop-in for BatchNorm2d."""

    _input_ranks, _layout = (4,), "(N, C, H, W)"


class BatchRenorm3d(_BatchRenorm):
    """Batch Renormalization over (N, C, D, H, W) input; a drop-in for BatchNorm3d."""

    _input_ranks, _layout = (5,), "(N, C, D, H, W)"
