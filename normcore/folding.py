"""Fold every BatchNorm of a model into the conv or linear layer before it: :func:`fold_batchnorm`.

>>> import torch, normcore
>>> from torch import nn
>>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4)).eval()
>>> folded, report = normcore.fold_batchnorm(model, return_report=True)
>>> print(report)
folded 1 BatchNorm, left 1:
  folded 1 (BatchNorm2d) into 0 (Conv2d)
  left   3 (BatchNorm2d): after 2 (ReLU), not a Conv or Linear: ReLU is not linear, so BatchNorm's affine map cannot move through it

Which pairs are folded is read from the module tree alone: a layer and a BatchNorm that are
adjacent in a ``Sequential`` (nested ``Sequential``s are flattened into one chain), because
there the output of one is the input of the other and nothing else. A BatchNorm anywhere else
(called from a custom ``forward``) is left, with the reason. The folded BatchNorm becomes an
``nn.Identity``, so the other layers keep their names and the state_dict its keys.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass

from torch import nn

from .fusion import BATCH_NORMS, fuse_conv_bn_eval, fuse_linear_bn_eval

FOLDABLE = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass(frozen=True)
class Folded:
    layer: str  # the conv or linear layer's name in the model
    norm: str  # the BatchNorm's
    layer_type: str
    norm_type: str


@dataclass(frozen=True)
class Left:
    norm: str
    norm_type: str
    reason: str


@dataclass(frozen=True)
class FoldReport:
    folded: tuple[Folded, ...]
    left: tuple[Left, ...]

    def __str__(self) -> str:
        lines = [f"folded {len(self.folded)} BatchNorm, left {len(self.left)}:"]
        lines += [f"  folded {f.norm} ({f.norm_type}) into {f.layer} ({f.layer_type})" for f in self.folded]
        lines += [f"  left   {x.norm} ({x.norm_type}): {x.reason}" for x in self.left]
        return "\n".join(lines)


def _name(path: str) -> str:
    return path or "the model itself"


def _refuse_training(model: nn.Module) -> None:
    training = [f"'{n}'" if n else _name(n) for n, m in model.named_modules() if m.training]
    if training:
        shown = ", ".join(training[:3]) + (f" and {len(training) - 3} more" if len(training) > 3 else "")
        raise ValueError(f"fold_batchnorm needs the model in eval mode, but {shown} "
                         f"{'is' if len(training) == 1 else 'are'} in training mode, where BatchNorm normalizes with "
                         "each batch's statistics and no fold can reproduce it. Call model.eval() first.")


def _chain(seq: nn.Sequential, path: str) -> list[tuple[nn.Sequential, str, str, nn.Module]]:
    """The leaves of a Sequential in the order they run, nested Sequentials flattened:
    (container, key in it, full name, module)."""
    out = []
    for key, child in seq.named_children():
        full = f"{path}.{key}" if path else key
        out += _chain(child, full) if isinstance(child, nn.Sequential) else [(seq, key, full, child)]
    return out


def _chains(model: nn.Module) -> list[list]:
    """One chain per outermost Sequential (a Sequential inside a Sequential is part of its chain)."""
    inner = {id(c) for m in model.modules() if isinstance(m, nn.Sequential) for c in m.children()}
    return [_chain(m, n) for n, m in model.named_modules() if isinstance(m, nn.Sequential) and id(m) not in inner]


def _why_not(previous, uses: Counter) -> str | None:
    """Why the BatchNorm cannot be folded into the leaf before it, or None if it can."""
    if previous is None:
        return "first in its Sequential: nothing before it to fold into"
    _, _, name, layer = previous
    if isinstance(layer, BATCH_NORMS):
        return f"after {name} ({type(layer).__name__}), another BatchNorm, not a Conv or Linear"
    if not isinstance(layer, FOLDABLE):
        kind = type(layer).__name__
        return (f"after {name} ({kind}), not a Conv or Linear: {kind} is not linear, so BatchNorm's affine map "
                "cannot move through it")
    if uses[id(layer)] > 1:
        return f"{name} ({type(layer).__name__}) is used more than once in the model; folding would change its other uses"
    return None


def _fold_pair(layer: nn.Module, bn: nn.Module) -> nn.Module:
    if isinstance(layer, nn.Linear):
        return fuse_linear_bn_eval(layer, bn)
    return fuse_conv_bn_eval(layer, bn, transpose=layer.transposed)


def _fold_chain(chain: list, uses: Counter, folded: list, left: list) -> None:
    previous = None
    for leaf in chain:
        container, key, name, module = leaf
        if isinstance(module, BATCH_NORMS):
            reason = _why_not(previous, uses)
            if reason is None:
                p_container, p_key, p_name, layer = previous
                try:
                    fused = _fold_pair(layer, module)
                    setattr(p_container, p_key, fused)
                    setattr(container, key, nn.Identity())
                    folded.append(Folded(p_name, name, type(layer).__name__, type(module).__name__))
                    previous = (p_container, p_key, p_name, fused)  # a second BatchNorm right after folds in too
                    continue
                except ValueError as exc:
                    reason = str(exc)
            left.append(Left(name, type(module).__name__, reason))
        previous = leaf


def fold_batchnorm(model, return_report=False):
    """A copy of the eval-mode ``model`` with every BatchNorm folded into the Conv/ConvTranspose/
    Linear layer right before it in a ``Sequential``; the original is left untouched.

    With ``return_report=True`` returns ``(folded_model, FoldReport)``: the pairs folded, and
    each BatchNorm left with the reason (an activation in between, no running statistics,
    not in a ``Sequential``...). A model in training mode raises ``ValueError``: call
    ``model.eval()`` first.
    """
    _refuse_training(model)
    out = copy.deepcopy(model)
    uses = Counter(id(m) for _, m in out.named_modules(remove_duplicate=False))
    folded, left = [], []
    for chain in _chains(out):
        _fold_chain(chain, uses, folded, left)
    seen = {f.norm for f in folded} | {x.norm for x in left}
    for name, module in out.named_modules():
        if isinstance(module, BATCH_NORMS) and name not in seen:
            left.append(Left(_name(name), type(module).__name__, "not in a Sequential: the order its forward() runs "
                             "the layers in is not in the module tree, so nothing is known to come right before it"))
    report = FoldReport(tuple(folded), tuple(left))
    return (out, report) if return_report else out


__all__ = ["FoldReport", "Folded", "Left", "fold_batchnorm"]
