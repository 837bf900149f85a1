"""The BatchNorm conventions a port crosses: PyTorch, Keras/TensorFlow and the d2l from-scratch code.

Each convention is what its code means when it says ``momentum=m``, and what it does when it
says nothing: its defaults. Four settings differ:

* **momentum**: PyTorch's ``m`` weights the NEW batch value (``running = (1 − m)·running + m·batch``,
  default 0.1); Keras's weights the OLD one (``moving = m·moving + (1 − m)·batch``, 0.99). d2l's
  from-scratch ``batch_norm`` weighted the old value with ``momentum=0.9`` in its earlier editions
  (0.x, the MXNet code and the Chinese 2.0 edition) and the new one with ``momentum=0.1`` in
  edition 1.x (PyTorch).
* **eps**: 1e-5 (PyTorch, d2l) or 1e-3 (Keras).
* **the running variance**: torch stores the unbiased batch variance, Keras and d2l the biased one.
* **the channel axis**: 1 (channels first: PyTorch, d2l's PyTorch code) or −1 (Keras).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from normcore import BatchNorm1d
from normcore.ema import keras_momentum_from_torch
from normcore.keras import BatchNormalization


@dataclass(frozen=True)
class Convention:
    key: str
    label: str
    momentum: float  # the default as typed in this convention's code
    weights: str  # "new": m weights the batch value; "old": m weights the running value
    eps: float
    unbiased: bool  # the running variance stores the unbiased batch variance
    axis: int  # the channel axis of its usual layout

    def new_weight(self, momentum: float) -> float:
        """The weight ``momentum`` gives the new batch value in this convention."""
        return momentum if self.weights == "new" else 1.0 - momentum

    def momentum_for(self, new_weight: float) -> float:
        """The momentum to type in this convention for a given weight of the new batch value."""
        if self.weights == "new":
            return new_weight
        return keras_momentum_from_torch(new_weight)


CONVENTIONS = {
    "pytorch": Convention("pytorch", "PyTorch (torch.nn.BatchNorm1d)", 0.1, "new", 1e-5, True, 1),
    "keras": Convention("keras", "Keras / TensorFlow (keras.layers.BatchNormalization)", 0.99, "old", 1e-3, False, -1),
    "d2l_0": Convention("d2l_0", "d2l from scratch, earlier editions (momentum=0.9 weights the old value)", 0.9, "old", 1e-5, False, 1),
    "d2l_1": Convention("d2l_1", "d2l from scratch, edition 1.x (momentum=0.1 weights the new value)", 0.1, "new", 1e-5, False, 1),
}
LABELS = {key: c.label for key, c in CONVENTIONS.items()}


class D2LBatchNorm(nn.Module):
    """d2l's from-scratch ``batch_norm`` (2D inputs): biased batch variance, its momentum rule."""

    def __init__(self, features: int, momentum: float, eps: float, weights: str, unbiased: bool = False):
        super().__init__()
        self.momentum, self.eps, self.weights, self.unbiased = momentum, eps, weights, unbiased
        self.gamma, self.beta = nn.Parameter(torch.ones(features)), nn.Parameter(torch.zeros(features))
        self.register_buffer("moving_mean", torch.zeros(features))
        self.register_buffer("moving_var", torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.gamma * (x - self.moving_mean) / torch.sqrt(self.moving_var + self.eps) + self.beta
        mean, var = x.mean(0), ((x - x.mean(0)) ** 2).mean(0)
        with torch.no_grad():
            stored = x.var(0, unbiased=True) if self.unbiased else var
            m = self.momentum if self.weights == "old" else 1.0 - self.momentum  # the weight of the old value
            self.moving_mean.copy_(m * self.moving_mean + (1.0 - m) * mean)
            self.moving_var.copy_(m * self.moving_var + (1.0 - m) * stored)
        return self.gamma * (x - mean) / torch.sqrt(var + self.eps) + self.beta


@dataclass(frozen=True)
class Arguments:
    """One side's BatchNorm arguments, in its own convention's terms."""

    convention: str
    momentum: float
    eps: float
    unbiased: bool
    axis: int


def defaults(key: str) -> Arguments:
    c = CONVENTIONS[key]
    return Arguments(key, c.momentum, c.eps, c.unbiased, c.axis)


def build(args: Arguments, features: int) -> nn.Module:
    """The layer ``args`` describe: normcore's BatchNorm1d (torch's rule), normcore.keras's layer, or d2l's."""
    c = CONVENTIONS[args.convention]
    if args.convention == "pytorch":
        return BatchNorm1d(features, eps=args.eps, momentum=args.momentum, unbiased_running_var=args.unbiased)
    if args.convention == "keras":
        layer = BatchNormalization(axis=-1, momentum=args.momentum, epsilon=args.eps)
        layer.build((1, features))
        return layer
    return D2LBatchNorm(features, args.momentum, args.eps, c.weights, args.unbiased)


def code(args: Arguments, features: int) -> str:
    """The target's layer as the user would type it."""
    m, eps = f"{args.momentum:.6g}", f"{args.eps:g}"
    if args.convention == "pytorch":
        if args.unbiased:
            return f"torch.nn.BatchNorm1d({features}, eps={eps}, momentum={m})"
        return f"normcore.BatchNorm1d({features}, eps={eps}, momentum={m}, unbiased_running_var=False)"
    if args.convention == "keras":
        return f"keras.layers.BatchNormalization(axis={args.axis}, momentum={m}, epsilon={eps})"
    rule = "x.var(0, unbiased=True)" if args.unbiased else "((X - mean) ** 2).mean(0)"
    return f"batch_norm(X, gamma, beta, moving_mean, moving_var, eps={eps}, momentum={m})  # stored variance: {rule}"


__all__ = ["Arguments", "CONVENTIONS", "Convention", "D2LBatchNorm", "LABELS", "build", "code", "defaults"]
