"""A data-parallel run's configuration: :class:`RunConfig`, its schema of fields, its checks.

``norm`` is what the hidden layers normalize with when each worker holds a slice of the
global batch:

* ``local``: BatchNorm with each worker's own slice statistics (what plain DDP gives);
* ``sync``: normcore.SyncBatchNorm, statistics of the whole global batch;
* ``group``: GroupNorm, per sample, so the slicing does not matter.

Caps come from ``normcore.lab.limits`` (the "Data-parallel runs" section).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from .. import limits, models
from ..fields import Field, Schema

DDP_NORMS = ("local", "sync", "group")
DDP_NORM_LABELS = {
    "local": "BatchNorm, each worker's own statistics",
    "sync": "SyncBatchNorm, statistics of the global batch",
    "group": "GroupNorm (per sample)",
}
DEVICES = ("auto", "cpu", "cuda")
DEVICE_LABELS = {"auto": "CUDA if there is a GPU per worker, else CPU", "cpu": "CPU (gloo)", "cuda": "CUDA (NCCL)"}
TRAIN_SIZE = 1347  # digits' training split at the default test fraction


@dataclass(frozen=True)
class RunConfig:
    workers: int = 2
    norm: str = "sync"
    per_worker_batch: int = 32
    model: str = "mlp"
    epochs: int = 3
    lr: float = 0.05
    width: int = 64
    depth: int = 2
    num_groups: int = 4
    seed: int = 0
    device: str = "auto"
    broadcast_buffers: bool = False  # DDP copies worker 0's running statistics to the others at every forward

    @property
    def global_batch(self) -> int:
        return self.workers * self.per_worker_batch

    def values(self) -> dict:
        return asdict(self)


FIELDS = Schema((
    Field("workers", "Workers", 2, "int", "Processes, one thread each, each with a slice of every batch.",
          low=1, high=limits.MAX_WORKERS, caps=("global_batch",)),
    Field("norm", "Normalization", "sync", "choice", choices=DDP_NORMS, labels=DDP_NORM_LABELS, widget="radio"),
    Field("per_worker_batch", "Batch per worker", 32, "int", "Samples each worker holds per step.",
          low=1, high=limits.MAX_PER_WORKER_BATCH, caps=("global_batch",)),
    Field("model", "Model", "mlp", "choice", choices=models.MODEL_KINDS, labels=models.MODEL_LABELS),
    Field("epochs", "Epochs", 3, "int", low=1, high=limits.MAX_DISTRIBUTED_EPOCHS),
    Field("lr", "Learning rate (SGD, momentum 0.9)", 0.05, "float", low=1e-6, high=10.0, widget="number_input", format="%g"),
    Field("width", "Width (units or channels)", 64, "int", low=1, high=limits.MAX_WIDTH),
    Field("depth", "Hidden blocks", 2, "int", low=1, high=limits.MAX_DEPTH),
    Field("num_groups", "GroupNorm groups", 4, "int", low=1, high=limits.MAX_WIDTH),
    Field("seed", "Seed", 0, "int", low=0, high=2**31 - 1),
    Field("device", "Device", "auto", "choice", choices=DEVICES, labels=DEVICE_LABELS),
    Field("broadcast_buffers", "DDP broadcast_buffers", False, "bool",
          "DDP copies worker 0's buffers (BatchNorm's running statistics) to every worker before each forward."),
))


def problems(config: RunConfig, *, under_torchrun: bool = False) -> list[str]:
    """What is wrong with ``config``, each saying what to change (empty: it can run).
    Under torchrun the worker count is torchrun's, so its cap does not apply."""
    body = config.values()
    if under_torchrun:
        body.pop("workers")
    _, errors = FIELDS.check(body)
    if errors:
        return errors
    out = []
    if not under_torchrun and (message := limits.workers_allowed(config.workers, os.environ)):
        out.append(message)
    if (message := limits.global_batch(config.workers, config.per_worker_batch, TRAIN_SIZE)):
        out.append(message)
    if config.norm in ("local", "sync") and config.model == "mlp":
        values = config.per_worker_batch if config.norm == "local" else config.global_batch
        if values < 2:
            out.append(f"BatchNorm in the MLP needs more than 1 value per feature, and {config.norm} BatchNorm "
                       f"gets {values} here. Use a per-worker batch of at least 2"
                       + (" or more workers." if config.norm == "sync" else ", or norm sync or group."))
    if config.norm == "group" and (message := models.norm_problem(config.model, "group", config.width, config.num_groups)):
        out.append(message)
    return out
