"""``python -m normcore.lab.distributed``: data-parallel training of the digits classifier.

Spawns its own workers, or, started by torchrun, is one of torchrun's workers. Run with
``--help`` for the forms.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

from .config import DEVICES, DDP_NORM_LABELS, DDP_NORMS, RunConfig, problems
from .launch import EpochReport, RunResult, run, run_torchrun, under_torchrun

EPILOG = """\
forms:
  python -m normcore.lab.distributed --workers 2 --norm sync
      spawns 2 workers on this machine (gloo on the CPU, one thread each).
  torchrun --nproc-per-node 2 -m normcore.lab.distributed --norm sync
      the same training, as torchrun's workers (--workers is then torchrun's count).
  torchrun --nnodes 2 --node-rank R --nproc-per-node 4 --master-addr HOST --master-port 29500 \\
           -m normcore.lab.distributed --norm sync
      on several machines: run it on each, R = 0, 1, ...; HOST is node 0's address, which the
      others must reach (with gloo, GLOO_SOCKET_IFNAME=<interface> picks the network card).

devices: with a GPU per worker (or --device cuda) each worker uses NCCL and cuda:LOCAL_RANK.
That path follows torch's documented setup but has not been tested (written on CPU-only machines).
"""


def parse(argv=None) -> RunConfig:
    d = RunConfig()
    p = argparse.ArgumentParser(prog="python -m normcore.lab.distributed", epilog=EPILOG,
                                description="Train the digits MLP/CNN data-parallel (DDP) and report accuracy, step "
                                            "time and the time inside SyncBatchNorm's all-reduces.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=d.workers, help=f"processes to spawn (default {d.workers}; ignored under torchrun)")
    p.add_argument("--norm", choices=DDP_NORMS, default=d.norm,
                   help="; ".join(f"{k}: {v}" for k, v in DDP_NORM_LABELS.items()) + f" (default {d.norm})")
    p.add_argument("--per-worker-batch", type=int, default=d.per_worker_batch, help=f"samples per worker and step (default {d.per_worker_batch})")
    p.add_argument("--model", choices=("mlp", "cnn"), default=d.model)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr, help=f"SGD learning rate, momentum 0.9 (default {d.lr})")
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--depth", type=int, default=d.depth)
    p.add_argument("--groups", type=int, default=d.num_groups, help="GroupNorm's groups (norm group)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", choices=DEVICES, default=d.device)
    a = p.parse_args(argv)
    return RunConfig(workers=a.workers, norm=a.norm, per_worker_batch=a.per_worker_batch, model=a.model, epochs=a.epochs,
                     lr=a.lr, width=a.width, depth=a.depth, num_groups=a.groups, seed=a.seed, device=a.device)


def describe(config: RunConfig, how: str) -> str:
    epochs = f"{config.epochs} epoch" + ("s" if config.epochs != 1 else "")
    return (f"{config.workers} workers ({how}), model {config.model}, norm {config.norm} ({DDP_NORM_LABELS[config.norm]}), "
            f"{config.per_worker_batch} per worker = {config.global_batch} per step, {epochs}")


def epoch_line(r: EpochReport, epochs: int) -> str:
    sync = f"SyncBN all-reduces {r.sync_ms:.2f} ms/step ({r.sync_share:.0%})" if r.sync_calls_per_step else "no SyncBN"
    return (f"epoch {r.epoch}/{epochs}  loss {r.train_loss:.3f}  train acc {r.train_accuracy:.1%}  "
            f"test acc {r.test_accuracy:.1%}  step {r.step_ms:.2f} ms  {sync}  {r.samples_per_s:,.0f} samples/s")


def show_epoch(config: RunConfig):
    def show(event) -> None:
        if isinstance(event, EpochReport):
            print(epoch_line(event, config.epochs), flush=True)
    return show


def main(argv=None) -> int:
    config = parse(argv)
    if under_torchrun():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        config = replace(config, workers=world)
        if rank == 0:
            print(describe(config, "torchrun"), flush=True)
        start = time.perf_counter()
        run_torchrun(config, show_epoch(config))
        if rank == 0:
            print(f"finished in {time.perf_counter() - start:.1f} s", flush=True)
        return 0
    found = problems(config)
    if found:
        print("invalid: " + " ".join(found), file=sys.stderr)
        return 2
    print(describe(config, "spawned"), flush=True)
    result: RunResult = run(config, on_progress=show_epoch(config))
    if result.status != "finished":
        print(f"{result.status}: {result.message}", file=sys.stderr)
        return 1
    print(f"workers up in {result.spawn_s:.1f} s ({result.backend} on {result.device}); {result.status} in {result.wall_s:.1f} s",
          flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    if under_torchrun():
        # As the spawned workers do (pool._serve): leave without the interpreter's teardown, where
        # a gloo thread still being joined can abort the process (SIGABRT, "terminate called
        # without an active exception", 1 run in 4 here) and dynamo's clean-up takes seconds.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
