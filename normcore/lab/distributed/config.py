"""A data-parallel run's configuration: :class:`DDPConfig`, its schema of fields, its checks.

``norm`` is what the hidden layers normalize with when each worker holds a slice of the
global batch:

* ``local``: BatchNorm with each worker's own slice statistics (what plain DDP gives);
* ``sync``: normcore.SyncBatchNorm, statistics of the whole global batch;
* ``group``: GroupNorm, per sample, so the slicing does not matter.

One schema (:data:`FIELDS`) serves the command line (``python -m normcore.lab.distributed``) and
the Data-parallel page, which draws a subset of it. Caps come from ``normcore.lab.limits`` (the
"Data-parallel runs" section); what the command line lifts of the page's is named there
(``COMMAND_LINE_LIFTS``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from normcore.lab import limits, models
from normcore.lab.fields import Field, Schema

DDP_NORMS = ("local", "sync", "group")
DDP_NORM_LABELS = {
    "local": "BatchNorm, each worker's own statistics",
    "sync": "SyncBatchNorm, statistics of the global batch",
    "group": "GroupNorm (per sample)",
}
DEVICES = ("auto", "cpu", "cuda")
DEVICE_LABELS = {"auto": "CUDA if there is a GPU per worker, else CPU", "cpu": "CPU (gloo)", "cuda": "CUDA (NCCL)"}
TRAIN_SIZE = 1347  # digits' training split at the default test fraction


FIELDS = Schema((  # a data-parallel run: the command line's flags and the Data-parallel page's controls (dp_*)
    Field("workers", "Workers", 2, "int", "Processes on this machine, one thread each, each with a slice of every batch.",
          low=1, high=limits.MAX_WORKERS, url="dp_workers", caps=("global_batch",)),
    Field("norm", "Normalization", "sync", "choice", choices=DDP_NORMS, labels=DDP_NORM_LABELS, widget="radio"),
    Field("per_worker_batch", "Batch per worker", 32, "int", "Samples each worker holds per step.",
          low=1, high=limits.MAX_PER_WORKER_BATCH, url="dp_batch", caps=("global_batch", "distributed_work")),
    Field("epochs", "Epochs", 2, "int", low=1, high=limits.MAX_DISTRIBUTED_EPOCHS, url="dp_epochs",
          caps=("distributed_work",)),
    Field("model", "Model", "mlp", "choice", choices=models.MODEL_KINDS, labels=models.MODEL_LABELS, url="dp_model"),
    Field("width", "Width (units or channels)", 64, "int", low=4, high=limits.MAX_WIDTH, url="dp_width",
          caps=("distributed_work",)),
    Field("depth", "Hidden blocks", 2, "int", low=1, high=limits.MAX_DEPTH, url="dp_depth", caps=("distributed_work",)),
    Field("lr", "Learning rate (SGD, momentum 0.9)", 0.05, "float", low=0.001, high=1.0, step=0.001,
          url="dp_lr", format="%.3f"),
    Field("num_groups", "GroupNorm groups", 4, "int", "GroupNorm's groups (the width must divide by them).",
          low=1, high=limits.MAX_WIDTH),
    Field("seed", "Seed", 0, "int", low=0, high=9999, url="dp_seed"),
    Field("device", "Device", "auto", "choice", choices=DEVICES, labels=DEVICE_LABELS),
    Field("broadcast_buffers", "DDP broadcast_buffers", False, "bool", url="dp_broadcast",
          help="DDP copies worker 0's running statistics to every worker before each forward."),
))


@dataclass(frozen=True)
class DDPConfig:
    """One data-parallel run; every field with :data:`FIELDS`' default."""

    workers: int = FIELDS["workers"].default
    norm: str = FIELDS["norm"].default
    per_worker_batch: int = FIELDS["per_worker_batch"].default
    model: str = FIELDS["model"].default
    epochs: int = FIELDS["epochs"].default
    lr: float = FIELDS["lr"].default
    width: int = FIELDS["width"].default
    depth: int = FIELDS["depth"].default
    num_groups: int = FIELDS["num_groups"].default
    seed: int = FIELDS["seed"].default
    device: str = FIELDS["device"].default
    broadcast_buffers: bool = FIELDS["broadcast_buffers"].default  # DDP copies worker 0's running statistics

    @property
    def global_batch(self) -> int:
        return self.workers * self.per_worker_batch

    def values(self) -> dict:
        return asdict(self)


def problems(config: DDPConfig, *, under_torchrun: bool = False) -> list[str]:
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
