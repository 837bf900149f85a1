"""The classic BatchNorm-folding mistakes, each made live on the digits CNN and measured.

Every mistake is a function ``(cnn, options, reference) -> Mistake``: the max |Δ| of the
mistaken fold against the unfolded model in eval (``reference``: its logits on the test
digits), next to the right way's, and how many test digits change their predicted class.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import fusion as torch_fusion

import normcore

from normcore.lab.experiments.deploy.fold_options import FoldOptions

CALIBRATION_DIGITS = 512  # training digits of one calibration pass (statistics of a variant model)
HEAD_DIGITS = 256  # digits the upsampling head is calibrated and measured on (its maps are 4× the CNN's)


@dataclass(frozen=True)
class Mistake:
    key: str
    mistake: str  # what was done wrong, in a few words
    error: float  # max |Δ| of the mistaken fold against the unfolded model in eval
    right_way: str
    right_error: float  # the same for the right way
    predictions_changed: int | None  # test digits whose class the mistake changes (None: not logits)
    explanation: str


def _delta(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def _changed(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a.argmax(1) != b.argmax(1)).sum())


def _calibrated_copy(model: nn.Module, x: torch.Tensor, momentum) -> nn.Module:
    """A copy whose BatchNorms' running statistics come from one training-mode pass of ``x``
    (momentum None: the cumulative average of that pass; 1: that batch alone)."""
    out = copy.deepcopy(model)
    for m in out.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = momentum
    out.train()
    out(x)
    return out.eval()


def train_mode(cnn, o: FoldOptions, reference) -> Mistake:
    x, data = cnn.data.x_train[: o.batch], cnn.data
    one_batch = normcore.fold_batchnorm(_calibrated_copy(cnn.model, x, momentum=1.0))
    try:
        normcore.fold_batchnorm(copy.deepcopy(cnn.model).train())
        refusal = ""
    except ValueError as exc:
        refusal = f" normcore.fold_batchnorm refuses a model in training mode: “{exc}”"
    out = one_batch(data.x_test)
    return Mistake("train_mode", f"Folded from training mode: one batch of {o.batch} digits' statistics",
                   _delta(out, reference), "model.eval(), then fold (the running statistics)",
                   _delta(normcore.fold_batchnorm(cnn.model)(data.x_test), reference), _changed(out, reference),
                   "In training mode BatchNorm normalizes with the statistics of the batch in front of it; a fold "
                   "taken there bakes that one batch's mean and variance into every later input. Larger batches "
                   "bake in less noise, never none." + refusal)


def _fold_blocks(model, bias_of) -> nn.Module:
    """Each Conv→BatchNorm block folded with W' = W·γ/√(σ²+ε) and the bias ``bias_of(conv, bn)``."""
    out = copy.deepcopy(model)
    for block in out.body:
        conv, bn = block[0], block[1]
        fused = normcore.fuse_conv_bn_eval(conv, bn)
        fused.bias = nn.Parameter(bias_of(conv, bn))
        block[0], block[1] = fused, nn.Identity()
    return out


def dropped_gamma(cnn, o: FoldOptions, reference) -> Mistake:
    without = _fold_blocks(cnn.model, lambda c, bn: (c.bias - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) + bn.bias)
    right = _fold_blocks(cnn.model, lambda c, bn: (c.bias - bn.running_mean) * bn.weight / torch.sqrt(bn.running_var + bn.eps) + bn.bias)
    x = cnn.data.x_test
    out = without(x)
    gammas = torch.cat([b[1].weight for b in cnn.model.body])
    return Mistake("dropped_gamma", "b' = (b − μ)/√(σ²+ε) + β: γ dropped from the bias", _delta(out, reference),
                   "b' = (b − μ)·γ/√(σ²+ε) + β", _delta(right(x), reference), _changed(out, reference),
                   "The weights are scaled by γ/√(σ²+ε) but the bias only by 1/√(σ²+ε), so every channel is "
                   f"shifted by (b − μ)(1 − γ)/√(σ²+ε). The error grows with |γ − 1| (here γ spans "
                   f"{float(gammas.min()):.2f} to {float(gammas.max()):.2f}).")


def across_relu(cnn, o: FoldOptions, reference) -> Mistake:
    """A Conv → ReLU → BatchNorm variant of the CNN (same weights and γ/β, statistics calibrated in
    that order), whose BatchNorm is folded into the conv as if the ReLU were not there."""
    variant = copy.deepcopy(cnn.model)
    for i, block in enumerate(variant.body):
        variant.body[i] = nn.Sequential(block[0], block[2], block[1])
    variant = _calibrated_copy(variant, cnn.data.x_train[:CALIBRATION_DIGITS], momentum=None)
    x = cnn.data.x_test
    truth = variant(x)
    wrong = copy.deepcopy(variant)
    for block in wrong.body:
        block[0], block[2] = normcore.fuse_conv_bn_eval(block[0], block[2]), nn.Identity()
    left, report = normcore.fold_batchnorm(variant, return_report=True)
    out = wrong(x)
    reason = report.left[0].reason if report.left else "(none given)"
    return Mistake("across_relu", "Conv → ReLU → BatchNorm folded as if the ReLU were not there", _delta(out, truth),
                   "leave it (normcore.fold_batchnorm does)", _delta(left(x), truth), _changed(out, truth),
                   "max(0, z)·s + t ≠ max(0, z·s + t): the BatchNorm's scale and shift cannot move through the "
                   f"ReLU (measured on a Conv → ReLU → BN version of this CNN). The report says: “{reason}”.")


def float16(cnn, o: FoldOptions, reference) -> Mistake:
    """Folded in float16 arithmetic (the model cast first), vs folded in float32 then cast."""
    x = cnn.data.x_test
    half = copy.deepcopy(cnn.model).half()
    for block in half.body:  # torch's utility computes 1/√(σ²+ε) and the products in the tensors' dtype
        block[0], block[1] = torch_fusion.fuse_conv_bn_eval(block[0], block[1]), nn.Identity()
    out = half.float()(x)  # run in float32: what differs is the folded weights alone
    right = normcore.fold_batchnorm(cnn.model).half().float()
    return Mistake("float16", "Folded in float16: model.half() first, then fold", _delta(out, reference),
                   "fold in float32, then .half()", _delta(right(x), reference), _changed(out, reference),
                   "In float16, σ² + ε loses ε below about 6·10⁻⁸ (subnormal) and each factor γ/√(σ²+ε) and product "
                   "is rounded to 11 bits on the way. Folding in float32 (normcore folds in float64) and casting "
                   "once at the end leaves only the rounding of the stored weights. Both are run in float32 here, "
                   "so the difference is in the weights alone.")


def transpose_flag(cnn, o: FoldOptions, reference) -> Mistake:
    """An upsampling head, ConvTranspose2d(C, C, 2, stride 2) → BatchNorm2d(C), on the CNN's feature maps."""
    with torch.random.fork_rng():
        torch.manual_seed(o.seed)
        head = nn.Sequential(nn.ConvTranspose2d(o.width, o.width, 2, stride=2), nn.BatchNorm2d(o.width))
    gen = torch.Generator().manual_seed(o.seed + 2)
    with torch.no_grad():
        head[1].weight.copy_(torch.rand(o.width, generator=gen) + 0.5)
        head[1].bias.copy_(0.5 * torch.randn(o.width, generator=gen))
    head = _calibrated_copy(head, cnn.model.body(cnn.data.x_train[:HEAD_DIGITS]), momentum=None)
    features = cnn.model.body(cnn.data.x_test[:HEAD_DIGITS])
    truth = head(features)
    out = torch_fusion.fuse_conv_bn_eval(head[0], head[1])(features)  # transpose=False: no error, no warning
    try:
        normcore.fuse_conv_bn_eval(head[0], head[1])
        refusal = ""
    except ValueError as exc:
        refusal = f" normcore refuses it: “{exc}”"
    right = normcore.fuse_conv_bn_eval(head[0], head[1], transpose=True)(features)
    return Mistake("transpose", "ConvTranspose2d folded without transpose=True (torch's utility)", _delta(out, truth),
                   "transpose=True", _delta(right, truth), None,
                   "A ConvTranspose's weight is (in, out/groups, k, k): its output channels are dim 1, not dim 0. "
                   "With as many input as output channels torch's fuse_conv_bn_eval scales the wrong dim without a "
                   "word. Measured on the upsampled feature maps of an upsampling head (ConvTranspose2d → "
                   f"BatchNorm2d) on this CNN's features of {HEAD_DIGITS} test digits." + refusal)


MISTAKES = (train_mode, dropped_gamma, across_relu, float16, transpose_flag)


def run_all(cnn, o: FoldOptions, reference: torch.Tensor) -> pd.DataFrame:
    """Every mistake, one row each (the fields of :class:`Mistake`)."""
    with torch.no_grad():
        return pd.DataFrame([asdict(m(cnn, o, reference)) for m in MISTAKES])


__all__ = ["MISTAKES", "Mistake", "across_relu", "dropped_gamma", "float16", "run_all", "train_mode", "transpose_flag"]
