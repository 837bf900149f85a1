"""Port, behind a button: the same stacks with real Keras in place of normcore.keras.

Keras is optional for the lab: :func:`keras_available` only looks for it, and :func:`compare`
imports it (4–5 s, its torch backend) when asked. The Keras side of the port then runs real
``keras.layers.BatchNormalization`` layers, and the comparison says how far they land from
normcore's, layer by layer, and what the port differences are with real Keras.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass

import pandas as pd

from normcore.checks import NormcoreError
from normcore.lab import devices

from . import conventions as C
from . import port as P


def keras_available() -> bool:
    """Whether ``keras`` can be imported here (without importing it)."""
    return importlib.util.find_spec("keras") is not None


def import_keras():
    """Keras on its torch backend (set before the first import); refused on another backend."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = importlib.import_module("keras")
    if keras.backend.backend() != "torch":
        raise NormcoreError(f"Keras runs on its {keras.backend.backend()!r} backend here; this lab needs "
                            "KERAS_BACKEND=torch set before Keras is first imported.")
    return keras


def real_keras_builder(keras):
    """A builder for :func:`port.differences` whose Keras-convention layers are real Keras's."""

    def build(args: C.Arguments, features: int):
        if args.convention != "keras":
            return C.build(args, features)
        layer = keras.layers.BatchNormalization(axis=-1, momentum=args.momentum, epsilon=args.eps)
        layer.build((None, features))
        return layer

    return build


@dataclass(frozen=True)
class KerasComparison:
    version: str
    differences: pd.DataFrame  # port.differences with real Keras on the Keras side
    agreement: pd.DataFrame  # layer, difference: real Keras against normcore.keras, same arguments


def keras_side(o: P.PortOptions) -> C.Arguments | None:
    """The arguments of the port's Keras side (the source's defaults or the target's as chosen)."""
    if o.source == "keras":
        return C.defaults("keras")
    if o.target == "keras":
        return P.target_arguments(o.source, o.target, o.choices())
    return None


def compare(o: P.PortOptions) -> KerasComparison:
    """Run the port with real Keras, and real Keras against normcore.keras on the Keras side."""
    args = keras_side(o)
    if args is None:
        raise NormcoreError("Neither side of this port is Keras: pick Keras / TensorFlow as the source or the target.")
    keras = import_keras()
    build = real_keras_builder(keras)
    data = P.stack_data(o.depth, o.steps, o.batch, o.seed)
    with devices.placed(P.ONE_THREAD):
        mine = P.run_side(lambda: C.build(args, P.WIDTH), data)
        theirs = P.run_side(lambda: build(args, P.WIDTH), data)
        frame = P.differences(o, build)
    agreement = pd.DataFrame({"layer": range(1, o.depth + 1), "difference": P.per_layer(mine, theirs)})
    return KerasComparison(keras.__version__, frame, agreement)
