"""Data-parallel steps on this machine: spawn time, step time with local BatchNorm vs SyncBatchNorm.

    python -m benchmarks.distributed            # 1, 2 and 4 workers, MLP and CNN
    python -m benchmarks.distributed --quick    # 1 and 2 workers, MLP, few steps (a smoke test)

Last (not with --quick), the Data-parallel BN page's default run (2 workers; local BN, SyncBN, GroupNorm in turn),
timed end to end, process start included.

For each worker count W a :class:`~normcore.lab.distributed.pool.WorkerPool` is spawned (gloo,
one thread per worker) and timed from start until every worker is in the process group. Each
worker then trains two DDP copies of the digits classifier on its own 32 random samples per
step: one with normcore's BatchNorm (each worker's own statistics, "local") and one converted
to normcore.SyncBatchNorm ("sync"), alternating step by step so that a noisy machine slows
both alike. A step is forward, backward (with DDP's gradient all-reduce) and the SGD update.
Times are medians over steps, averaged over workers, in ms:

* ``overhead``: the median over steps of (sync step − the local step next to it), what
  synchronizing the statistics costs;
* ``collectives``: time inside SyncBatchNorm's all-reduces per step
  (``normcore.sync_batchnorm.time_collectives``; it includes waiting for the slowest worker),
  and its ``share`` of the sync step;
* ``x base``: the step time over the baseline measured in the same run, 1 worker with local
  BatchNorm (a world of one: SyncBatchNorm there is BatchNorm, no collective).

With more workers than cores (4 on a 2-core machine) the workers take turns on the cores, so
each collective also waits for a descheduled worker: the figures then measure the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from normcore.lab import models
from normcore.lab.distributed.pool import WorkerPool
from normcore.sync_batchnorm import SyncBatchNorm, time_collectives

PER_WORKER_BATCH = 32


def _models(kind: str) -> dict[str, nn.Module]:
    local = models.make_model(kind, norm="batch", impl="normcore", seed=0)
    return {"local": local, "sync": SyncBatchNorm.convert_sync_batchnorm(models.make_model(kind, norm="batch", seed=0))}


def _step(ddp, opt, x, y) -> tuple[float, float]:
    """One timed training step: (seconds, of which inside SyncBatchNorm's all-reduces)."""
    with time_collectives() as timer:
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(ddp(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        elapsed = time.perf_counter() - start
    return elapsed, timer.seconds


def _time_steps(worker, job: tuple[str, int]) -> dict[str, float]:
    """Runs in each worker: median step times (ms) of local and sync BN, the paired
    difference, and the collectives'. The two variants alternate step by step."""
    from torch.nn.parallel import DistributedDataParallel

    kind, steps = job
    g = torch.Generator().manual_seed(worker.rank)
    x, y = torch.randn(PER_WORKER_BATCH, 1, 8, 8, generator=g), torch.randint(0, 10, (PER_WORKER_BATCH,), generator=g)
    ddps = {name: DistributedDataParallel(m, forward_sync_buffers=False) for name, m in _models(kind).items()}
    opts = {name: torch.optim.SGD(d.parameters(), lr=0.01) for name, d in ddps.items()}
    times: dict[str, list[float]] = {"local": [], "sync": [], "overhead": [], "collectives": []}
    for step in range(steps + 3):  # three warm-up steps
        order = ("local", "sync") if step % 2 else ("sync", "local")
        got = {name: _step(ddps[name], opts[name], x, y) for name in order}
        if step >= 3:
            times["local"].append(got["local"][0])
            times["sync"].append(got["sync"][0])
            times["overhead"].append(got["sync"][0] - got["local"][0])
            times["collectives"].append(got["sync"][1])
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def measure(workers: int, kind: str, steps: int) -> dict[str, float]:
    with WorkerPool(workers, timeout_s=60.0) as pool:
        per_worker = pool.map(_time_steps, [(kind, steps)] * workers, timeout_s=600)
        spawn_s = pool.spawn_s
    row = {name: statistics.fmean(r[name] for r in per_worker) for name in per_worker[0]}
    return row | {"spawn_s": spawn_s}


def table(kind: str, counts: tuple[int, ...], steps: int) -> None:
    rows = {w: measure(w, kind, steps) for w in counts}
    base = rows[1]["local"]
    print(f"\n{models.MODEL_LABELS[kind]}, {PER_WORKER_BATCH} samples per worker; baseline (1 worker, local BN): "
          f"{base:.2f} ms/step")
    print(f"{'workers':>7} {'spawn s':>8} {'local ms':>9} {'sync ms':>8} {'sync/local':>10} {'overhead ms':>11} "
          f"{'collectives ms':>14} {'share':>6} {'local x base':>12} {'sync x base':>11}")
    for w, r in rows.items():
        print(f"{w:>7} {r['spawn_s']:>8.2f} {r['local']:>9.2f} {r['sync']:>8.2f} {r['sync'] / r['local']:>10.2f} "
              f"{r['overhead']:>11.2f} {r['collectives']:>14.2f} {r['collectives'] / r['sync']:>6.0%} "
              f"{r['local'] / base:>12.2f} {r['sync'] / base:>11.2f}")


def page_run() -> None:
    """The Data-parallel BN page's default run, as the page starts it, timed from the call to its
    return: process start, the three trainings, process end."""
    from normcore.lab.experiments import data_parallel as D

    options = D.DataParallelOptions()
    start = time.perf_counter()
    comparison = D.run(D.Comparison(options))
    wall = time.perf_counter() - start
    print(f"\nData-parallel BN page, default run ({options.workers} workers, "
          f"{options.per_worker_batch} per worker, {options.epochs} epochs, norms {', '.join(options.norms)}): "
          f"{comparison.status} in {wall:.1f} s, workers up in {comparison.spawn_s:.1f} s")
    print(D.results_table(comparison).round(3).to_string(index=False))
    print(D.step_time_table(comparison).round(2).to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 workers, the MLP, few steps: a smoke test")
    parser.add_argument("--steps", type=int, default=100, help="timed steps of each variant (default 100)")
    args = parser.parse_args()
    counts, kinds = ((1, 2), ("mlp",)) if args.quick else ((1, 2, 4), ("mlp", "cnn"))
    steps = 5 if args.quick else args.steps
    print(f"Data-parallel steps, gloo on CPU, one thread per worker, {os.cpu_count()} cores here; "
          f"torch {torch.__version__}; medians of {steps} steps.")
    for kind in kinds:
        table(kind, counts, steps)
    print("\nSyncBN overhead = median over steps of (sync − local), the two run alternately; "
          "share = collectives / sync step.")
    if not args.quick:  # the smoke test leaves it out: tests/test_page_data_parallel.py runs it through the page
        page_run()


if __name__ == "__main__":
    main()
