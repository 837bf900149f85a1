"""Accuracy against the per-worker batch for local BN, SyncBN and GroupNorm, beside the
GroupNorm paper's table (reused from the training page's sweeps).

    python -m normcore.lab.experiments.data_parallel [--workers 2] [--epochs 2] [--batches 2,4,8,16,32,64]

Every (batch, norm) pair is one run on the same spawned workers (``run_series``), the
learning rate fixed, so the per-worker batch is the only thing that changes.
"""

from __future__ import annotations

import pandas as pd

from ...distributed import RunConfig
from ...distributed.launch import run_series
from ..training import paper_table
from .tables import SHORT

BATCHES = (2, 4, 8, 16, 32, 64)
NORMS = ("local", "sync", "group")


def sweep_configs(workers: int = 2, epochs: int = 2, batches=BATCHES, seed: int = 0) -> list[RunConfig]:
    return [RunConfig(workers=workers, norm=n, per_worker_batch=b, epochs=epochs, seed=seed, device="cpu")
            for b in batches for n in NORMS]


def run_sweep(workers: int = 2, epochs: int = 2, batches=BATCHES, on_result=None) -> pd.DataFrame:
    """Test error (%) by per-worker batch (rows) and norm (columns); ``on_result(config, error)``."""
    configs = sweep_configs(workers, epochs, batches)
    done = {"n": 0}

    def progress(index, event):
        if getattr(event, "epoch", 0) == configs[index].epochs and hasattr(event, "test_accuracy") and on_result:
            on_result(configs[index], 100 * (1 - event.test_accuracy))

    results = run_series(configs, progress, time_cap_s=3600.0)
    rows = []
    for r in results:
        if r.status != "finished":
            raise RuntimeError(f"{r.config.norm} at {r.config.per_worker_batch}: {r.status}: {r.message}")
        done["n"] += 1
        rows.append({"per_worker_batch": r.config.per_worker_batch, "norm": SHORT[r.config.norm],
                     "test error": 100 * (1 - r.epochs[-1].test_accuracy)})
    return pd.DataFrame(rows)


def error_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-worker batch × norm, test error in %."""
    return frame.pivot(index="per_worker_batch", columns="norm", values="test error")[[SHORT[n] for n in NORMS]]


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m normcore.lab.experiments.data_parallel", description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    a = p.parse_args(argv)
    batches = tuple(int(b) for b in a.batches.split(","))
    print(f"{a.workers} workers (gloo, CPU), digits MLP, {a.epochs} epochs, lr 0.05; test error (%) of worker 0's model")
    frame = run_sweep(a.workers, a.epochs, batches,
                      on_result=lambda c, e: print(f"  batch {c.per_worker_batch:>3} per worker, {SHORT[c.norm]:<9}: {e:.1f}", flush=True))
    print("\nThis lab (digits, test error %, by batch per worker):")
    print(error_table(frame).round(1).to_string())
    print("\nGroupNorm paper (ImageNet ResNet-50 top-1 error %, by images per GPU):")
    print(paper_table().to_string())
    return 0
