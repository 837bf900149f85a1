"""What to train: the variants of each mode, and every problem with a configuration.

* ``compare``: every chosen normalization on every chosen device;
* ``batch_sweep``: BN, GN, LN, RMSNorm and no norm at batch sizes 2…256 (Wu & He 2018 Figure 1 at
  small scale). Below batch 32 the learning rate is scaled linearly with the batch
  (lr · N/32, as the GroupNorm paper does); from 32 up it stays as chosen (a linearly scaled
  8× step diverges without warm-up), and every point trains at least ``MIN_SWEEP_STEPS``
  steps so large batches are not simply under-trained;
* ``lr_sweep``: with and without BN over learning rates 0.001…10.

The caps a plan must respect are ``normcore.lab.limits``' named checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from normcore.lab import devices, limits, models
from normcore.lab.settings import Problem
from normcore.lab.experiments.training.config import RunConfig

BATCH_SWEEP_SIZES = (2, 4, 8, 16, 32, 64, 128, 256)
BATCH_SWEEP_NORMS = ("batch", "group", "layer", "rms", "none")
BATCH_SWEEP_REFERENCE = 32  # the batch size at which the sweep uses the chosen learning rate
# With the epochs fixed, a batch of 256 gets 5 steps an epoch and ends under-trained whatever
# its normalization; each sweep point trains at least this many steps (more epochs) instead.
MIN_SWEEP_STEPS = 100
# Finer where the limits lie: on digits the MLP without BN stops training near 0.3, with BN near 0.7.
LR_SWEEP_RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0, 5.0, 10.0)
LR_SWEEP_NORMS = ("batch", "none")


@dataclass(frozen=True)
class Variant:
    """One training run of an experiment."""

    norm: str
    device: str  # a devices.Target key
    batch_size: int
    lr: float
    epochs: int
    label: str

    def steps(self, train_size: int) -> int:
        return train_size // self.batch_size * self.epochs

    @property
    def target(self) -> devices.Target:
        return devices.parse_target(self.device)


def train_size(c: RunConfig) -> int:
    """Training samples of the chosen data set (its 75 % training split)."""
    return 2000 if c.dataset == "clusters" else 1347


def _variants(c: RunConfig) -> list[Variant]:
    device, n_train = c.devices[0], train_size(c)
    if c.mode == "batch_sweep":
        epochs = {b: max(c.epochs, math.ceil(MIN_SWEEP_STEPS / max(1, n_train // b))) for b in BATCH_SWEEP_SIZES}
        return [Variant(n, device, b, c.lr * min(1.0, b / BATCH_SWEEP_REFERENCE), epochs[b], f"{models.NORM_LABELS[n]} · N={b}")
                for n in BATCH_SWEEP_NORMS for b in BATCH_SWEEP_SIZES]
    if c.mode == "lr_sweep":
        return [Variant(n, device, c.batch_size, lr, c.epochs, f"{models.NORM_LABELS[n]} · lr={lr:g}")
                for n in LR_SWEEP_NORMS for lr in LR_SWEEP_RATES]
    many = len(c.devices) > 1
    return [Variant(n, d, c.batch_size, c.lr, c.epochs, models.NORM_LABELS[n] + (f" · {devices.parse_target(d).label}" if many else ""))
            for n in c.norms for d in c.devices]


def _trainable(c: RunConfig, out: list[Problem]) -> list[Variant]:
    """The mode's variants that can train, with a warning for each skipped normalization."""
    variants = []
    for v in _variants(c):
        why = models.norm_problem(c.model, v.norm, c.width, c.num_groups)
        if why:
            if not any(why in p.message for p in out):
                out.append(Problem("warning", f"Skipped {models.NORM_LABELS[v.norm]}: {why}"))
            continue
        if v.batch_size > train_size(c):
            continue
        variants.append(v)
    return variants


def _work_problems(c: RunConfig, variants: list[Variant]) -> list[Problem]:
    """The run's total work against its combined caps (normcore.lab.limits.training_work)."""
    steps = sum(v.steps(train_size(c)) for v in variants)
    samples = sum(v.steps(train_size(c)) * v.batch_size for v in variants)
    macs = 3 * models.forward_macs(c.model, c.width, c.depth) * samples
    return [Problem("error", m) for m in limits.training_work(steps, macs, samples)]


def plan(c: RunConfig) -> tuple[list[Variant], list[Problem]]:
    """The variants that will run, and every problem in words (errors block the run;
    warnings say which variants were skipped and why)."""
    try:
        for d in c.devices:
            devices.parse_target(d)
    except ValueError as exc:
        return [], [Problem("error", str(exc))]
    out: list[Problem] = []
    variants = _trainable(c, out)
    if c.mode == "compare" and (too_many := limits.variants_per_run(len(variants))):
        out.append(Problem("error", too_many))
    if c.mode == "compare" and c.batch_size > train_size(c):
        out.append(Problem("error", f"The batch size {c.batch_size} is larger than the training set ({train_size(c)} samples)."))
    if c.probe_layer > c.depth:
        out.append(Problem("warning", f"The model has {c.depth} hidden block(s); tracking the last one instead of block {c.probe_layer}."))
    out += _work_problems(c, variants)
    if not variants and not any(p.level == "error" for p in out):
        out.append(Problem("error", "Nothing to train: every chosen normalization was skipped (see above)."))
    return variants, out


def errors(c: RunConfig) -> list[str]:
    return [p.message for p in plan(c)[1] if p.level == "error"]
