"""What each worker of a data-parallel run does: train the digits MLP/CNN under DDP.

Every worker builds the same model from the same seed, wraps it in
``DistributedDataParallel`` and walks the same shuffled order of the training set; at each
step worker r takes samples ``[r·B, (r+1)·B)`` of the step's global batch of W·B. The loss is
each worker's mean over its B samples, which DDP's gradient averaging turns into the mean
over the global batch. ``norm="sync"`` converts the model's BatchNorms with
``normcore.SyncBatchNorm.convert_sync_batchnorm``.

At the end of each epoch the workers add up their counts and timings (one all-reduce), and
worker 0 evaluates the test set in eval mode (running statistics: no collective) and
reports an epoch summary. Reports are plain numbers. Buffers are broadcast by DDP only with
``config.broadcast_buffers`` (``forward_sync_buffers``): without it, with ``local`` each worker
keeps its own running statistics and worker 0's are the ones evaluated; with ``sync`` they
are equal on every worker. Each epoch also gathers every worker's running statistics: how far
they drift apart, and the test accuracy with them averaged over workers (the eval gap).
"""

from __future__ import annotations

import copy
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from normcore.sync_batchnorm import SyncBatchNorm, time_collectives

from normcore.lab import datasets, models
from normcore.lab.distributed import faults
from normcore.lab.distributed.config import DDPConfig
from normcore.lab.distributed.pool import Worker

STEP_REPORTS_PER_EPOCH = 10
RANK_CHANNELS = 16  # channels of the first BatchNorm whose running means are reported per worker


def build_model(config: DDPConfig) -> nn.Module:
    """The digits classifier for ``config.norm``, identical on every worker (same seed)."""
    norm = "group" if config.norm == "group" else "batch"
    model = models.make_model(config.model, norm=norm, impl="normcore", width=config.width, depth=config.depth,
                              num_groups=config.num_groups, seed=config.seed)
    return SyncBatchNorm.convert_sync_batchnorm(model) if config.norm == "sync" else model


def epoch_order(train_size: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's shuffled sample order: the same on every worker (seeded, on the CPU)."""
    return torch.randperm(train_size, generator=torch.Generator().manual_seed(seed * 1009 + epoch))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_epoch(worker: Worker, ddp, opt, data, config: DDPConfig, epoch: int, fault=None) -> torch.Tensor:
    """One epoch; returns this worker's [loss sum, correct, samples, step seconds, steps]."""
    device = data.device
    b, g = config.per_worker_batch, config.global_batch
    steps = data.x_train.shape[0] // g
    order = epoch_order(data.x_train.shape[0], config.seed, epoch).to(device)
    every = max(1, steps // STEP_REPORTS_PER_EPOCH)
    totals = torch.zeros(5, dtype=torch.float64, device=device)
    ddp.train()
    for step in range(steps):
        faults.inject(fault, worker.rank, (epoch - 1) * steps + step + 1)
        idx = order[step * g + worker.rank * b: step * g + (worker.rank + 1) * b]
        x, y = data.x_train[idx], data.y_train[idx]
        _sync(device)
        start = time.perf_counter()
        logits = ddp(x)
        loss = nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        elapsed = time.perf_counter() - start
        with torch.no_grad():
            totals += torch.stack([loss.detach().double() * len(idx), (logits.argmax(1) == y).sum().double(),
                                   torch.tensor(float(len(idx)), device=device, dtype=torch.float64),
                                   torch.tensor(elapsed, device=device, dtype=torch.float64),
                                   torch.tensor(1.0, device=device, dtype=torch.float64)])
        if worker.rank == 0 and (step + 1) % every == 0:
            worker.report({"kind": "step", "epoch": epoch, "step": step + 1, "steps": steps})
    return totals


@torch.no_grad()
def _test_accuracy(model: nn.Module, data) -> float:
    model.eval()
    correct = (model(data.x_test).argmax(1) == data.y_test).sum().item()
    return correct / data.y_test.shape[0]


def _epoch_summary(worker: Worker, totals: torch.Tensor, timer, model, data, epoch: int, wall_s: float) -> dict:
    """Add up every worker's counts (one all-reduce); worker 0 adds the test accuracy."""
    sums = torch.cat([totals, totals.new_tensor([timer.seconds, timer.calls])])
    dist.all_reduce(sums)
    loss, correct, seen, step_s, steps, sync_s, sync_calls = sums.tolist()
    per_step = steps or 1.0  # summed over workers: averages are per worker and step
    summary = {
        "kind": "epoch", "epoch": epoch, "train_loss": loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
        "step_ms": 1e3 * step_s / per_step, "sync_ms": 1e3 * sync_s / per_step, "sync_calls_per_step": sync_calls / per_step,
        "samples_per_s": seen / step_s * worker.world_size if step_s else float("nan"), "wall_s": wall_s,
    }
    summary |= _rank_statistics(worker, model, data)
    if worker.rank == 0:
        summary["test_accuracy"] = _test_accuracy(model, data)
    return summary


def _running_buffers(model: nn.Module, kind: str) -> list[torch.Tensor]:
    return [b for name, b in model.named_buffers() if name.endswith(kind)]


def _gather(worker: Worker, buffers: list[torch.Tensor]) -> torch.Tensor:
    """Every worker's ``buffers``, flattened: a (workers, values) tensor (one all-gather)."""
    flat = torch.cat([b.detach().flatten().double() for b in buffers])
    out = [torch.empty_like(flat) for _ in range(worker.world_size)]
    dist.all_gather(out, flat)
    return torch.stack(out)


def _rank_statistics(worker: Worker, model: nn.Module, data) -> dict:
    """BatchNorm's running statistics on every worker (two all-gathers; nothing for GroupNorm).
    Worker 0 reports how far they drift apart, its first layer's running means per worker
    (``rank_means``, at most ``RANK_CHANNELS`` channels), and the test accuracy with the
    running statistics averaged over workers (``test_accuracy_averaged``)."""
    means, variances = _running_buffers(model, "running_mean"), _running_buffers(model, "running_var")
    if not means:
        return {}
    all_means, all_vars = _gather(worker, means), _gather(worker, variances)
    if worker.rank != 0:
        return {}
    first = means[0].numel()
    averaged = copy.deepcopy(model)
    offset = 0
    for m, v in zip(_running_buffers(averaged, "running_mean"), _running_buffers(averaged, "running_var")):
        n = m.numel()
        m.copy_(all_means[:, offset:offset + n].mean(0).view_as(m))
        v.copy_(all_vars[:, offset:offset + n].mean(0).view_as(v))
        offset += n
    return {
        "mean_spread": (all_means.max(0).values - all_means.min(0).values).max().item(),
        "var_spread": (all_vars.max(0).values / all_vars.min(0).values.clamp_min(1e-12) - 1).max().item(),
        "rank_means": [row[:min(first, RANK_CHANNELS)].tolist() for row in all_means],
        "test_accuracy_averaged": _test_accuracy(averaged, data),
    }


def split_arrays(config: DDPConfig) -> dict:
    """The digits split as numpy arrays, loaded once by the launcher and sent to every worker
    (each would otherwise import scikit-learn, a second or more per worker)."""
    split = datasets.load_digits_split(config.seed)
    return {name: getattr(split, name).numpy() for name in ("x_train", "y_train", "x_test", "y_test")}


def _split(config: DDPConfig, arrays: dict | None, device: torch.device) -> datasets.Split:
    if arrays is None:
        return datasets.load_digits_split(config.seed).to(device)
    tensors = {name: torch.from_numpy(a) for name, a in arrays.items()}
    return datasets.Split("digits", num_classes=10, **tensors).to(device)


def train_worker(worker: Worker, job: tuple[DDPConfig, dict | None]) -> list[dict]:
    """Train on this worker's slices of ``job = (config, split_arrays or None)``; worker 0
    returns (and reports) the epoch summaries."""
    config, arrays = job
    device = torch.device(worker.device)
    data = _split(config, arrays, device)
    model = build_model(config).to(device)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                  forward_sync_buffers=config.broadcast_buffers)
    fault = faults.from_environment()
    opt = torch.optim.SGD(ddp.parameters(), lr=config.lr, momentum=0.9)
    summaries, start = [], time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        with time_collectives() as timer:
            totals = _train_epoch(worker, ddp, opt, data, config, epoch, fault)
        summary = _epoch_summary(worker, totals, timer, model, data, epoch, time.perf_counter() - start)
        if worker.rank == 0:
            worker.report(summary)
            summaries.append(summary)
    return summaries
