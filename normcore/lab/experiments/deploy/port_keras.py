"""Port, behind a button: the same stacks with real Keras in place of normcore.keras.

Keras is optional for the lab: :func:`keras_available` only looks for it, and :func:`compare`
imports it (4–5 s, its torch backend) when asked. The Keras side of the port then runs real
``keras.layers.BatchNormalization`` layers, and the comparison says how far they land from
normcore's, layer by layer, and what the port differences are with real Keras.

The page calls :func:`compare_in_child`: the same comparison in a child process
(``python -m normcore.lab.experiments.deploy.port_keras``), so Keras never enters the server.
Once ``keras`` is in a process's ``sys.modules``, Streamlit calls ``keras.backend.clear_session()``
(a full ``gc.collect``) after every script run of every session, about 0.3 s a rerun here.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from normcore.checks import NormcoreError
from normcore.lab import devices, limits

from normcore.lab.experiments.deploy import conventions as C
from normcore.lab.experiments.deploy import port as P


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


def compare_in_child(o: P.PortOptions, timeout_s: float = limits.MAX_KERAS_RUN_S) -> KerasComparison:
    """:func:`compare` in a child process, which ends with it (killed at ``timeout_s``)."""
    root = Path(__file__).resolve().parents[4]  # where the normcore package lives
    env = os.environ | {"KERAS_BACKEND": "torch", "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, "-m", __name__, json.dumps(o.to_query())], capture_output=True,
                              text=True, timeout=timeout_s, env=env, cwd=root)
    except subprocess.TimeoutExpired:
        raise NormcoreError(f"Real Keras took more than {timeout_s:g} s here and was stopped; use fewer layers or steps.") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise NormcoreError(f"Real Keras failed in its process: {last}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    frames = {k: pd.read_json(io.StringIO(out[k]), orient="split") for k in ("differences", "agreement")}
    return KerasComparison(out["version"], frames["differences"], frames["agreement"])


def main(argv: list[str]) -> int:
    """The child's side: options as URL parameters (JSON) in, the comparison as one JSON line out."""
    o, _ = P.PortOptions.from_query(json.loads(argv[0]))
    c = compare(o)
    print(json.dumps({"version": c.version, "differences": c.differences.to_json(orient="split"),
                      "agreement": c.agreement.to_json(orient="split")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
