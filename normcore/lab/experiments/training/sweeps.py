"""Reading the sweeps: chance level, "still trains", the largest trainable learning rate,
and the GroupNorm paper's numbers the batch sweep is compared with."""

from __future__ import annotations

import math

import pandas as pd

from normcore.lab import models
from normcore.lab.experiments.training.config import RunConfig
from normcore.lab.experiments.training.variants import BATCH_SWEEP_REFERENCE, MIN_SWEEP_STEPS

MODE_NOTES = {
    "compare": ("The input of one nonlinearity over the training batches. With BN its distribution stays put (BN "
                "re-centres and re-scales it every step); without, it is free to drift as the weights change. "
                "Ioffe & Szegedy saw clear drift with sigmoids over 50k steps: try Activation = sigmoid and more epochs."),
    "batch_sweep": (f"Left: this lab, learning rate lr·min(1, N/{BATCH_SWEEP_REFERENCE}) and at least {MIN_SWEEP_STEPS} steps per point. Right: the "
                    "paper's numbers (error, lower is better): BN degrades at small batches, GN does not. The paper predates "
                    "RMSNorm (Zhang & Sennrich 2019), so it has no number for it."),
    "lr_sweep": "“Still trains”: no NaN/inf loss and test accuracy at least halfway from chance to 100 %.",
}


def chance_accuracy(config: RunConfig) -> float:
    return 1 / 4 if config.dataset == "clusters" else 1 / 10


def trains(test_accuracy: float, diverged: bool, chance: float) -> bool:
    """"Still trains": no divergence and test accuracy at least halfway from chance to 100 %."""
    return (not diverged) and test_accuracy >= chance + 0.5 * (1 - chance)


def largest_trainable_lr(summary: pd.DataFrame, chance: float) -> pd.DataFrame:
    """Per normalization: the largest learning rate that still trains (NaN if none did)."""
    rows = []
    if summary.empty:  # nothing has finished yet
        return pd.DataFrame(columns=["norm", "normalization", "largest_lr", "best_test_accuracy"])
    for norm, group in summary.groupby("norm", sort=False):
        ok = group[[trains(a, d, chance) for a, d in zip(group["test_accuracy"], group["diverged"])]]
        rows.append(dict(norm=norm, normalization=models.NORM_LABELS[norm],
                         largest_lr=float(ok["lr"].max()) if len(ok) else math.nan,
                         best_test_accuracy=float(group["test_accuracy"].max())))
    return pd.DataFrame(rows)


def largest_lr_table(summary: pd.DataFrame, chance: float) -> pd.DataFrame:
    """:func:`largest_trainable_lr` with the page's headers."""
    return largest_trainable_lr(summary, chance).drop(columns="norm").rename(columns={
        "normalization": "Normalization", "largest_lr": "Largest learning rate that trains",
        "best_test_accuracy": "Best test accuracy"})


def paper_group_norm_errors() -> pd.DataFrame:
    """Wu & He 2018, ImageNet ResNet-50 top-1 error (%) by images per GPU."""
    table = {"batch": (23.6, 23.7, 24.8, 27.3, 34.7), "group": (24.1, 24.2, 24.0, 24.2, 24.1)}
    rows = [dict(norm=n, normalization=models.NORM_LABELS[n], batch_size=b, top1_error=e)
            for n, errs in table.items() for b, e in zip((32, 16, 8, 4, 2), errs)]
    rows += [dict(norm=n, normalization=models.NORM_LABELS[n], batch_size=32, top1_error=e)
             for n, e in (("layer", 25.3), ("instance", 28.4))]
    return pd.DataFrame(rows)


def paper_table() -> pd.DataFrame:
    """The paper's top-1 errors as a normalization × images-per-GPU table of text ("—" where
    the paper has no number)."""
    table = paper_group_norm_errors().pivot(index="normalization", columns="batch_size", values="top1_error")
    return table.map(lambda v: "—" if pd.isna(v) else f"{v:.1f}").rename(columns=lambda b: f"{b} images/GPU")
