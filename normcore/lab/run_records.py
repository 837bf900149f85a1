"""What a training run is told and what it reports: :class:`TrainConfig`, one
:class:`Progress` per report, and the :class:`TrainResult` at the end (``loop.train`` fills them)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from functools import cached_property

import pandas as pd

OPTIMIZERS = ("sgd", "adam")
OPTIMIZER_LABELS = {"sgd": "SGD with momentum 0.9", "adam": "Adam"}


@dataclass(frozen=True)
class TrainConfig:
    """How to train (not what or where: the model and the device are separate arguments)."""

    epochs: int = 3
    batch_size: int = 32
    lr: float = 0.05
    optimizer: str = "sgd"
    sgd_momentum: float = 0.9
    seed: int = 0
    log_every: int = 10  # steps between progress callbacks
    probe_layer: int = -1  # which hidden block's pre-activation to track (-1: the last)

    def check(self, train_size: int) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"The learning rate must be a positive number, got {self.lr}.")
        if self.epochs < 1 or self.log_every < 1:
            raise ValueError(f"epochs and log_every must be ≥ 1, got {self.epochs} and {self.log_every}.")
        if not 2 <= self.batch_size <= train_size:
            raise ValueError(
                f"The batch size must be from 2 to the training set's {train_size} samples, got {self.batch_size}."
            )


@dataclass(frozen=True)
class Progress:
    """One progress report. ``loss``/``accuracy`` average the training batches since the last
    report; ``test_accuracy`` etc. are set only on the report that ends an epoch."""

    step: int
    total_steps: int
    epoch: float  # fractional: 1.5 = halfway through the second epoch
    loss: float
    accuracy: float
    wall_s: float  # training time so far
    samples_per_s: float
    p15: float
    p50: float
    p85: float
    train_accuracy: float | None = None  # over this epoch's training batches, as trained
    test_loss: float | None = None
    test_accuracy: float | None = None

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 1.0

    def as_row(self) -> dict:
        return {name: getattr(self, name) for name in PROGRESS_COLUMNS}  # (dataclasses.asdict deep-copies: slow)


PROGRESS_COLUMNS = tuple(f.name for f in fields(Progress))


@dataclass
class TrainResult:
    """What a run produced. ``rows`` has one dict per :class:`Progress`, and ``history`` is the
    same as a frame (built when first read: a page reads only the final numbers)."""

    rows: list[dict]
    status: str  # "finished", "stopped" or "diverged"
    message: str  # why it ended early, in words ("" when it finished)
    steps: int
    steps_per_epoch: int
    device: str
    threads: int
    train_time_s: float
    diverged_at_step: int | None = None
    extra: dict = field(default_factory=dict)

    @cached_property
    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(PROGRESS_COLUMNS))

    @property
    def epochs(self) -> pd.DataFrame:
        """The rows that end an epoch (they carry the eval-mode accuracies)."""
        return self.history.dropna(subset=["test_accuracy"]).reset_index(drop=True)

    @property
    def samples_per_s(self) -> float:
        return float(self.rows[-1]["samples_per_s"]) if self.rows else math.nan

    @property
    def time_per_epoch_s(self) -> float:
        return self.train_time_s * self.steps_per_epoch / self.steps if self.steps else float("nan")

    def _last(self, column: str) -> float:
        """The last epoch-end value of ``column`` (NaN if no epoch ended)."""
        return next((float(row[column]) for row in reversed(self.rows) if row[column] is not None), math.nan)

    @property
    def final_train_accuracy(self) -> float:
        return self._last("train_accuracy")

    @property
    def final_test_accuracy(self) -> float:
        return self._last("test_accuracy")

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"
