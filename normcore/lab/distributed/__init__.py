"""Data-parallel training on this machine's CPU cores (or GPUs), with normcore.SyncBatchNorm.

* :func:`run` (``launch.py``): the UI-free API. Spawns the workers, trains, reports progress
  through a callback, can be stopped, returns a :class:`RunResult`.
* ``python -m normcore.lab.distributed``: the command line (``__main__.py``); under torchrun
  the same code runs as torchrun's workers.
* ``pool.py``: the spawned worker processes (also used by the tests and the benchmark);
  ``training.py``: what each worker does; ``config.py``: :class:`RunConfig`, its fields, checks.
"""

from .config import FIELDS, DDP_NORM_LABELS, DDP_NORMS, RunConfig, problems
from .launch import EpochReport, RunResult, StepProgress, run

__all__ = ["EpochReport", "FIELDS", "DDP_NORMS", "DDP_NORM_LABELS", "RunConfig", "RunResult", "StepProgress", "problems", "run"]
