"""Data-parallel training on this machine's CPU cores (or GPUs), with normcore.SyncBatchNorm.

* :func:`run` (``launch.py``): the UI-free API. Spawns the workers, trains, reports progress
  through a callback, can be stopped, returns a :class:`RunResult`.
* ``python -m normcore.lab.distributed``: the command line (``__main__.py``); under torchrun
  the same code runs as torchrun's workers.
* ``pool.py``: the spawned worker processes (also used by the tests and the benchmark);
  ``training.py``: what each worker does; ``config.py``: :class:`DDPConfig`, its fields, checks.
"""

from normcore.lab.distributed.config import FIELDS, DDP_NORM_LABELS, DDP_NORMS, DDPConfig, problems
from normcore.lab.distributed.launch import EpochReport, RunResult, StepProgress, run

__all__ = ["EpochReport", "FIELDS", "DDP_NORMS", "DDP_NORM_LABELS", "DDPConfig", "RunResult", "StepProgress", "problems", "run"]
