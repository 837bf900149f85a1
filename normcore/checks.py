"""Input checks that turn every misuse into a ``ValueError`` saying what to change.

torch reports most of these as a ``RuntimeError`` from deep inside a kernel; normcore
checks them up front. Conditions match torch's own (so a shape torch accepts is accepted
here), only the messages are longer.
"""

from __future__ import annotations

import math

import torch


BACKWARD_MODES = ("closed_form", "autograd")


def check_eps(eps: float) -> float:
    eps = float(eps)
    if not eps > 0 or math.isinf(eps):
        raise ValueError(
            f"eps must be a positive finite number, got {eps}. It keeps 1 / sqrt(var + eps) finite "
            "for a constant channel; typical values are 1e-5 (PyTorch) and 1e-3 (Keras)."
        )
    return eps


def check_momentum(momentum: float | None, allow_none: bool = True) -> float | None:
    if momentum is None and allow_none:
        return None
    if momentum is None:
        raise ValueError("momentum must be a number in [0, 1] here (None is only meaningful in a module).")
    m = float(momentum)
    if not 0.0 <= m <= 1.0:
        allowed = "[0, 1] or None" if allow_none else "[0, 1]"
        raise ValueError(
            f"momentum must be in {allowed}, got {m}. In PyTorch's convention it is the weight of the "
            "new batch statistic (default 0.1); a Keras/d2l momentum m corresponds to 1 - m "
            "(normcore.torch_momentum_from_keras)."
        )
    return m


def check_backward(mode: str) -> str:
    if mode not in BACKWARD_MODES:
        raise ValueError(f"backward must be one of {BACKWARD_MODES}, got {mode!r}.")
    return mode


def check_floating(x: torch.Tensor, who: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{who} expects a torch.Tensor input, got {type(x).__name__}.")
    if not x.is_floating_point():
        raise ValueError(
            f"{who} needs a floating-point input, got dtype {x.dtype}. Convert it first, e.g. x.float()."
        )


def check_rank(x: torch.Tensor, ranks: tuple[int, ...], who: str, layout: str) -> None:
    if x.dim() not in ranks:
        wanted = " or ".join(f"{r}D" for r in ranks)
        raise ValueError(
            f"{who} expects a {wanted} input {layout}, got a {x.dim()}D input of shape {tuple(x.shape)}."
        )


def check_channels(x: torch.Tensor, expected: int, who: str, dim: int = 1) -> None:
    got = x.shape[dim] if x.dim() > dim else None
    if got != expected:
        raise ValueError(
            f"{who} was built for {expected} channels but the input has {got} in dim {dim} "
            f"(shape {tuple(x.shape)}). Build the layer with {got} features, or fix the input's layout."
        )


def check_more_than_one_value(x: torch.Tensor, per: str = "channel") -> None:
    """torch's ``_verify_batch_size``: training needs > 1 value per statistic."""
    if x.numel() // max(x.shape[1], 1) == 1:
        raise ValueError(
            f"Expected more than 1 value per {per} when training, got input size {x.shape}. "
            "A mean over one value is that value and its variance is 0, so every output would be "
            "0 (then the bias). Use a batch of at least 2, call .eval() to normalize with the "
            "running statistics, or use LayerNorm/GroupNorm, which do not depend on the batch."
        )


def check_group_sizes(x: torch.Tensor, num_groups: int) -> None:
    """torch's check in ``F.group_norm`` (applied in eval too): N · C/G · spatial must exceed 1."""
    n, channels = x.shape[:2]
    if n * (channels // num_groups) * math.prod(x.shape[2:]) == 1:
        raise ValueError(
            f"Expected more than 1 value per group, got input size {tuple(x.shape)} in {num_groups} "
            "groups (torch checks this in eval mode too). Each group of this single sample holds one "
            "value, so its variance is 0 and every output would be 0 (then the bias). Use fewer "
            "groups, a larger spatial size, or more than one sample."
        )


def check_more_than_one_spatial(x: torch.Tensor) -> None:
    """torch's ``_verify_spatial_size`` for instance norm."""
    if math.prod(x.shape[2:]) == 1:
        raise ValueError(
            f"Expected more than 1 spatial element when training, got input size {x.shape}. "
            "InstanceNorm takes each sample's statistics over its spatial positions; with a single "
            "position every output is 0. Use a larger spatial size or another normalization."
        )


def check_groups(num_channels: int, num_groups: int) -> None:
    if num_groups < 1 or num_channels % num_groups:
        raise ValueError(group_divisibility_message(num_channels, num_groups))


def check_affine_shape(t: torch.Tensor | None, shape: tuple[int, ...], name: str, who: str) -> None:
    if t is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{who}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}.")


def group_divisibility_message(num_channels: int, num_groups: int) -> str:
    """torch's message, plus the group counts that would work."""
    valid = [d for d in range(1, num_channels + 1) if num_channels % d == 0]
    return (
        f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups}). "
        f"Valid group counts for {num_channels} channels: {', '.join(map(str, valid))}."
    )
