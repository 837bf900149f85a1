"""The Data-parallel BN page's experiment: local BatchNorm, SyncBatchNorm and GroupNorm trained
on the same real worker processes (``normcore.lab.distributed``), one after the other.

* ``options.py``: :class:`DataParallelOptions`, its fields (URL-carried), checks, the runs it makes;
* ``comparison.py``: :class:`Comparison`, the live record a page draws, and :func:`run`;
* ``tables.py``: the result tables (accuracy, eval gap, step-time split, running statistics);
* ``accumulation.py``: the one-process reference, gradient accumulation against one large batch;
* ``sweep.py``: accuracy against the per-worker batch, :class:`SweepRecord` (live, the page's batch sweep)
  and ``python -m normcore.lab.experiments.data_parallel``.
"""

from normcore.lab.experiments.data_parallel.comparison import Comparison, FinishedDataParallelRuns, run
from normcore.lab.experiments.data_parallel.options import (FIELDS, DDP_NORM_LABELS, SWEEP_FIELDS, DataParallelOptions, SweepOptions, problems, run_configs,
                      sweep_problems, sweep_settings)
from normcore.lab.experiments.data_parallel.sweep import SHAPE_NOTE, SweepRecord, error_table, paper_curves, run_page_sweep
from normcore.lab.experiments.data_parallel.tables import (ACCUMULATION_NOTE, SCALE_OUT_COMMAND, SCALE_OUT_NOTE, STEP_TIME_NOTE, eval_gap_table,
                     rank_means_frame, results_table, step_time_table)

__all__ = ["ACCUMULATION_NOTE", "Comparison", "DataParallelOptions", "FIELDS", "DDP_NORM_LABELS", "FinishedDataParallelRuns",
           "SCALE_OUT_COMMAND", "SCALE_OUT_NOTE", "STEP_TIME_NOTE", "eval_gap_table", "problems",
           "rank_means_frame", "results_table", "run", "run_configs", "step_time_table",
           "SHAPE_NOTE", "SWEEP_FIELDS", "SweepOptions", "SweepRecord", "error_table", "paper_curves", "run_page_sweep",
           "sweep_problems", "sweep_settings"]
