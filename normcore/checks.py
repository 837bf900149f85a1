"""Input checks: raise exactly where torch raises, with a message that says what to change.

The conditions are torch 2.13's own (probed against it in ``tests/test_probe_torch.py``): an
input torch accepts is accepted here, and only the messages are longer. Nothing is checked
that a call does not use (BatchNorm's momentum in eval mode, say).

Exception types. torch raises a ``ValueError`` for some misuses and a ``RuntimeError`` from a
kernel for others, and for a few an ``IndexError``, ``ZeroDivisionError`` or
``NotImplementedError``. So that code written against torch catches normcore's errors too,
every normcore error is a :class:`NormcoreError`, which is both a ``ValueError`` and a
``RuntimeError``; the few cases where torch raises something else use a subclass that is
also that type (``NormcoreIndexError`` is an ``IndexError`` too, and so on).
"""

from __future__ import annotations

import math
import operator

import torch


class NormcoreError(ValueError, RuntimeError):
    """A misuse normcore refuses, where torch raises ``ValueError`` or ``RuntimeError``."""


class NormcoreIndexError(NormcoreError, IndexError):
    """Where torch raises ``IndexError`` (an input of rank < 2, zero-size affine parameters)."""


class NormcoreZeroDivisionError(NormcoreError, ZeroDivisionError):
    """Where torch raises ``ZeroDivisionError`` (``num_groups=0``)."""


class NormcoreDtypeError(NormcoreError, NotImplementedError):
    """Where torch raises ``NotImplementedError``: a non-floating-point input."""


class NormcoreTypeError(NormcoreError, TypeError):
    """Where torch's argument parser raises ``TypeError``: an input that is no tensor, or
    ``normalized_shape=3`` in rms_norm."""


_VALIDATED: dict = {}  # what a call's checks found, by configuration and input shape/dtype
_MAX_VALIDATED = 4096


def validated(key, check):
    """``check()``'s result for ``key``, computed once per key.

    A call's checks depend only on the layer's configuration and on the shapes and dtypes of
    its tensors, so ``key`` is made of those (see :func:`spec`) and a repeated call skips
    them. A check that raises stores nothing, so a bad call raises its message every time.
    """
    try:
        return _VALIDATED[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable argument (a list as normalized_shape, say): check it each time
        return check()
    found = check()
    if len(_VALIDATED) >= _MAX_VALIDATED:
        _VALIDATED.clear()
    _VALIDATED[key] = found
    return found


def spec(t):
    """What the checks read of an optional tensor argument: None, or its shape and dtype (an
    argument that is no tensor gets a key of its own, never reused)."""
    if t is None:
        return None
    return (t.shape, t.dtype) if isinstance(t, torch.Tensor) else object()


def shape_key(normalized_shape):
    """A key for a ``normalized_shape`` argument that tells 3 from 3.0 and True (which compare
    and hash equal, and which the checks treat differently)."""
    if type(normalized_shape) not in (tuple, list, torch.Size):
        return object()
    return (type(normalized_shape),) + tuple((type(size), size) for size in normalized_shape)


BACKWARD_MODES = ("closed_form", "autograd")


def check_backward(mode: str) -> str:
    if mode not in BACKWARD_MODES:
        raise NormcoreError(f"backward must be one of {BACKWARD_MODES}, got {mode!r}.")
    return mode


def check_floating(x: torch.Tensor, who: str, *, complex_ok: bool = False) -> None:
    """A real floating-point tensor (``complex_ok``: complex64/complex128 too, as torch's rms_norm)."""
    if not isinstance(x, torch.Tensor):
        raise NormcoreTypeError(f"{who} expects a torch.Tensor input, got {type(x).__name__}.")
    if not (x.is_floating_point() or (complex_ok and x.dtype in (torch.complex64, torch.complex128))):
        raise NormcoreDtypeError(
            f"{who} needs a floating-point input, got dtype {x.dtype}. Convert it first, e.g. x.float()."
        )


def check_normalized_shape(normalized_shape, who: str) -> tuple[int, ...]:
    """torch's parser for a functional's ``normalized_shape``: a list, tuple or torch.Size of ints.

    A bare int is refused, as torch refuses it (the modules turn one into a 1-tuple first);
    so are bools, floats, arrays and tensors (0-dim integer tensors as elements are ints).
    """
    if isinstance(normalized_shape, (list, tuple)):  # torch.Size is a tuple
        shape = []
        for i, size in enumerate(normalized_shape):
            try:
                shape.append(None if isinstance(size, bool) else operator.index(size))
            except TypeError:
                shape.append(None)
            if shape[-1] is None:
                found = f"element {i} is {type(size).__name__} {size!r}"
                break
        else:
            return tuple(shape)
    else:
        found = f"got {type(normalized_shape).__name__} {normalized_shape!r}"
    raise NormcoreTypeError(
        f"{who}: normalized_shape must be a tuple or list of ints, e.g. (C,) or x.shape[-2:]; {found} "
        f"({normalized_shape!r}). For one trailing dim of size C write (C,)."
    )


def check_trailing_shape(x: torch.Tensor, shape: tuple[int, ...], who: str) -> None:
    """layer_norm's and rms_norm's rule: the input ends in ``normalized_shape`` (at least one dim)."""
    k = len(shape)
    if k == 0 or x.dim() < k or tuple(x.shape[x.dim() - k :]) != tuple(shape):
        raise NormcoreError(
            f"{who} normalizes over the trailing dims {list(shape)}, so the input must have shape "
            f"[*, {', '.join(map(str, shape)) or '...'}]; got {list(x.shape)}. Set normalized_shape to the "
            "input's last dims (at least one), e.g. input.shape[1:]."
        )


def check_rank(x: torch.Tensor, ranks: tuple[int, ...], who: str, layout: str) -> None:
    """A module's own rank check (torch's ``_check_input_dim``)."""
    if x.dim() not in ranks:
        wanted = " or ".join(f"{r}D" for r in ranks)
        raise NormcoreError(
            f"{who} expects a {wanted} input {layout}, got a {x.dim()}D input of shape {tuple(x.shape)}."
        )


def check_has_channels(x: torch.Tensor, who: str, error=NormcoreIndexError) -> None:
    """The functional forms need a channel dim: ``(N, C, *spatial)``, rank 2 or more."""
    if x.dim() < 2:
        raise error(
            f"{who} expects an input (N, C, *spatial) of at least 2 dims, got shape {tuple(x.shape)}. "
            "Add the batch dim, e.g. x.unsqueeze(0)."
        )


def check_channels(x: torch.Tensor, expected: int, who: str, dim: int = 1) -> None:
    got = x.shape[dim] if x.dim() > dim else None
    if got != expected:
        raise NormcoreError(
            f"{who} was built for {expected} channels but the input has {got} in dim {dim} "
            f"(shape {tuple(x.shape)}). Build the layer with {got} features, or fix the input's layout."
        )


def check_batch_eps(eps: float, training: bool) -> float:
    """torch's rule for batch_norm: ε > 0 to normalize with batch statistics, ε ≥ 0 otherwise.

    (LayerNorm, GroupNorm and InstanceNorm take any ε, as torch does; a negative one gives
    NaN wherever σ² + ε < 0.)
    """
    if (training and eps <= 0) or eps < 0:
        wanted = "positive when training" if training else "non-negative"
        raise NormcoreError(
            f"batch_norm eps must be {wanted}, got {eps}. It keeps 1 / sqrt(var + eps) finite for a "
            "constant channel; typical values are 1e-5 (PyTorch) and 1e-3 (Keras)."
        )
    return eps


def check_more_than_one_value(x: torch.Tensor, per: str = "channel") -> None:
    """torch's ``_verify_batch_size``: training needs > 1 value per statistic (0 values is fine)."""
    if x.dim() == 0:
        raise NormcoreIndexError("Expected an input (N, C, *spatial), got a 0-dim tensor. Add the batch and channel dims.")
    if math.prod(x.shape[:1] + x.shape[2:]) == 1:
        raise NormcoreError(
            f"Expected more than 1 value per {per} when training, got input size {x.shape}. "
            "A mean over one value is that value and its variance is 0, so every output would be "
            "0 (then the bias). Use a batch of at least 2, call .eval() to normalize with the "
            "running statistics, or use LayerNorm/GroupNorm, which do not depend on the batch."
        )


def check_more_than_one_spatial(x: torch.Tensor) -> None:
    """torch's ``_verify_spatial_size`` for instance norm (an input with no spatial dims has one)."""
    if math.prod(x.shape[2:]) == 1:
        raise NormcoreError(
            f"Expected more than 1 spatial element when training, got input size {x.shape}. "
            "InstanceNorm takes each sample's statistics over its spatial positions; with a single "
            "position every output is 0. Use a larger spatial size or another normalization."
        )


def check_running_pair(running_mean, running_var, needed: bool, who: str, flag: str) -> None:
    """Both running statistics or neither; both when they are what normalizes."""
    if needed and (running_mean is None or running_var is None):
        raise NormcoreError(
            f"{who} with {flag}=False needs running_mean and running_var: they are what it normalizes "
            f"with. Pass both, or {flag}=True to normalize with the batch statistics instead."
        )
    if (running_mean is None) != (running_var is None):
        raise NormcoreError(f"{who}: pass running_mean and running_var together, or neither.")


def check_batch_norm_call(input, running_mean, running_var, weight, bias, training: bool, eps: float) -> None:
    """torch's checks for ``batch_norm``, in torch's order (its kernel skips most of them, and
    every per-channel one, for an input with no values)."""
    check_floating(input, "batch_norm")
    if training:
        check_more_than_one_value(input)
    check_batch_eps(eps, training)
    affine = {"weight": weight, "bias": bias}
    if input.numel() == 0:
        check_per_channel(affine, 0, "batch_norm", sizes=False)
        return
    check_has_channels(input, "batch_norm")
    check_running_pair(running_mean, running_var, not training, "batch_norm", "training")
    check_per_channel({**affine, "running_mean": running_mean, "running_var": running_var}, input.shape[1], "batch_norm")


def check_instance_norm_call(input, running_mean, running_var, weight, bias, use_input_stats: bool) -> None:
    """torch's checks for ``instance_norm``: batch_norm's on (1, N·C, *S), with γ, β and the
    running statistics repeated N times (and averaged back over N to update them)."""
    check_floating(input, "instance_norm")
    if use_input_stats:
        check_more_than_one_spatial(input)
    else:
        check_running_pair(running_mean, running_var, True, "instance_norm", "use_input_stats")
    check_has_channels(input, "instance_norm")
    n, channels, empty = input.shape[0], input.shape[1], input.numel() == 0
    check_per_channel({"weight": weight, "bias": bias}, channels, "instance_norm", vectors=True, repeats=n, sizes=not empty)
    running = {"running_mean": running_mean, "running_var": running_var}
    check_per_channel(running, channels, "instance_norm", sizes=not empty or use_input_stats)
    if not empty:
        check_running_pair(running_mean, running_var, False, "instance_norm", "use_input_stats")


def check_per_channel(tensors: dict, channels: int, who: str, *, vectors: bool = False, repeats: int = 1, sizes: bool = True) -> None:
    """One entry per channel in each of γ, β, running_mean and running_var, as torch checks it.

    Running statistics must be 1-D; γ and β may have any shape with C entries (``vectors``:
    1-D too, as instance_norm needs). torch's kernel reads the first entry of γ and β (each
    repeated ``repeats`` times: N for instance_norm) before anything else, so an empty one
    raises IndexError. ``sizes=False``: the entry counts are not checked (torch skips its
    kernel, and with it those checks, for an input with no values).
    """
    for name, t in tensors.items():
        if t is None:
            continue
        running = name.startswith("running")
        if not running and repeats * t.numel() == 0:
            raise NormcoreIndexError(f"{who}: {name} has no entries to apply (shape {tuple(t.shape)}); pass None.")
        if sizes and (t.numel() != channels or ((vectors or running) and t.dim() != 1)):
            kind = "a 1-D tensor" if vectors or running else "a tensor"
            raise NormcoreError(f"{who}: {name} must be {kind} with {channels} entries (one per channel), got shape {tuple(t.shape)}.")


def check_group_sizes(x: torch.Tensor, num_groups: int) -> None:
    """torch's check in ``F.group_norm`` (in eval too): (N·C//G) · spatial must not be 1.

    (torch's ``_verify_batch_size`` on the size ``[N·C//G, G, *spatial]``, which skips G: so
    N · C/G · spatial, the values per group, must exceed 1 unless G = 1 ... and G = 1 is
    where N · C · spatial = 1 anyway.)
    """
    if num_groups == 0:
        raise NormcoreZeroDivisionError("num_groups must be positive, got 0.")
    n, channels = x.shape[:2]
    if (n * channels // num_groups) * math.prod(x.shape[2:]) == 1:
        raise NormcoreError(
            f"Expected more than 1 value per group, got input size {tuple(x.shape)} in {num_groups} "
            "groups (torch checks this in eval mode too). Each group of this single sample holds one "
            "value, so its variance is 0 and every output would be 0 (then the bias). Use fewer "
            "groups, a larger spatial size, or more than one sample."
        )


def check_groups(num_channels: int, num_groups: int, *, in_forward: bool) -> None:
    """C must divide into G groups. As torch, a negative G that divides C passes the
    constructor (Python's ``%``) and is refused only when the layer is called."""
    if num_groups == 0:
        raise NormcoreZeroDivisionError(group_divisibility_message(num_channels, num_groups))
    if (in_forward and num_groups < 0) or num_channels % num_groups:
        raise NormcoreError(group_divisibility_message(num_channels, num_groups))


def check_affine_shape(t: torch.Tensor | None, shape: tuple[int, ...], name: str, who: str) -> None:
    if t is not None and tuple(t.shape) != tuple(shape):
        raise NormcoreError(f"{who}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}.")


def group_divisibility_message(num_channels: int, num_groups: int) -> str:
    """torch's message, plus the group counts that would work."""
    valid = [d for d in range(1, num_channels + 1) if num_channels % d == 0]
    if num_groups <= 0:
        return f"num_groups must be positive, got {num_groups}. Valid group counts for {num_channels} channels: {', '.join(map(str, valid))}."
    return (
        f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups}). "
        f"Valid group counts for {num_channels} channels: {', '.join(map(str, valid))}."
    )
