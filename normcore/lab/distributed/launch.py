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
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Sequence

import torch
import torch.distributed as dist

from normcore.lab import limits
from normcore.lab.distributed.config import DDPConfig, problems
from normcore.lab.distributed.pool import RunStopped, Worker, WorkerError, WorkerPool
from normcore.lab.distributed.training import split_arrays, train_worker

COLLECTIVE_TIMEOUT_S = 20.0  # a worker waits this long in a collective, or to join the group (worker 0 evaluates between epochs)
START_TIMEOUT_S = 60.0  # from spawning to every worker in the process group
BUSY_MESSAGE = ("Another data-parallel run is using this server's workers right now (one at a time, "
                "each worker takes ~230 MB and a core). Try again in a moment.")
_ONE_RUN = threading.Lock()
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
    # BatchNorm's running statistics over workers (NaN / empty for GroupNorm):
    mean_spread: float = float("nan")  # largest difference of a running mean between two workers
    var_spread: float = float("nan")  # largest ratio − 1 of a running variance between two workers
    test_accuracy_averaged: float = float("nan")  # eval with the running statistics averaged over workers
    rank_means: tuple = ()  # per worker, the first BatchNorm's running means (first channels)

    @property
    def sync_share(self) -> float:
        return self.sync_ms / self.step_ms if self.step_ms else float("nan")

    @property
    def compute_ms(self) -> float:
        """The step without SyncBatchNorm's all-reduces (DDP's gradient all-reduce stays in)."""
        return self.step_ms - self.sync_ms

    @classmethod
    def from_message(cls, message: dict) -> EpochReport:
        values = {f.name: message.get(f.name, float("nan")) for f in fields(cls)}
        values["rank_means"] = tuple(tuple(row) for row in message.get("rank_means", ()))
        return cls(**values)


@dataclass
class RunResult:
    config: DDPConfig
    status: str  # "finished", "stopped", "failed", "timed out", "busy" or "invalid"
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


def placement(config: DDPConfig, local_workers: int) -> tuple[str, list[str]]:
    """(backend, device of each local worker) for ``config.device``."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    use_cuda = config.device == "cuda" or (config.device == "auto" and gpus >= local_workers)
    if use_cuda and gpus < local_workers:
        raise ValueError(f"device cuda needs a GPU per worker: {local_workers} workers, {gpus} GPUs here.")
    if use_cuda:
        return "nccl", [f"cuda:{r}" for r in range(local_workers)]
    return "gloo", ["cpu"] * local_workers


def run(config: DDPConfig, on_progress: Callable | None = None, should_stop: Callable[[], bool] | None = None,
        **limits_) -> RunResult:
    """Spawn ``config.workers`` workers on this machine and train; see the module docstring.
    ``limits_`` are :func:`run_series`'s keywords."""
    forward = None if on_progress is None else (lambda _index, event: on_progress(event))
    return run_series([config], forward, should_stop, **limits_)[0]


def run_series(configs: Sequence[DDPConfig], on_progress: Callable | None = None,
               should_stop: Callable[[], bool] | None = None, *, time_cap_s: float = limits.MAX_DISTRIBUTED_RUN_S,
               collective_timeout_s: float = COLLECTIVE_TIMEOUT_S) -> list[RunResult]:
    """Train each of ``configs`` (all with the same worker count and device) in turn on one set of
    spawned workers: the processes start once. ``on_progress(index, event)``. One result per
    config; after a stop, a fault or the time cap, the configs not reached get the same status.
    At most one series runs per process at a time (the others get status "busy")."""
    configs = list(configs)
    if len({(c.workers, c.device) for c in configs}) > 1:
        raise ValueError("run_series needs the same workers and device for every config.")
    found = [" ".join(p) for c in configs if (p := problems(c))]
    if found:
        return [RunResult(c, "invalid", found[0]) for c in configs]
    if not _ONE_RUN.acquire(blocking=False):
        return [RunResult(c, "busy", BUSY_MESSAGE) for c in configs]
    try:
        return _run_series(configs, on_progress, should_stop, time_cap_s, collective_timeout_s)
    finally:
        _ONE_RUN.release()


def _run_series(configs, on_progress, should_stop, time_cap_s, collective_timeout_s) -> list[RunResult]:
    backend, devices = placement(configs[0], configs[0].workers)
    results = [RunResult(c, "finished", backend=backend, device=devices[0].split(":")[0]) for c in configs]
    index = 0

    def on_message(_rank: int, message: dict) -> None:
        event = to_event(message)
        if isinstance(event, EpochReport):
            results[index].epochs.append(event)
        if on_progress is not None:
            on_progress(index, event)

    start = time.perf_counter()
    deadline = start + time_cap_s
    status, message = "finished", ""
    try:
        with WorkerPool(configs[0].workers, backend=backend, devices=devices, timeout_s=collective_timeout_s,
                        start_timeout_s=min(START_TIMEOUT_S, time_cap_s)) as pool:
            for r in results:
                r.spawn_s, r.worker_pids = pool.spawn_s, pool.pids
            for index, config in enumerate(configs):
                pool.map(train_worker, [(config, split_arrays(config))] * config.workers, fail_fast=True,
                         timeout_s=max(0.0, deadline - time.perf_counter()), on_message=on_message,
                         should_stop=should_stop)
    except RunStopped:
        status = "stopped"
        message = f"Stopped after {len(results[index].epochs)} of {configs[index].epochs} epochs; the workers were ended."
    except TimeoutError:
        status, message = "timed out", f"The run hit its time cap of {time_cap_s:g} s; every worker was ended."
    except WorkerError as exc:
        status, message = "failed", fault_message(str(exc), collective_timeout_s)
    wall_s = time.perf_counter() - start
    for i, r in enumerate(results):
        r.wall_s = wall_s
        if i >= index and status != "finished":
            r.status, r.message = status, message
    return results


def fault_message(text: str, collective_timeout_s: float) -> str:
    """A worker's failure in a sentence, then its traceback's last line."""
    last = [line for line in text.strip().splitlines() if line.strip()]
    first = last[0].rstrip(":")
    if "without answering" in first:
        return f"The run failed: {first}; the other workers were ended."
    cause = last[-1].strip() if last else ""
    if "timed out" in text.lower() or "timeout" in cause.lower():
        return (f"The run failed: {first} waited more than {collective_timeout_s:g} s in a collective for another "
                f"worker (hung?) and gave up; every worker was ended. ({cause})")
    return f"The run failed: {first} raised {cause}; every worker was ended."


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


def run_torchrun(config: DDPConfig, show: Callable) -> list[dict]:
    """This process is one of torchrun's workers (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT
    set by torchrun): join its group, train, leave. ``show`` gets worker 0's reports."""
    rank, world, local_rank = (int(os.environ[n]) for n in TORCHRUN_VARIABLES)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    config = DDPConfig(**(config.values() | {"workers": world}))
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
