"""The experiments behind the Live statistics page. UI-free: settings in, tidy frames out.

* ``units``: which values share one mean and variance (:func:`diagram_frame`), and the
  true statistics of each unit (a channel, a group, or all channels);
* ``one_batch``: one batch before and after normalizing: histograms, a per-channel table
  of moments, and the output std of channel 0 as eps grows (measured vs theory);
* ``stream``: :class:`LiveStream`, batches streaming through a normcore layer in training
  mode next to its torch.nn twin (``parity``), with a bounded history; ``readouts``: its
  three numbers;
* ``options``: the page's own controls (:data:`FIELDS`, :class:`LiveOptions`);
* ``rms``: RMSNorm's panel: its output has RMS 1 but is not zero-mean (per-sample table,
  predicted vs measured output mean, LayerNorm on the same batch).
"""

from normcore.lab.experiments.live.one_batch import (
    EPS_CAPTIONS, EXAMPLE_INPUT, HISTOGRAM_BINS, HISTOGRAM_UNITS, MOMENTS_TITLE, BatchView, channel0_spread, eps_curve,
    eps_theory, is_standard_normal, one_batch,
)
from normcore.lab.experiments.live.options import DRIFT_SHAPE, FIELDS, STREAM_OPTIONS, LiveOptions
from normcore.lab.experiments.live.parity import PARITY_TOLERANCE, Parity, compare
from normcore.lab.experiments.live.readouts import RUNNING_STATS, STREAM_CAPTIONS, readouts, stream_caption
from normcore.lab.experiments.live.rms import COMPARISON_TITLE, RmsView, predicted_output_mean, rms_view
from normcore.lab.experiments.live.stream import (
    CHART_UNITS, CHART_WINDOW, HISTORY_COLUMNS, STREAM_STATISTICS, TICK_ELEMENTS, LiveStream, restart_reason, series_frame,
    steps_per_tick, stream_statistics,
)
from normcore.lab.experiments.live.units import (
    DIAGRAM_CHANNELS, DIAGRAM_POSITIONS, DIAGRAM_SAMPLES, SHARING, UNIT_WORD, Diagram, UnitTruth, diagram_frame,
    per_unit, unit_channels, unit_labels, unit_truth, values_per_stat,
)

__all__ = [
    "CHART_UNITS", "CHART_WINDOW", "COMPARISON_TITLE", "DIAGRAM_CHANNELS", "DIAGRAM_POSITIONS", "DIAGRAM_SAMPLES",
    "DRIFT_SHAPE", "EPS_CAPTIONS", "EXAMPLE_INPUT", "FIELDS", "HISTOGRAM_BINS", "HISTOGRAM_UNITS", "HISTORY_COLUMNS",
    "MOMENTS_TITLE", "PARITY_TOLERANCE", "RUNNING_STATS", "SHARING", "STREAM_CAPTIONS", "STREAM_OPTIONS",
    "STREAM_STATISTICS", "TICK_ELEMENTS", "UNIT_WORD", "BatchView", "Diagram", "LiveOptions", "LiveStream", "Parity",
    "RmsView", "UnitTruth", "channel0_spread", "compare", "diagram_frame", "eps_curve", "eps_theory",
    "is_standard_normal", "one_batch", "per_unit", "predicted_output_mean", "readouts", "restart_reason", "rms_view",
    "series_frame", "steps_per_tick", "stream_caption", "stream_statistics", "unit_channels", "unit_labels",
    "unit_truth", "values_per_stat",
]
