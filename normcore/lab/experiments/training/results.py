"""A run's results: one summary row per variant, and the table the page shows and the CSV holds.

Divergence is data: each row has a ``diverged`` flag, and :func:`diverged_notes` reads it
(never the wording of a note). How the page formats each column is data too
(:data:`RESULT_FORMATS`), so the page only maps it onto its table widget.
"""

from __future__ import annotations

import math

import pandas as pd

from normcore.lab import devices, models
from normcore.lab.loop import TrainResult
from normcore.lab.experiments.training.variants import Variant

RESULT_COLUMNS = {
    "label": "Variant", "normalization": "Normalization", "device_label": "Device", "batch_size": "Batch size",
    "lr": "Learning rate", "status": "Status", "train_accuracy": "Train accuracy", "test_accuracy": "Test accuracy",
    "time_per_epoch_s": "Time per epoch (s)", "samples_per_s": "Samples/s", "speedup_vs_cpu": "Speed-up vs CPU",
    "diverged": "Diverged", "note": "Why it stopped",
}
# How the results table shows its number columns: a number format and, where it needs one, help.
RESULT_FORMATS = {
    "Train accuracy": dict(format="percent", help="Over the last epoch's training batches, as trained (train mode)."),
    "Test accuracy": dict(format="percent", help="On the held-out test set after the last epoch, in eval mode."),
    "Time per epoch (s)": dict(format="%.3f"),
    "Samples/s": dict(format="%.0f"),
    "Speed-up vs CPU": dict(format="%.2f×", help="Samples/s against the CPU run with the fewest threads, same normalization."),
}


def summary_row(i: int, v: Variant, result: TrainResult | None, partial: pd.DataFrame | None = None) -> dict:
    """Variant ``i``'s row: from its result, or (``result`` None: interrupted before it
    finished) from what its ``partial`` history says so far."""
    target = v.target
    row = dict(variant=i, label=v.label, norm=v.norm, normalization=models.NORM_LABELS[v.norm], device=v.device,
               device_label=target.label, batch_size=v.batch_size, lr=v.lr, epochs=v.epochs)
    if result is None:
        last = partial.iloc[-1] if partial is not None and len(partial) else None
        return row | dict(status="stopped", steps=int(last["step"]) if last is not None else 0,
                          train_accuracy=math.nan, test_accuracy=math.nan, time_per_epoch_s=math.nan,
                          samples_per_s=float(last["samples_per_s"]) if last is not None else math.nan,
                          diverged=False, note="Stopped before this variant finished.")
    return row | dict(status=result.status, steps=result.steps, train_accuracy=result.final_train_accuracy,
                      test_accuracy=result.final_test_accuracy, time_per_epoch_s=result.time_per_epoch_s,
                      samples_per_s=result.samples_per_s, diverged=result.diverged, note=result.message)


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    """The variants' rows (:func:`summary_row`) as one frame: accuracies, timing, the speed-up
    against the CPU baseline (the CPU run with the fewest threads, same normalization) and the
    divergence flag."""
    frame = pd.DataFrame(rows)
    if frame.empty:  # stopped before any variant reported: an empty table with every column
        return pd.DataFrame(columns=["variant", "norm", "device", "epochs", "steps", *RESULT_COLUMNS])
    cpu = frame[frame["device"].str.startswith("cpu")].copy()
    cpu["threads"] = cpu["device"].map(lambda k: devices.parse_target(k).threads or devices.DEFAULT_THREADS)
    baseline = cpu.sort_values("threads").drop_duplicates(["norm", "batch_size", "lr"]).set_index(["norm", "batch_size", "lr"])["samples_per_s"]
    keys = list(zip(frame["norm"], frame["batch_size"], frame["lr"]))
    frame["speedup_vs_cpu"] = [row / baseline.get(k, math.nan) for row, k in zip(frame["samples_per_s"], keys)]
    return frame


def results_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as the page shows it and the CSV download holds it: readable headers."""
    if summary.empty:
        return pd.DataFrame(columns=list(RESULT_COLUMNS.values()))
    return summary[list(RESULT_COLUMNS)].rename(columns=RESULT_COLUMNS)


def diverged_notes(summary: pd.DataFrame) -> list[str]:
    """Why each diverged variant stopped (the rows whose ``diverged`` flag is set)."""
    return [str(note) for note in summary.loc[summary["diverged"].astype(bool), "note"]]
