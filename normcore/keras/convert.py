"""Converters both ways between Keras's BatchNormalization and torch's BatchNorm1d/2d/3d.

``to_torch(keras_layer_or_weights, cls)`` builds a torch.nn or normcore ``BatchNormNd``;
``from_torch(bn_or_state_dict)`` builds a :class:`normcore.keras.BatchNormalization`, whose
``get_weights()`` a real Keras layer's ``set_weights()`` takes. Both convert the momentum
(``m_torch = 1 − m_keras``: torch's weights the new value, Keras's the old), carry eps by
value and return a :class:`Conversion`: the layer and the notes on what could not be carried
over or was done instead. Keyword arguments describe the *source*, in its own framework's
terms (``epsilon``/Keras momentum for ``to_torch``, ``eps``/torch momentum for ``from_torch``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..checks import NormcoreError
from ..ema import keras_momentum_from_torch, torch_momentum_from_keras
from .arguments import config_notes
from .batch_normalization import BatchNormalization
from .renorm import torch_renorm_arguments

KERAS_DEFAULTS = {"momentum": 0.99, "epsilon": 1e-3, "axis": -1}
TORCH_DEFAULTS = {"eps": 1e-5, "momentum": 0.1}

FROZEN_WEIGHT = (
    "scale=False, center=True: torch has no bias without a weight, so weight is all ones with "
    "requires_grad=False (outputs as Keras's); a state_dict does not keep that flag: freeze it again after loading."
)
BIASED_KEPT = (
    "running_var: built with unbiased_running_var=False, so further training updates it with the "
    "biased batch variance, as Keras does."
)
UNBIASED_AHEAD = (
    "running_var: torch.nn updates it with the unbiased batch variance (n/(n-1) times Keras's biased one), "
    "so further training drifts from Keras's moving_variance; outputs with the converted values are the same. "
    "normcore.BatchNorm1d/2d/3d(unbiased_running_var=False) keeps Keras's rule."
)
NO_COUNT = "num_batches_tracked: Keras keeps no batch count; set to 0 (torch only uses it with momentum=None)."


@dataclass(frozen=True)
class Conversion:
    """A converted layer and what could not be carried over (``layer, notes = conversion``)."""

    layer: nn.Module
    notes: tuple[str, ...]

    def __iter__(self):
        return iter((self.layer, self.notes))


def _axis_note(axis: int) -> str:
    return (
        f"axis={axis}: Keras normalized axis {axis}, torch's BatchNorm normalizes dim 1 (channels first): "
        f"feed it x.movedim({axis}, 1) and move the result back with y.movedim(1, {axis}) "
        "(a 2D input (N, C) needs neither)."
    )


def _keras_source(source, given: dict):
    """(config, weights, notes) of a Keras layer, a normcore.keras layer or a weight list."""
    if hasattr(source, "get_weights") and hasattr(source, "get_config"):
        if any(v is not None for v in given.values()):
            named = ", ".join(f"{k}=" for k, v in given.items() if v is not None)
            raise TypeError(f"to_torch reads {named} from the layer; pass them only with a list of weights.")
        config, weights = source.get_config(), list(source.get_weights())
        missing = [k for k in ("axis", "momentum", "epsilon", "center", "scale") if k not in config]
        if missing:
            raise NormcoreError(f"to_torch takes a BatchNormalization layer; this {type(source).__name__}'s config lacks {missing}.")
        if not weights:
            raise NormcoreError("The layer has no weights yet: build it (layer.build(input_shape)) or call it once first.")
        # A renorm layer appends moving_stddev, renorm_mean and renorm_stddev: the first ones are Keras's four.
        return config, weights[: 2 + bool(config["center"]) + bool(config["scale"])], config_notes(config)
    weights, notes = list(source), []
    center, scale = given["center"], given["scale"]
    if center is None and scale is None:
        if len(weights) == 3:
            raise NormcoreError(
                "Three Keras weights are [gamma or beta, moving_mean, moving_variance]: say which with "
                "center=False (no beta) or scale=False (no gamma)."
            )
        center = scale = len(weights) == 4
    center = (len(weights) - 2 - bool(scale)) == 1 if center is None else center
    scale = (len(weights) - 2 - bool(center)) == 1 if scale is None else scale
    if len(weights) != 2 + bool(center) + bool(scale):
        raise NormcoreError(
            f"A Keras BatchNormalization with center={center}, scale={scale} has {2 + bool(center) + bool(scale)} "
            f"weights ([gamma,] [beta,] moving_mean, moving_variance); got {len(weights)}."
        )
    config = {"center": bool(center), "scale": bool(scale), "trainable": True}
    for name, default in KERAS_DEFAULTS.items():
        config[name] = default if given[name] is None else given[name]
        if given[name] is None and name != "axis":
            notes.append(f"{name}: not given with the weight list; Keras's default {default} assumed.")
    return config, weights, notes


def _torch_kwargs(cls, config: dict) -> tuple[dict, list[str]]:
    kwargs = {"eps": float(config["epsilon"]), "momentum": torch_momentum_from_keras(config["momentum"])}
    kwargs["affine"] = config["center"] or config["scale"]
    if config["scale"] and not config["center"]:
        kwargs["bias"] = False  # γ without β: torch's bias=False
    if "unbiased_running_var" in inspect.signature(cls).parameters:  # normcore's BatchNormNd
        kwargs["unbiased_running_var"] = False
        return kwargs, [BIASED_KEPT]
    return kwargs, [UNBIASED_AHEAD]


def to_torch(source, cls, *, momentum=None, epsilon=None, center=None, scale=None, axis=None, device=None, dtype=None) -> Conversion:
    """A ``cls`` (torch.nn or normcore ``BatchNorm1d/2d/3d``) holding a Keras layer's weights.

    ``source`` is a built ``keras.layers.BatchNormalization``, a built
    :class:`normcore.keras.BatchNormalization`, or a list of Keras weights
    ``[gamma, beta, moving_mean, moving_variance]``; for a list, the keyword arguments say
    how the layer was configured (Keras's defaults otherwise, noted). A normcore ``cls`` is
    built with ``unbiased_running_var=False``, so that further training follows Keras's rule.
    """
    given = {"momentum": momentum, "epsilon": epsilon, "center": center, "scale": scale, "axis": axis}
    config, weights, notes = _keras_source(source, given)
    values = [torch.as_tensor(w) for w in weights]
    kwargs, variance_notes = _torch_kwargs(cls, config)
    renorm_cls = "r_max" in inspect.signature(cls).parameters  # normcore's BatchRenormNd
    renorm_kwargs, renorm_notes = torch_renorm_arguments(config, renorm_cls)
    if renorm_cls and kwargs.pop("bias", True) is False:
        raise NormcoreError("scale=True, center=False (γ without β) cannot become a BatchRenorm, which has no bias=False; convert to normcore.BatchNorm1d/2d/3d.")
    kwargs.update(renorm_kwargs)
    notes += renorm_notes
    module = cls(values[-1].shape[0], **kwargs, device=device, dtype=dtype or values[-1].dtype)
    if getattr(module, "running_var", None) is None:
        raise NormcoreError(f"cls must be a BatchNorm1d/2d/3d class (torch.nn or normcore), got {cls.__name__}.")
    gamma = values.pop(0) if config["scale"] else None
    beta = values.pop(0) if config["center"] else None
    with torch.no_grad():
        for target, value in ((module.weight, gamma), (module.bias, beta), (module.running_mean, values[0]), (module.running_var, values[1])):
            if target is not None and value is not None:
                target.copy_(value)
    notes += variance_notes
    if config["center"] and not config["scale"]:
        with torch.no_grad():
            module.weight.fill_(1.0)
        module.weight.requires_grad_(False)
        notes.append(FROZEN_WEIGHT)
    if config["axis"] != 1:
        notes.append(_axis_note(config["axis"]))
    if not config.get("trainable", True):
        module.eval().requires_grad_(False)
        notes.append(
            "trainable=False: Keras runs the layer in inference mode; returned in eval mode with requires_grad=False, "
            "but torch has no flag that keeps it there: call .eval() on it again after model.train()."
        )
    return Conversion(module, tuple(notes + [NO_COUNT]))


def _torch_source(source, eps, momentum, prefix: str):
    """(tensors by torch's names, eps, momentum, unbiased, notes) of a BatchNorm module or state_dict."""
    names = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    if isinstance(source, nn.Module):
        if eps is not None or momentum is not None:
            raise TypeError("from_torch reads eps= and momentum= from the module; pass them only with a state_dict.")
        if not hasattr(source, "running_var") or not hasattr(source, "eps"):
            raise NormcoreError(f"from_torch takes a BatchNorm1d/2d/3d (torch.nn or normcore), got {type(source).__name__}.")
        tensors = {n: getattr(source, n, None) for n in names}
        tensors["features"] = source.num_features
        return tensors, source.eps, source.momentum, getattr(source, "unbiased_running_var", True), []
    if not isinstance(source, Mapping):
        raise TypeError(f"from_torch takes a BatchNorm module or its state_dict, got {type(source).__name__}.")
    tensors = {n: source.get(prefix + n) for n in names}
    like = tensors["running_mean"] if tensors["running_mean"] is not None else tensors["weight"]
    if like is None:
        raise NormcoreError(f"The state_dict has no {prefix}running_mean or {prefix}weight; its keys: {sorted(source)[:8]}. Pass prefix= for a layer inside a model.")
    tensors["features"] = like.shape[0]
    given = {"eps": eps, "momentum": momentum}
    notes = [f"{name}: not in a state_dict; torch's default {TORCH_DEFAULTS[name]} assumed." for name, v in given.items() if v is None]
    eps, momentum = (TORCH_DEFAULTS[name] if v is None else v for name, v in given.items())
    return tensors, eps, momentum, True, notes


def _keras_momentum(momentum, count, notes: list[str]) -> float:
    if momentum is not None:
        return keras_momentum_from_torch(momentum)
    notes.append(
        f"momentum=None: torch's cumulative average (over num_batches_tracked={count} batches) has no Keras "
        f"equivalent; Keras's default {KERAS_DEFAULTS['momentum']} used: set layer.momentum to choose another."
    )
    return KERAS_DEFAULTS["momentum"]


def from_torch(source, *, axis: int = 1, eps=None, momentum=None, prefix: str = "", device=None, dtype=None) -> Conversion:
    """A built :class:`normcore.keras.BatchNormalization` holding a torch BatchNorm's weights.

    ``source`` is a torch.nn or normcore ``BatchNorm1d/2d/3d`` or its ``state_dict`` (keys
    ``prefix + "weight"`` etc.; ``eps=`` and torch's ``momentum=`` describe it, torch's
    defaults otherwise, noted). ``axis=1`` (default) takes the same channels-first inputs as
    the torch layer; ``axis=-1`` takes Keras's channels-last ones. Hand the layer's
    ``get_weights()`` to a Keras layer's ``set_weights()`` to finish a port to Keras.
    """
    tensors, eps, torch_momentum, unbiased, notes = _torch_source(source, eps, momentum, prefix)
    weight, bias, running_mean, running_var, count = (tensors[n] for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))
    if bias is not None and weight is None:
        raise NormcoreError("A bias without a weight is no torch BatchNorm (its bias=False drops the bias, not the weight).")
    count, features = None if count is None else int(count), tensors["features"]
    like = next((t for t in (running_mean, weight) if t is not None), torch.empty(0))  # the dtype and device
    layer = BatchNormalization(
        axis, _keras_momentum(torch_momentum, count, notes), float(eps), center=bias is not None, scale=weight is not None,
        dtype=dtype or like.dtype, device=device or like.device,
    )
    shape = [1] * max(2, axis + 1 if axis >= 0 else -axis)  # the smallest input with this axis
    shape[axis] = features
    layer.build(shape)
    with torch.no_grad():
        for target, value in ((layer.gamma, weight), (layer.beta, bias), (layer.moving_mean, running_mean), (layer.moving_variance, running_var)):
            if target is not None and value is not None:
                target.copy_(value.detach())
    if running_mean is None:
        notes.append(
            "track_running_stats=False: torch normalizes with batch statistics in eval too; Keras always keeps "
            "moving statistics: moving_mean=0, moving_variance=1 (Keras's initial values), used in inference. "
            "Call the layer with training=True to normalize with batch statistics (it then updates them)."
        )
    elif unbiased:
        notes.append(
            "moving_variance: torch's running_var holds unbiased batch variances (n/(n-1) times the biased ones); "
            "copied as it is, and further training updates it with the biased batch variance, as Keras does."
        )
    if count is not None:
        notes.append(f"num_batches_tracked={count}: Keras keeps no batch count; dropped.")
    notes.append(
        f"axis: torch's BatchNorm normalizes dim 1 (channels first); built with axis={axis}"
        + (", so it takes the same inputs. Keras code is usually channels last: pass axis=-1 and feed x.movedim(1, -1)."
           if axis == 1 else f": feed it x.movedim(1, {axis}) where the torch layer took x.")
    )
    return Conversion(layer, tuple(notes))
