"""Port: the same BatchNorm stack in two conventions, and how far apart their outputs land per layer.

A port rewrites the training code in the target framework. Per setting the user chooses
whether it is carried over **as typed** (the source's number copied literally, or an argument
the source left out left out again, so the target's default applies) or **converted** (the
target reproduces the source: for PyTorch ↔ Keras through ``normcore.keras.from_torch`` /
``to_torch``, otherwise by each convention's momentum rule).

The experiment: a stack of ``depth`` blocks ``Linear → BatchNorm → ReLU`` with the same fixed
linear weights on both sides runs ``steps`` training batches (the running statistics update;
the weights are not trained) and then one test batch in eval mode. The difference is max |Δ|
of each BatchNorm's eval output (values of scale 1), per layer, for each mismatch alone and
for the user's choices. The channel axis is not a difference but a shape error: see
:func:`axis_check`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, ClassVar, Mapping

import pandas as pd
import torch

from normcore import BatchNorm1d
from normcore.keras import BatchNormalization, from_torch, to_torch
from normcore.lab import devices, limits
from normcore.lab.fields import Field, QueryOptions, Schema

from normcore.lab.experiments.deploy import conventions as C

WIDTH = 16  # features per layer
SETTINGS = ("momentum", "eps", "variance", "axis")
CHOICES = ("converted", "as_typed")
AS_TYPED = {
    "momentum": "as typed: the same number",
    "eps": "as typed: left out, the target's default",
    "variance": "as typed: the target's own rule",
    "axis": "as typed: the target's default axis",
}
ARGUMENT_OF = {"momentum": "momentum", "eps": "eps", "variance": "unbiased", "axis": "axis"}  # in C.Arguments
SETTING_LABELS = {"momentum": "Momentum", "eps": "eps", "variance": "Running variance (biased/unbiased)", "axis": "Channel axis"}


def _choice(name: str) -> Field:
    return Field(name, SETTING_LABELS[name], "converted", "choice", f"How the {SETTING_LABELS[name].lower()} is carried over.",
                 choices=CHOICES, labels={"converted": "converted", "as_typed": AS_TYPED[name]}, widget="radio",
                 url=f"p_{name}")


FIELDS = Schema((
    Field("source", "Source", "keras", "choice", "The convention the model was written and trained in.",
          choices=tuple(C.CONVENTIONS), labels=C.LABELS, url="p_source"),
    Field("target", "Target", "pytorch", "choice", "The convention it is ported to.",
          choices=tuple(C.CONVENTIONS), labels=C.LABELS, url="p_target"),
    *(_choice(name) for name in SETTINGS),
    Field("depth", "Layers k", 6, "int", "Normalized layers in the stack.", 1, limits.MAX_PORT_DEPTH, 1,
          url="p_depth", caps=("port_work",)),
    Field("steps", "Training steps T", 50, "int", "Training batches both sides see before eval.",
          1, limits.MAX_PORT_STEPS, 1, url="p_steps", caps=("port_work",)),
    Field("batch", "Batch size", 32, "int", "Samples per training batch (the unbiased variance is n/(n−1) times the biased).",
          2, limits.MAX_PORT_BATCH, 1, url="p_batch"),
    Field("seed", "Seed", 0, "int", "Seed of the weights and the batches.", 0, 2**31 - 1, 1, widget="number_input", url="p_seed"),
))


@dataclass(frozen=True)
class PortOptions(QueryOptions):
    SCHEMA: ClassVar[Schema] = FIELDS

    source: str = FIELDS["source"].default
    target: str = FIELDS["target"].default
    momentum: str = FIELDS["momentum"].default
    eps: str = FIELDS["eps"].default
    variance: str = FIELDS["variance"].default
    axis: str = FIELDS["axis"].default
    depth: int = FIELDS["depth"].default
    steps: int = FIELDS["steps"].default
    batch: int = FIELDS["batch"].default
    seed: int = FIELDS["seed"].default

    def choices(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in SETTINGS}


# -- the target's arguments -------------------------------------------------------------------


def converted_arguments(source: str, target: str) -> tuple[C.Arguments, tuple[str, ...]]:
    """The target's arguments that reproduce the source, and the converter's notes."""
    src, tgt = C.defaults(source), C.CONVENTIONS[target]
    if (source, target) == ("pytorch", "keras"):
        layer, notes = from_torch(C.build(src, WIDTH), axis=-1)
        return C.Arguments(target, layer.momentum, layer.epsilon, False, -1), notes + (
            "Keras stores the biased variance only: the unbiased rule cannot be carried over (a difference of "
            "n/(n−1) in the running variance remains).",)
    if (source, target) == ("keras", "pytorch"):
        layer, notes = to_torch(C.build(src, WIDTH), BatchNorm1d)
        return C.Arguments(target, layer.momentum, layer.eps, layer.unbiased_running_var, 1), notes
    unbiased = src.unbiased if target != "keras" else False
    momentum = tgt.momentum_for(C.CONVENTIONS[source].new_weight(src.momentum))
    return C.Arguments(target, round(momentum, 12), src.eps, unbiased, tgt.axis), ()


def as_typed_arguments(source: str, target: str) -> C.Arguments:
    """The source's momentum number copied literally; eps, the variance rule and the axis left at the target's."""
    tgt = C.defaults(target)
    return replace(tgt, momentum=C.defaults(source).momentum)


def target_arguments(source: str, target: str, choices: Mapping[str, str]) -> C.Arguments:
    """Per setting, the converted or the as-typed value."""
    converted, typed = converted_arguments(source, target)[0], as_typed_arguments(source, target)
    typed_now = [ARGUMENT_OF[s] for s in SETTINGS if choices.get(s) == "as_typed"]
    return replace(converted, **{name: getattr(typed, name) for name in typed_now})


# -- the stack --------------------------------------------------------------------------------


def stack_data(depth: int, steps: int, batch: int, seed: int):
    """(linear weights per layer, training batches, test batch), shared by both sides."""
    g = torch.Generator().manual_seed(seed)
    weights = [(torch.randn(WIDTH, WIDTH, generator=g) * (2.0 / WIDTH) ** 0.5, 0.5 + torch.randn(WIDTH, generator=g))
               for _ in range(depth)]
    batches = 1.0 + 2.0 * torch.randn(steps, batch, WIDTH, generator=g)
    return weights, batches, 1.0 + 2.0 * torch.randn(256, WIDTH, generator=g)


def is_keras_style(layer) -> bool:
    """Keras's layers (normcore.keras's, or real Keras's) take ``training=`` in the call."""
    return isinstance(layer, BatchNormalization) or type(layer).__module__.startswith("keras")


def call(layer, x: torch.Tensor, training: bool) -> torch.Tensor:
    """A layer of any convention in training or eval mode."""
    if is_keras_style(layer):
        return torch.as_tensor(layer(x, training=training))
    layer.train(training)
    return layer(x)


def forward(layers, weights, x: torch.Tensor, training: bool) -> list[torch.Tensor]:
    """Each block's normalized output (before its ReLU)."""
    outputs, h = [], x
    for (w, b), layer in zip(weights, layers):
        y = call(layer, h @ w.T + b, training)
        outputs.append(y)
        h = torch.relu(y)
    return outputs


def run_side(build: Callable[[], object], data) -> list[torch.Tensor]:
    """Train the running statistics on every batch, then each layer's normalized output on the test batch."""
    weights, batches, test = data
    layers = [build() for _ in weights]
    with torch.no_grad():
        for x in batches:
            forward(layers, weights, x, True)
        return forward(layers, weights, test, False)


def per_layer(reference: list[torch.Tensor], other: list[torch.Tensor]) -> list[float]:
    return [(a.double() - b.double()).abs().max().item() for a, b in zip(reference, other)]


MISMATCHES = {  # name -> (label, the settings carried over as typed)
    "none": ("all converted", ()),
    "momentum": ("momentum as typed", ("momentum",)),
    "eps": ("eps as typed", ("eps",)),
    "variance": ("running variance as typed", ("variance",)),
}


def runs(o: PortOptions) -> dict[str, tuple[str, dict]]:
    """name -> (label, choices) of every run: each mismatch alone, and the user's choices."""
    out = {name: (label, {s: "as_typed" for s in typed}) for name, (label, typed) in MISMATCHES.items()}
    out["chosen"] = ("your choices", o.choices())
    return out


def differences(o: PortOptions, builder: Callable = C.build) -> pd.DataFrame:
    """Per run and layer: max |Δ| between the source's and the target's eval outputs.

    ``builder(arguments, features)`` makes each side's layer (the Keras convention can be real Keras)."""
    data = stack_data(o.depth, o.steps, o.batch, o.seed)
    reference = run_side(lambda: builder(C.defaults(o.source), WIDTH), data)
    done, rows = {}, []
    for name, (label, choices) in runs(o).items():
        args = replace(target_arguments(o.source, o.target, choices), axis=0)  # the axis is no difference (2D)
        if args not in done:
            done[args] = per_layer(reference, run_side(lambda: builder(args, WIDTH), data))
        rows += [{"run": name, "label": label, "layer": i + 1, "difference": d} for i, d in enumerate(done[args])]
    return pd.DataFrame(rows)


def same_in_both(source: str, target: str) -> list[str]:
    """The settings where as typed and converted give the same target (no mismatch to carry)."""
    converted, typed = converted_arguments(source, target)[0], as_typed_arguments(source, target)
    return [s for s in SETTINGS if getattr(converted, ARGUMENT_OF[s]) == getattr(typed, ARGUMENT_OF[s])]


# -- the channel axis: a shape error ---------------------------------------------------------------


@dataclass(frozen=True)
class AxisCheck:
    shape: tuple[int, ...]  # the input in the source's layout
    code: str  # what the target runs
    error: str | None  # the error it raises, or None
    fix: str


def axis_check(source: str, target: str, choice: str, length: int = 5) -> AxisCheck:
    """Feed the source's layout to the target's layer (built for WIDTH features) as typed or converted."""
    src_axis = C.CONVENTIONS[source].axis
    x = torch.randn((8, WIDTH, length) if src_axis == 1 else (8, length, WIDTH))
    moved = "x" if src_axis == 1 else "x.movedim(-1, 1)"
    if target == "keras":
        axis = C.CONVENTIONS[target].axis if choice == "as_typed" else src_axis
        layer = BatchNormalization(axis=axis)
        layer.build((1, WIDTH) if axis == -1 else (1, WIDTH, 1))
        code, fix, run = (f"keras.layers.BatchNormalization(axis={axis})(x)",
                          f"keras.layers.BatchNormalization(axis={src_axis}): name the source's channel axis",
                          lambda: layer(x, training=False))
    else:
        layer = torch.nn.BatchNorm1d(WIDTH).eval()
        feed = "x" if choice == "as_typed" else moved
        code, fix, run = (f"torch.nn.BatchNorm1d({WIDTH})({feed})",
                          "torch's BatchNorm takes channels at dim 1: feed x.movedim(-1, 1) and move the result back "
                          "with y.movedim(1, -1)", lambda: layer(x if feed == "x" else x.movedim(-1, 1)))
    try:
        run()
        error = None
    except (RuntimeError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return AxisCheck(tuple(x.shape), code, error, fix)


# -- the whole tab ---------------------------------------------------------------------------------

# Thousands of calls on 16-feature tensors: worker threads only add overhead, and on a loaded
# machine torch's spinning threads made them ~10x slower. One thread, through the lab's lock.
ONE_THREAD = devices.Target("cpu", 1)


@dataclass(frozen=True)
class PortView:
    differences: pd.DataFrame  # run, label, layer, difference
    target: C.Arguments  # with the user's choices
    code: str  # the target's layer, to copy
    notes: tuple[str, ...]  # what the converters said
    same: tuple[str, ...]  # settings where as typed = converted
    axis: AxisCheck


def problems(o: PortOptions) -> list[str]:
    """Why these options cannot run, saying what to change."""
    out = [limits.port_work(o.depth, o.steps)]
    if o.source == o.target:
        out.append(f"Source and target are both {C.LABELS[o.source]}: there is nothing to port. Pick another target.")
    return [message for message in out if message]


def run(o: PortOptions) -> PortView:
    target = target_arguments(o.source, o.target, o.choices())
    with devices.placed(ONE_THREAD):
        frame = differences(o)
    return PortView(frame, target, C.code(target, WIDTH), converted_arguments(o.source, o.target)[1],
                    tuple(same_in_both(o.source, o.target)), axis_check(o.source, o.target, o.axis))


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run: the difference at layer 1 and at the last layer (the closing note's table)."""
    last = frame["layer"].max()
    table = frame[frame["layer"].isin((1, last))].pivot_table(index="label", columns="layer", values="difference", sort=False)
    return table.rename(columns={1: "layer 1", last: f"layer {last}"})
