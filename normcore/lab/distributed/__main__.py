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

from normcore.lab import limits
from normcore.lab.distributed.config import DDP_NORM_LABELS, FIELDS, DDPConfig, problems
from normcore.lab.distributed.launch import EpochReport, RunResult, run, run_torchrun, under_torchrun

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

ranges: the Data-parallel page's, from one schema (normcore.lab.distributed.config.FIELDS).
A run here is not held to the page's work cap (limits.{lifted}: at most {steps:,} steps and
{params:,} parameters) and may take up to {run_s:.0f} s (limits.MAX_COMMAND_LINE_RUN_S; the page's
runs {page_s:.0f} s).

devices: with a GPU per worker (or --device cuda) each worker uses NCCL and cuda:LOCAL_RANK.
That path follows torch's documented setup but has not been tested (written on CPU-only machines).
""".format(lifted=", ".join(limits.COMMAND_LINE_LIFTS), steps=limits.MAX_DISTRIBUTED_STEPS,
           params=limits.MAX_DISTRIBUTED_PARAMS, run_s=limits.MAX_COMMAND_LINE_RUN_S, page_s=limits.MAX_DISTRIBUTED_RUN_S)


FLAGS = {"num_groups": "--groups"}  # a field's flag, where it is not --<name with dashes>


def flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def dest(name: str) -> dict:
    return {"dest": name} if name in FLAGS else {}


def add_field(p: argparse.ArgumentParser, f) -> None:
    """Field ``f`` of the run's schema as a flag: its default, its choices, its range in the help.
    The range itself is checked with every other problem (:func:`problems`), in the page's words."""
    if f.kind == "bool":
        p.add_argument(flag(f.name), action="store_true", **dest(f.name), help=f"{(f.help or f.label).rstrip('.')} (default off)")
        return
    if f.kind == "choice":
        shown = "; ".join(f"{c}: {f.label_of(c)}" for c in f.options)
        p.add_argument(flag(f.name), choices=f.options, default=f.default, **dest(f.name), help=f"{shown} (default {f.default})")
        return
    number = int if f.kind == "int" else float
    p.add_argument(flag(f.name), type=number, default=f.default, **dest(f.name),
                   help=f"{(f.help or f.label).rstrip('.')} ({f.low:g} to {f.high:g}; default {f.default:g})")


def parse(argv=None) -> DDPConfig:
    p = argparse.ArgumentParser(prog="python -m normcore.lab.distributed", epilog=EPILOG,
                                description="Train the digits MLP/CNN data-parallel (DDP) and report accuracy, step "
                                            "time and the time inside SyncBatchNorm's all-reduces.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in FIELDS.fields:
        add_field(p, f)
    a = vars(p.parse_args(argv))
    return DDPConfig(**{f.name: a[f.name] for f in FIELDS.fields})


def describe(config: DDPConfig, how: str) -> str:
    epochs = f"{config.epochs} epoch" + ("s" if config.epochs != 1 else "")
    return (f"{config.workers} workers ({how}), model {config.model}, norm {config.norm} ({DDP_NORM_LABELS[config.norm]}), "
            f"{config.per_worker_batch} per worker = {config.global_batch} per step, {epochs}")


def epoch_line(r: EpochReport, epochs: int) -> str:
    sync = f"SyncBN all-reduces {r.sync_ms:.2f} ms/step ({r.sync_share:.0%})" if r.sync_calls_per_step else "no SyncBN"
    return (f"epoch {r.epoch}/{epochs}  loss {r.train_loss:.3f}  train acc {r.train_accuracy:.1%}  "
            f"test acc {r.test_accuracy:.1%}  step {r.step_ms:.2f} ms  {sync}  {r.samples_per_s:,.0f} samples/s")


def show_epoch(config: DDPConfig):
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
    result: RunResult = run(config, on_progress=show_epoch(config), time_cap_s=limits.MAX_COMMAND_LINE_RUN_S)
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
