"""The Data-parallel BN page's options: which normalizations, how many workers, what batch.

Every option is a :class:`~normcore.lab.fields.Field` (the widgets, the URL parameters
``dp_*`` and the checks come from :data:`FIELDS`); caps come from ``normcore.lab.limits``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from ... import limits, models
from ...distributed import NORM_LABELS, NORMS, RunConfig
from ...distributed import problems as run_problems
from ...distributed.config import TRAIN_SIZE
from ...fields import Field, QueryOptions, Schema

FIELDS = Schema((
    Field("norms", "Normalizations compared", NORMS, "choices", choices=NORMS, labels=NORM_LABELS, url="dp_norms",
          help="Each is trained in turn on the same worker processes.", caps=("distributed_work",)),
    Field("workers", "Workers", 2, "int", "Processes on this machine, one thread each, each with a slice of every batch.",
          low=1, high=limits.MAX_WORKERS, url="dp_workers", caps=("global_batch",)),
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
    Field("broadcast_buffers", "DDP broadcast_buffers", False, "bool", url="dp_broadcast",
          help="DDP copies worker 0's running statistics to every worker before each forward."),
    Field("seed", "Seed", 0, "int", low=0, high=9999, url="dp_seed"),
))
GROUPS = 4  # GroupNorm's groups (the width must divide by it)


@dataclass(frozen=True)
class DataParallelOptions(QueryOptions):
    SCHEMA: ClassVar[Schema] = FIELDS

    norms: tuple = FIELDS["norms"].default
    workers: int = FIELDS["workers"].default
    per_worker_batch: int = FIELDS["per_worker_batch"].default
    epochs: int = FIELDS["epochs"].default
    model: str = FIELDS["model"].default
    width: int = FIELDS["width"].default
    depth: int = FIELDS["depth"].default
    lr: float = FIELDS["lr"].default
    broadcast_buffers: bool = FIELDS["broadcast_buffers"].default
    seed: int = FIELDS["seed"].default


    @property
    def key(self) -> tuple:
        return tuple(sorted(asdict(self).items()))


def run_configs(o: DataParallelOptions) -> list[RunConfig]:
    """One distributed run per chosen normalization, in the order of ``NORMS``."""
    return [RunConfig(workers=o.workers, norm=n, per_worker_batch=o.per_worker_batch, model=o.model, epochs=o.epochs,
                      lr=o.lr, width=o.width, depth=o.depth, num_groups=GROUPS, seed=o.seed, device="cpu",
                      broadcast_buffers=o.broadcast_buffers)
            for n in NORMS if n in o.norms]


def total_steps(o: DataParallelOptions) -> int:
    return len(o.norms) * o.epochs * (TRAIN_SIZE // max(1, o.workers * o.per_worker_batch))


def problems(o: DataParallelOptions) -> list[str]:
    """Every reason these options cannot run, each saying what to change (empty: it can run)."""
    _, errors = FIELDS.check(asdict(o) | {"norms": list(o.norms)})
    if errors:
        return errors
    found: list[str] = []
    for config in run_configs(o):
        found += [m for m in run_problems(config) if m not in found]
    params = models.parameter_count(models.make_model(o.model, norm="batch", width=o.width, depth=o.depth, seed=0))
    return found + limits.distributed_work(total_steps(o), params)
