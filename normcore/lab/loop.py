"""A device-agnostic training loop with progress callbacks, a stop flag and divergence detection.

>>> from normcore.lab import datasets, models, loop
>>> data = datasets.load_digits_split(seed=0)
>>> model = models.make_model("mlp", norm="batch", width=32, depth=2, seed=0)
>>> result = loop.train(model, data, loop.TrainConfig(epochs=2, batch_size=32, lr=0.05))
>>> result.status, round(result.final_test_accuracy, 2)  # doctest: +SKIP
('finished', 0.95)

What ``train`` guarantees:

* **Same seed, same result** on the same device: batches are drawn from a CPU
  ``torch.Generator`` seeded with ``config.seed`` (the model's init has its own seed in
  :func:`normcore.lab.models.make_model`); the global RNG is never used.
* **The data moves to the device once**; each step only indexes it.
* **A callback** every ``config.log_every`` steps and at the end of every epoch gets a
  :class:`Progress`: mean loss and accuracy over the steps since the last call, wall time,
  samples/s, and the 15th/50th/85th percentiles of one unit's pre-activation (the input of
  the nonlinearity, Ioffe & Szegedy 2015 Fig. 1) over those steps' batches. Epoch-end calls
  also carry the test loss and accuracy (eval mode) and the accuracy over that epoch's
  training batches (train mode, as trained).
* **A stop flag** (any ``() -> bool``, e.g. ``threading.Event().is_set``) is checked every
  step; the result then holds everything up to that step with ``status == "stopped"``.
* **Divergence**: a NaN or infinite loss stops the run with ``status == "diverged"``, the
  exact step it first happened at and a message saying why. (Losses are checked in
  windows of ``log_every`` steps so a GPU is synchronised once per window, not per step;
  the first bad step is still found exactly.)

Timing covers the training steps only (evaluation and the callback are excluded), with
the device synchronised before each clock reading.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from normcore.lab import devices
from normcore.lab.datasets import Split
from normcore.lab.models import Classifier
from normcore.lab.run_records import (  # noqa: F401 (re-exported: callers read them from loop)
    OPTIMIZER_LABELS, OPTIMIZERS, PROGRESS_COLUMNS, Progress, TrainConfig, TrainResult,
)

PERCENTILES = (0.15, 0.50, 0.85)
EVAL_CHUNK = 1024  # samples per forward pass when evaluating


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.sgd_momentum)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` in eval mode; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    loss_sum, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device)
    try:
        for start in range(0, len(x), EVAL_CHUNK):
            logits = model(x[start:start + EVAL_CHUNK])
            target = y[start:start + EVAL_CHUNK]
            loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum")
            correct += (logits.argmax(1) == target).sum()
    finally:
        model.train(was_training)
    return float(loss_sum) / len(x), float(correct) / len(x)


def quantiles(values: np.ndarray, qs) -> tuple[float, ...]:
    """The ``qs`` quantiles of a 1-d array by linear interpolation between order statistics
    (the default of ``numpy.quantile`` and ``torch.quantile``). Partitions ``values`` in place:
    a partial sort, and none of ``np.quantile``'s general machinery, which costs several
    times more at every progress report."""
    n = values.size
    if n == 0:
        return (math.nan,) * len(qs)
    positions = [(n - 1) * q for q in qs]
    below = [int(p) for p in positions]
    above = [min(b + 1, n - 1) for b in below]
    values.partition(sorted(set(below + above)))
    lows, highs = values[below].tolist(), values[above].tolist()  # Python floats: interpolated in double precision
    return tuple(lo + (hi - lo) * (p - b) for lo, hi, p, b in zip(lows, highs, positions, below))


class _PreActivationProbe:
    """Collects unit/channel 0 of one block's pre-activation from every training batch (the
    test-set evaluation at an epoch's end runs in eval mode and is left out)."""

    def __init__(self, model: Classifier, layer: int):
        self.model = model
        self.values = model.probe(layer)

    def percentiles(self) -> tuple[float, float, float]:
        if not self.values:
            return (math.nan,) * 3
        window = torch.cat(self.values).to("cpu", torch.float32).numpy()
        self.values.clear()
        return quantiles(window, PERCENTILES)

    def remove(self) -> None:
        self.model.probe(None)


def batch_order(train_size: int, batch_size: int, epochs: int, seed: int) -> torch.Tensor:
    """Sample indices for every step, shape (epochs × steps_per_epoch, batch_size).

    A fresh permutation per epoch from a seeded CPU generator; the last incomplete batch is
    dropped (a BatchNorm batch of one sample is an error in training)."""
    g = torch.Generator().manual_seed(int(seed))
    per_epoch = train_size // batch_size
    orders = [torch.randperm(train_size, generator=g)[: per_epoch * batch_size].view(per_epoch, batch_size) for _ in range(epochs)]
    return torch.cat(orders)


def train(
    model: Classifier,
    data: Split,
    config: TrainConfig = TrainConfig(),
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    callback: Callable[[Progress], None] | None = None,
    stop: Callable[[], bool] | None = None,
    max_steps: int | None = None,
    after_backward: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with ``config`` on ``device`` (``threads``: CPU threads, None = all).

    Returns a :class:`TrainResult`; see the module docstring for what is reported when.
    An exception raised by ``callback`` (e.g. Streamlit interrupting the script) propagates
    after the probe hook is removed, so a caller can keep what the callback already saw.

    ``threads`` is set for the run and restored after, without a lock (``devices.thread_count``):
    torch's thread count is process-wide, so a caller running several trainings at once in
    one process (a server's sessions) serializes them itself, as the training experiment
    does with ``devices.placed``. This function never waits on anyone.

    ``max_steps`` ends the run after that many steps (mid-epoch if need be; the last window is
    reported). ``after_backward(step, x, y)`` is called on every step after the backward pass
    and before the update, with that step's batch: the gradients are in ``.grad``.
    """
    config.check(len(data.x_train))
    with devices.thread_count(threads):
        return _train_on(model, data, config, torch.device(device), callback, stop, max_steps, after_backward)


class _TrainClock:
    """Training time only: the device is synchronised before each reading, and what runs
    between :meth:`pause` and :meth:`resume` (evaluation, the callback) is not counted."""

    def __init__(self, dev: torch.device):
        self.dev = dev
        self.total = 0.0
        self._since = 0.0

    def resume(self) -> None:
        devices.synchronize(self.dev)
        self._since = time.perf_counter()

    def pause(self) -> None:
        devices.synchronize(self.dev)
        self.total += time.perf_counter() - self._since


class _ReportWindow:
    """The steps since the last report, and the :class:`Progress` rows built from them.

    Per step only references are kept (:meth:`keep`: no extra kernels, no GPU sync); each
    window's losses and accuracy are computed in one go when it is reported."""

    def __init__(self, model: Classifier, data: Split, config: TrainConfig, order: torch.Tensor, callback):
        self.model, self.data, self.config, self.callback = model, data, config, callback
        self.targets = data.y_train[order]  # every step's labels, gathered once: (steps, batch)
        self.total = order.shape[0]
        self.per_epoch = self.total // config.epochs
        self.probe = _PreActivationProbe(model, config.probe_layer)
        self.losses: list[torch.Tensor] = []
        self.logits: list[torch.Tensor] = []
        self.start = 0  # the window's first step
        self.epoch_correct = 0.0  # correct predictions on this epoch's training batches so far
        self.rows: list[dict] = []

    def keep(self, loss: torch.Tensor, logits: torch.Tensor) -> None:
        self.losses.append(loss.detach())
        self.logits.append(logits.detach())

    def report(self, step: int, wall_s: float, loss: float, end_of_epoch: bool) -> None:
        """Report steps ``start`` to ``step`` (their mean ``loss`` given), then start a new window."""
        n = step - self.start
        p15, p50, p85 = self.probe.percentiles()
        correct = float((torch.stack(self.logits[:n]).argmax(2) == self.targets[self.start:step]).sum()) if n else 0.0
        self.epoch_correct += correct
        batch = self.config.batch_size
        progress = Progress(
            step=step, total_steps=self.total, epoch=step / self.per_epoch,
            loss=loss if n else math.nan,
            accuracy=correct / (n * batch) if n else math.nan,
            wall_s=wall_s, samples_per_s=step * batch / wall_s if wall_s > 0 else math.nan,
            p15=p15, p50=p50, p85=p85,
        )
        if end_of_epoch:
            progress = self._with_epoch_accuracies(progress)
        self.rows.append(progress.as_row())
        self.losses.clear()
        self.logits.clear()
        self.start = step
        if self.callback is not None:
            self.callback(progress)

    def _with_epoch_accuracies(self, progress: Progress) -> Progress:
        # Training accuracy as trained: over this epoch's batches, in train mode, from the
        # logits already computed (a separate pass over the training set would cost a
        # good share of a small model's epoch). The test set is evaluated in eval mode.
        train_acc = self.epoch_correct / (self.per_epoch * self.config.batch_size)
        self.epoch_correct = 0.0
        test_loss, test_acc = evaluate(self.model, self.data.x_test, self.data.y_test)
        return replace(progress, train_accuracy=train_acc, test_loss=test_loss, test_accuracy=test_acc)

    def report_divergence(self, bad: int, wall_s: float) -> None:
        """Report the window up to and including its ``bad``-th step, the one that blew up."""
        self.probe.values.clear()  # later batches' values came from the broken weights
        self.report(self.start + bad + 1, wall_s, float(torch.stack(self.losses[: bad + 1]).mean()), end_of_epoch=False)


def _check_losses(losses: list[torch.Tensor]) -> tuple[torch.Tensor, float, int | None]:
    """(the window's losses stacked, their sum, index of the first NaN or infinite one or None).

    One reduction and one device sync per window: the sum is NaN or inf if any loss was; only
    then (or when finite losses overflow the sum) is each loss checked."""
    stacked = torch.stack(losses)
    loss_sum = float(stacked.sum())
    if math.isfinite(loss_sum) or bool(torch.isfinite(stacked).all()):
        return stacked, loss_sum, None
    return stacked, loss_sum, int((~torch.isfinite(stacked)).nonzero()[0])


def _train_on(model, data, config, dev, callback, stop, max_steps=None, after_backward=None) -> TrainResult:
    data = data.to(dev)  # once
    model.to(dev).train()
    optimizer = make_optimizer(model, config)
    order = batch_order(len(data.x_train), config.batch_size, config.epochs, config.seed).to(dev)
    window, clock = _ReportWindow(model, data, config, order, callback), _TrainClock(dev)
    if max_steps is not None:  # a run counted in steps: it ends mid-epoch
        window.total = min(window.total, int(max_steps))
    total, per_epoch = window.total, window.per_epoch
    status, message, bad_step, step = "finished", "", None, 0
    try:
        clock.resume()
        while step < total:
            if stop is not None and stop():
                status, message = "stopped", f"Stopped by the user at step {step} of {total}."
                break
            logits = model(data.x_train[order[step]])
            loss = nn.functional.cross_entropy(logits, window.targets[step])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if after_backward is not None:  # sees the step's gradients before the update
                after_backward(step, data.x_train[order[step]], window.targets[step])
            optimizer.step()
            window.keep(loss, logits)
            step += 1
            end_of_epoch = step % per_epoch == 0
            if step % config.log_every and not end_of_epoch:
                continue
            clock.pause()
            losses, loss_sum, bad = _check_losses(window.losses)
            if bad is not None:
                status, bad_step = "diverged", window.start + bad
                message = _divergence_message(bad_step, per_epoch, float(losses[bad]), config, model)
                window.report_divergence(bad, clock.total)
                step = bad_step + 1  # the steps after it are not counted
                break
            window.report(step, clock.total, loss_sum / len(losses), end_of_epoch)
            clock.resume()
        if status != "diverged" and step > window.start:  # stopped, or max_steps mid-window
            clock.pause()
            window.report(step, clock.total, float(torch.stack(window.losses).mean()), end_of_epoch=False)
    finally:
        window.probe.remove()
    return TrainResult(
        rows=window.rows, status=status, message=message, steps=step, steps_per_epoch=per_epoch, device=str(dev),
        threads=torch.get_num_threads(), train_time_s=clock.total, diverged_at_step=bad_step,
    )


def _divergence_message(bad_step: int, per_epoch: int, value: float, config: TrainConfig, model: Classifier) -> str:
    what = "NaN (not a number)" if math.isnan(value) else f"{value} (infinite)"
    norm = getattr(model, "norm", "?")
    hint = " Without normalization the usable learning rate is usually smaller." if norm == "none" else ""
    return (
        f"Diverged at step {bad_step + 1} (epoch {bad_step // per_epoch + 1}): the training loss became {what}, "
        f"so the weights overflowed and training was stopped. The learning rate {config.lr:g} "
        f"({OPTIMIZER_LABELS[config.optimizer]}) is too large for this model; lower it.{hint}"
    )


__all__ = [
    "OPTIMIZERS", "OPTIMIZER_LABELS", "PERCENTILES", "PROGRESS_COLUMNS", "Progress", "TrainConfig", "TrainResult", "batch_order",
    "evaluate", "make_optimizer", "quantiles", "train",
]
