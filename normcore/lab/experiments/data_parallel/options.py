"""The Data-parallel BN page's options: which normalizations, how many workers, what batch.

Every option is a :class:`~normcore.lab.fields.Field` (the widgets, the URL parameters
``dp_*`` and the checks come from :data:`FIELDS`): the run's own are the data-parallel run's
schema (``normcore.lab.distributed.FIELDS``, the command line's too), so the page and the
command line share one range per value. Caps come from ``normcore.lab.limits``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from normcore.lab import limits, models
from normcore.lab.distributed import DDP_NORM_LABELS, DDP_NORMS, DDPConfig
from normcore.lab.distributed import FIELDS as RUN_FIELDS
from normcore.lab.distributed import problems as run_problems
from normcore.lab.distributed.config import TRAIN_SIZE
from normcore.lab.fields import Field, QueryOptions, Schema

PAGE_RUN_FIELDS = ("workers", "per_worker_batch", "epochs", "model", "width", "depth", "lr", "broadcast_buffers", "seed")
FIELDS = Schema((  # the page's controls: which norms, and the data-parallel run's own fields
    Field("norms", "Normalizations compared", DDP_NORMS, "choices", choices=DDP_NORMS, labels=DDP_NORM_LABELS, url="dp_norms",
          help="Each is trained in turn on the same worker processes.", caps=("distributed_work",)),
) + RUN_FIELDS.subset(PAGE_RUN_FIELDS).fields)
GROUPS = RUN_FIELDS["num_groups"].default  # GroupNorm's groups (the width must divide by them)


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


def run_configs(o: DataParallelOptions) -> list[DDPConfig]:
    """One distributed run per chosen normalization, in the order of ``DDP_NORMS``."""
    return [DDPConfig(workers=o.workers, norm=n, per_worker_batch=o.per_worker_batch, model=o.model, epochs=o.epochs,
                      lr=o.lr, width=o.width, depth=o.depth, num_groups=GROUPS, seed=o.seed, device="cpu",
                      broadcast_buffers=o.broadcast_buffers)
            for n in DDP_NORMS if n in o.norms]


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
    return found + work_problems(o)


def work_problems(o: DataParallelOptions) -> list[str]:
    """The page's work cap (optimizer steps over its normalizations, the model's size), which
    the command line lifts (``limits.COMMAND_LINE_LIFTS``)."""
    params = models.parameter_count(models.make_model(o.model, norm="batch", width=o.width, depth=o.depth, seed=0))
    return limits.distributed_work(total_steps(o), params)


# -- the batch sweep: accuracy against the per-worker batch (its own button, its own few options) --

SWEEP_BATCHES = ("2", "4", "8", "16", "32", "64")  # per-worker batches offered (names: a multiselect's items)
SWEEP_FIELDS = Schema((
    Field("epochs", "Sweep epochs", 1, "int", "Epochs of each (batch, normalization) run.",
          low=1, high=limits.MAX_SWEEP_EPOCHS, url="dp_sweep_epochs", caps=("sweep_work",)),
    Field("batches", "Per-worker batches swept", SWEEP_BATCHES, "choices", choices=SWEEP_BATCHES,
          url="dp_sweep_batches", caps=("sweep_work",),
          help="Each batch is trained with local BN, SyncBN and GroupNorm. The smallest take the most steps."),
))


@dataclass(frozen=True)
class SweepOptions(QueryOptions):
    """The sweep's own options; the rest (workers, model, width, depth, lr, seed) are the page's."""
    SCHEMA: ClassVar[Schema] = SWEEP_FIELDS

    epochs: int = SWEEP_FIELDS["epochs"].default
    batches: tuple = SWEEP_FIELDS["batches"].default


@dataclass(frozen=True)
class SweepSettings:
    """Everything a batch sweep's result depends on: its cache key."""
    workers: int
    model: str
    width: int
    depth: int
    lr: float
    seed: int
    epochs: int
    batches: tuple  # ints, ascending

    @property
    def key(self) -> tuple:
        return tuple(sorted(asdict(self).items()))


def sweep_settings(o: DataParallelOptions, s: SweepOptions) -> SweepSettings:
    return SweepSettings(o.workers, o.model, o.width, o.depth, o.lr, o.seed, s.epochs,
                         tuple(sorted(int(b) for b in s.batches)))


def sweep_configs(w: SweepSettings) -> list[DDPConfig]:
    """One run per (batch, norm), batches ascending, each batch's norms in the order of ``DDP_NORMS``."""
    return [DDPConfig(workers=w.workers, norm=n, per_worker_batch=b, model=w.model, epochs=w.epochs, lr=w.lr,
                      width=w.width, depth=w.depth, num_groups=GROUPS, seed=w.seed, device="cpu")
            for b in w.batches for n in DDP_NORMS]


def sweep_steps(w: SweepSettings) -> int:
    return sum(len(DDP_NORMS) * w.epochs * (TRAIN_SIZE // max(1, w.workers * b)) for b in w.batches)


def sweep_problems(o: DataParallelOptions, s: SweepOptions) -> list[str]:
    """Every reason this sweep cannot run (empty: it can run); the page's own options are checked too."""
    _, errors = SWEEP_FIELDS.check(asdict(s) | {"batches": list(s.batches)})
    if errors:
        return errors
    w = sweep_settings(o, s)
    found: list[str] = []
    for config in sweep_configs(w):
        found += [m for m in run_problems(config) if m not in found]
    params = models.parameter_count(models.make_model(w.model, norm="batch", width=w.width, depth=w.depth, seed=0))
    return found + limits.distributed_work(0, params) + limits.sweep_work(sweep_steps(w))
