"""The Data-parallel BN page's experiment: local BatchNorm, SyncBatchNorm and GroupNorm trained
on the same real worker processes (``normcore.lab.distributed``), one after the other.

* ``options.py``: :class:`DataParallelOptions`, its fields (URL-carried), checks, the runs it makes;
* ``comparison.py``: :class:`Comparison`, the live record a page draws, and :func:`run`;
* ``tables.py``: the result tables (accuracy, eval gap, step-time split, running statistics);
* ``accumulation.py``: the one-process reference, gradient accumulation against one large batch;
* ``sweep.py``: accuracy against the per-worker batch (``python -m normcore.lab.experiments.data_parallel``).
"""

from .comparison import Comparison, ResultCache, run
from .options import FIELDS, NORM_LABELS, DataParallelOptions, problems, run_configs
from .tables import (ACCUMULATION_NOTE, SCALE_OUT_COMMAND, SCALE_OUT_NOTE, STEP_TIME_NOTE, eval_gap_table,
                     rank_means_frame, results_table, step_time_table)

__all__ = ["ACCUMULATION_NOTE", "Comparison", "DataParallelOptions", "FIELDS", "NORM_LABELS", "ResultCache",
           "SCALE_OUT_COMMAND", "SCALE_OUT_NOTE", "STEP_TIME_NOTE", "eval_gap_table", "problems",
           "rank_means_frame", "results_table", "run", "run_configs", "step_time_table"]
