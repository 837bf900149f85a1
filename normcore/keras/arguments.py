"""Keras's BatchNormalization arguments that normcore does not implement, and what to do instead.

Keras code that spells such an argument at its default value (``synchronized=False``,
``beta_initializer="zeros"``, ``gamma_regularizer=None``...) changes nothing, so it is
accepted. Any other value is refused with the torch way of getting the same effect: an
argument is never silently ignored. The converters use the same table to say what a Keras
layer's configuration carries that a torch layer cannot.
"""

from __future__ import annotations

from ..checks import NormcoreError

# The arguments normcore.keras.BatchNormalization itself takes.
SUPPORTED = ("axis", "momentum", "epsilon", "center", "scale", "trainable", "name", "dtype", "device", "backward",
             "renorm", "renorm_clipping", "renorm_momentum")

_INIT = "build the layer first (layer.build(input_shape) or one call), then set the values with set_weights([...]) or torch.nn.init"
_REGULARIZE = "add the penalty to your loss instead, e.g. loss = loss + 1e-4 * layer.gamma.square().sum()"
_CONSTRAIN = "apply it after each optimizer step instead, e.g. with torch.no_grad(): layer.gamma.clamp_(min=0.0)"

# name -> (Keras's default, what to do instead)
KERAS_ONLY = {
    "beta_initializer": ("zeros", _INIT),
    "gamma_initializer": ("ones", _INIT),
    "moving_mean_initializer": ("zeros", _INIT),
    "moving_variance_initializer": ("ones", _INIT),
    "beta_regularizer": (None, _REGULARIZE),
    "gamma_regularizer": (None, _REGULARIZE),
    "activity_regularizer": (None, "add the penalty on the layer's output to your loss instead"),
    "beta_constraint": (None, _CONSTRAIN),
    "gamma_constraint": (None, _CONSTRAIN),
    "synchronized": (False, "for batch statistics synchronized across processes use torch.nn.SyncBatchNorm"),
}


def _initializer_name(value) -> str | None:
    """'zeros' for "zeros", "Zeros", {"class_name": "Zeros", "config": {}} or keras.initializers.Zeros()."""
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, dict) and not value.get("config"):
        return str(value.get("class_name", "")).lower() or None
    get_config = getattr(value, "get_config", None)
    if callable(get_config) and not get_config():
        return type(value).__name__.lower()
    return None


def is_default(name: str, value) -> bool:
    """Whether ``value`` is Keras's default for the Keras-only argument ``name``."""
    default = KERAS_ONLY[name][0]
    if name.endswith("_initializer"):
        return _initializer_name(value) == default
    return value is default or (default is not None and type(value) is type(default) and value == default)


def refusal(name: str, value) -> str:
    """The message for a Keras-only argument given a non-default value."""
    default, instead = KERAS_ONLY[name]
    return (
        f"normcore.keras.BatchNormalization does not implement {name}={value!r} (Keras's default "
        f"{default!r} is accepted): {instead}."
    )


def check_keras_arguments(arguments: dict) -> None:
    """Refuse unknown arguments (TypeError) and Keras-only ones away from their default (NormcoreError)."""
    unknown = sorted(set(arguments) - set(KERAS_ONLY))
    if unknown:
        raise TypeError(
            f"normcore.keras.BatchNormalization got unexpected keyword argument(s) {', '.join(unknown)}. "
            f"It takes {', '.join(SUPPORTED)}, and Keras's other arguments at their default values."
        )
    for name, value in arguments.items():
        if not is_default(name, value):
            raise NormcoreError(refusal(name, value))


def _short(value) -> str:
    """A serialized Keras object as ``L2(l2=0.01)``; anything else as its repr."""
    if isinstance(value, dict) and "class_name" in value:
        args = ", ".join(f"{k}={v!r}" for k, v in (value.get("config") or {}).items())
        return f"{value['class_name']}({args})"
    return repr(value)


def config_notes(config: dict) -> list[str]:
    """What a Keras layer's ``get_config()`` holds that a converted layer cannot carry."""
    notes = []
    for name, (default, instead) in KERAS_ONLY.items():
        if name in config and not name.endswith("_initializer") and not is_default(name, config[name]):
            instead = instead.replace("layer.gamma", "bn.weight")  # said of the torch layer
            notes.append(f"{name}={_short(config[name])}: not carried over (torch's BatchNorm has none); {instead}.")
    return notes
