"""Training comparisons behind the training page: normalizations × devices, and two sweeps.

An experiment is a :class:`RunConfig` (everything a user chose, JSON round-trippable, its
fields in :data:`SCHEMA`) in one of three modes: ``compare`` (every chosen normalization on
every chosen device, with live curves), ``batch_sweep`` (final test accuracy vs batch size:
Wu & He 2018 Figure 1 at small scale) and ``lr_sweep`` (with and without BN over learning
rates, and the largest one that still trains).

One idea per module:

* :mod:`.config`: the configuration, its schema, JSON in and out, the page's split of fields;
* :mod:`.variants`: what a mode trains (:func:`plan`), with every problem and cap;
* :mod:`.running`: :func:`run` and the :class:`LiveRun` it records into;
* :mod:`.results`: the summary and results table (divergence as a column);
* :mod:`.sweeps`: reading the sweeps, and the paper's numbers;
* :mod:`.cache`: finished results shared between sessions.
"""

from normcore.lab.loop import OPTIMIZERS
from normcore.lab.settings import Problem
from normcore.lab.experiments.training.cache import FinishedTrainingRuns
from normcore.lab.experiments.training.config import (CONFIG_KIND, CONFIG_VERSION, MODE_LABELS, MODES, PAGE_FIELDS, SCHEMA, SHARED_FIELDS, URL_NAMES,
                     ConfigError, RunConfig, from_dict, from_json, from_page, from_query, from_upload, inactive,
                     page_defaults, page_schema, page_values, shared_values, to_query, widget_form, with_settings)
from normcore.lab.experiments.training.results import RESULT_COLUMNS, RESULT_FORMATS, diverged_notes, results_table, summary_frame
from normcore.lab.experiments.training.running import REPORTS_PER_VARIANT, LiveRun, run
from normcore.lab.experiments.training.sweeps import (MODE_NOTES, chance_accuracy, largest_lr_table, largest_trainable_lr, paper_group_norm_errors,
                     paper_table, trains)
from normcore.lab.experiments.training.variants import (BATCH_SWEEP_NORMS, BATCH_SWEEP_REFERENCE, BATCH_SWEEP_SIZES, LR_SWEEP_NORMS, LR_SWEEP_RATES,
                       MIN_SWEEP_STEPS, Variant, errors, plan, train_size)

__all__ = [
    "BATCH_SWEEP_NORMS", "BATCH_SWEEP_REFERENCE", "BATCH_SWEEP_SIZES", "CONFIG_KIND", "CONFIG_VERSION", "ConfigError",
    "LR_SWEEP_NORMS", "LR_SWEEP_RATES", "LiveRun", "MIN_SWEEP_STEPS", "MODES", "MODE_LABELS", "MODE_NOTES", "OPTIMIZERS",
    "PAGE_FIELDS", "Problem", "REPORTS_PER_VARIANT", "RESULT_COLUMNS", "RESULT_FORMATS", "FinishedTrainingRuns", "RunConfig",
    "SCHEMA", "SHARED_FIELDS", "URL_NAMES", "Variant", "chance_accuracy", "diverged_notes", "errors", "from_dict",
    "from_json", "from_page", "from_query", "from_upload", "inactive", "largest_lr_table", "largest_trainable_lr",
    "page_defaults", "page_schema", "page_values", "paper_group_norm_errors", "paper_table", "plan", "results_table",
    "run", "shared_values", "summary_frame", "to_query", "train_size", "trains", "widget_form", "with_settings",
]
