"""Start a data-parallel run: spawned here (:func:`run`), or inside torchrun (:func:`run_torchrun`).

:func:`run` is the UI-free API the command line and the Data-parallel page call: it spawns
``config.workers`` processes (a :class:`~.pool.WorkerPool`), trains, calls ``on_progress``
with a :class:`StepProgress` or an :class:`EpochReport` as they arrive, and returns a
:class:`RunResult`. When ``should_stop()`` turns True the workers are terminated and the
result keeps the epochs finished so far. No worker outlives the call.

Devices: ``cpu`` runs gloo; ``cuda`` runs NCCL with worker r on ``cuda:r`` (under torchrun,
``cuda:LOCAL_RANK``); ``auto`` picks CUDA when there is a GPU for every worker on this
machine. The CUDA/NCCL path follows torch's documented setup but has not been run here (no
GPU on the machines this was written on).
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass, field, fields
from typing import Callable

import torch
import torch.distributed as dist

from .config import RunConfig, problems
from .pool import RunStopped, Worker, WorkerError, WorkerPool
from .training import split_arrays, train_worker

COLLECTIVE_TIMEOUT_S = 60.0  # a worker waits this long for the others (worker 0 evaluates between epochs)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class StepProgress:
    epoch: int
    step: int
    steps: int  # per epoch


@dataclass(frozen=True)
class EpochReport:
    """One epoch, over all workers: accuracy, and timings per worker and step."""

    epoch: int
    train_loss: float
    train_accuracy: float  # over the epoch's training batches, as trained
    test_accuracy: float  # eval mode (running statistics), worker 0's model
    step_ms: float  # forward + backward + optimizer step
    sync_ms: float  # of which inside SyncBatchNorm's all-reduces (0 unless norm is sync)
    sync_calls_per_step: float
    samples_per_s: float  # the global batch's throughput
    wall_s: float  # since the workers started training

    @property
    def sync_share(self) -> float:
        return self.sync_ms / self.step_ms if self.step_ms else float("nan")

    @classmethod
    def from_message(cls, message: dict) -> EpochReport:
        return cls(**{f.name: message.get(f.name, float("nan")) for f in fields(cls)})


@dataclass
class RunResult:
    config: RunConfig
    status: str  # "finished", "stopped", "failed" or "invalid"
    message: str = ""  # why it did not finish, in words
    epochs: list[EpochReport] = field(default_factory=list)
    spawn_s: float = float("nan")  # from start to every worker in the process group
    wall_s: float = float("nan")
    backend: str = ""
    device: str = ""
    worker_pids: list[int] = field(default_factory=list)  # all ended when run() returns


def to_event(message: dict) -> StepProgress | EpochReport:
    """A worker's plain-number report as the dataclass ``on_progress`` receives."""
    if message["kind"] == "epoch":
        return EpochReport.from_message(message)
    return StepProgress(message["epoch"], message["step"], message["steps"])


def placement(config: RunConfig, local_workers: int) -> tuple[str, list[str]]:
    """(backend, device of each local worker) for ``config.device``."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    use_cuda = config.device == "cuda" or (config.device == "auto" and gpus >= local_workers)
    if use_cuda and gpus < local_workers:
        raise ValueError(f"device cuda needs a GPU per worker: {local_workers} workers, {gpus} GPUs here.")
    if use_cuda:
        return "nccl", [f"cuda:{r}" for r in range(local_workers)]
    return "gloo", ["cpu"] * local_workers


def run(config: RunConfig, on_progress: Callable | None = None, should_stop: Callable[[], bool] | None = None) -> RunResult:
    """Spawn ``config.workers`` workers on this machine and train; see the module docstring."""
    found = problems(config)
    if found:
        return RunResult(config, "invalid", " ".join(found))
    backend, devices = placement(config, config.workers)
    result = RunResult(config, "finished", backend=backend, device=devices[0].split(":")[0])

    def on_message(_rank: int, message: dict) -> None:
        event = to_event(message)
        if isinstance(event, EpochReport):
            result.epochs.append(event)
        if on_progress is not None:
            on_progress(event)

    job = (config, split_arrays(config))
    start = time.perf_counter()
    try:
        with WorkerPool(config.workers, backend=backend, devices=devices, timeout_s=COLLECTIVE_TIMEOUT_S) as pool:
            result.spawn_s, result.worker_pids = pool.spawn_s, pool.pids
            pool.map(train_worker, [job] * config.workers, timeout_s=120.0 + 120.0 * config.epochs,
                     on_message=on_message, should_stop=should_stop)
    except RunStopped:
        result.status, result.message = "stopped", f"Stopped after {len(result.epochs)} of {config.epochs} epochs."
    except (WorkerError, TimeoutError) as exc:
        result.status, result.message = "failed", str(exc)
    result.wall_s = time.perf_counter() - start
    return result


def under_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


class _Printer:
    """Stands in for the pool's queue under torchrun: worker 0 prints its reports."""

    def __init__(self, show: Callable):
        self.show = show

    def put(self, item) -> None:
        _seq, _kind, rank, message = item
        if rank == 0:
            self.show(to_event(message))


def run_torchrun(config: RunConfig, show: Callable) -> list[dict]:
    """This process is one of torchrun's workers (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT
    set by torchrun): join its group, train, leave. ``show`` gets worker 0's reports."""
    rank, world, local_rank = (int(os.environ[n]) for n in TORCHRUN_VARIABLES)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    config = RunConfig(**(config.values() | {"workers": world}))
    found = problems(config, under_torchrun=True)
    if found:
        raise ValueError(" ".join(found))
    backend, devices = placement(config, local_world)
    device = devices[local_rank]
    torch.set_num_threads(1)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    try:
        return train_worker(Worker(rank, world, local_rank, device, _Printer(show)), (config, None))
    finally:
        dist.destroy_process_group()
