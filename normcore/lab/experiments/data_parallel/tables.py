"""What a :class:`~.comparison.Comparison` shows, as tables and frames (no charts: those are in
``normcore.lab.viz.data_parallel_charts``), and the page's fixed texts."""

from __future__ import annotations

import math

import pandas as pd

from normcore.lab.distributed import DDP_NORM_LABELS

SHORT = {"local": "local BN", "sync": "SyncBN", "group": "GroupNorm"}
STEP_TIME_NOTE = (
    "Measured in the workers, per worker and step, averaged over the last epoch. *SyncBN collectives* is the time "
    "inside SyncBatchNorm's all-reduces (forward and backward, including waiting for the slowest worker). "
    "*Compute* is the rest of the step: forward, backward and the optimizer step, **with DDP's gradient "
    "all-reduce left in**: DDP overlaps it with the backward pass, so it is not timed apart here.")
SCALE_OUT_COMMAND = ("torchrun --nnodes 2 --node-rank R --nproc-per-node 4 --master-addr HOST --master-port 29500 \\\n"
                     "         -m normcore.lab.distributed --norm sync --per-worker-batch 32 --epochs 2")
SCALE_OUT_NOTE = (
    "The same training code runs under torchrun across machines: run the command on each machine with R = 0, 1, … "
    "and HOST = machine 0's address (with gloo, GLOO_SOCKET_IFNAME picks the network card). With a GPU per worker "
    "it uses NCCL on cuda:LOCAL_RANK; **that GPU/NCCL path was not run here** (this server has no GPU): "
    "everything on this page is gloo on CPU cores.")
ACCUMULATION_NOTE = (
    "Accumulating k micro-batches equals one batch of k×B only for GroupNorm (each sample alone). BatchNorm "
    "normalizes each micro-batch with its own B-sample statistics, so its accumulated gradient is that of local "
    "BN on k workers of B each, not of one large batch: to get the large batch's statistics, use SyncBN.")


def _last(comparison, norm):
    reports = comparison.epochs.get(norm) or []
    return reports[-1] if reports else None


def results_table(comparison) -> pd.DataFrame:
    """One row per normalization: its last epoch's accuracy, loss and step time."""
    rows = []
    for norm in comparison.norms:
        r = _last(comparison, norm)
        rows.append({"Normalization": DDP_NORM_LABELS[norm], "Epochs done": len(comparison.epochs[norm]),
                     "Test accuracy": r.test_accuracy if r else math.nan,
                     "Train accuracy": r.train_accuracy if r else math.nan,
                     "Train loss": r.train_loss if r else math.nan,
                     "Step (ms)": r.step_ms if r else math.nan,
                     "Samples/s": r.samples_per_s if r else math.nan})
    return pd.DataFrame(rows)


def accuracy_frame(comparison) -> pd.DataFrame:
    """Test accuracy by epoch and norm (long form, for a chart)."""
    rows = [{"norm": SHORT[n], "epoch": r.epoch, "test accuracy": r.test_accuracy}
            for n in comparison.norms for r in comparison.epochs[n]]
    return pd.DataFrame(rows, columns=["norm", "epoch", "test accuracy"])


def eval_gap_table(comparison) -> pd.DataFrame:
    """The BatchNorm runs: worker 0's running statistics against those averaged over workers."""
    rows = []
    for norm in comparison.norms:
        r = _last(comparison, norm)
        if r is None or math.isnan(r.test_accuracy_averaged):
            continue
        rows.append({"Normalization": SHORT[norm], "Test acc., worker 0's statistics": r.test_accuracy,
                     "Test acc., averaged over workers": r.test_accuracy_averaged,
                     "Gap (points)": 100 * (r.test_accuracy_averaged - r.test_accuracy),
                     "Largest running-mean difference": r.mean_spread,
                     "Largest running-var ratio − 1": r.var_spread})
    return pd.DataFrame(rows)


def step_time_table(comparison) -> pd.DataFrame:
    """Per norm, its last epoch's step split into compute and SyncBN collectives (ms)."""
    rows = []
    for norm in comparison.norms:
        r = _last(comparison, norm)
        if r is not None:
            rows.append({"norm": SHORT[norm], "part": "compute (incl. DDP gradient all-reduce)", "ms": r.compute_ms})
            rows.append({"norm": SHORT[norm], "part": "SyncBN collectives", "ms": r.sync_ms})
    return pd.DataFrame(rows, columns=["norm", "part", "ms"])


def rank_means_frame(comparison) -> pd.DataFrame:
    """Each worker's running mean per channel of the first BatchNorm, after the last epoch."""
    rows = []
    for norm in comparison.norms:
        r = _last(comparison, norm)
        for rank, means in enumerate(r.rank_means if r else ()):
            rows += [{"norm": SHORT[norm], "worker": f"worker {rank}", "channel": c, "running mean": m}
                     for c, m in enumerate(means)]
    return pd.DataFrame(rows, columns=["norm", "worker", "channel", "running mean"])
