"""The Transformers page's work, timed against its targets, and normcore's layers against torch.nn's.

    python -m benchmarks.transformers          # the page's defaults
    python -m benchmarks.transformers --quick  # a smoke test: tiny settings, one repeat

Two tables:

1. **the page's views at their defaults**, each with its target: the first view (per-block
   gradients at initialization, depth 12, three placements, one seed) ≤ 3 s; the depth and
   init charts on demand ≤ 10 s; the warm-up comparison (four runs of 100 steps) ≤ 25 s; a
   cached rerun of it ≤ 300 ms. Wall-clock and CPU time (``time.process_time``) side by side:
   on this shared machine the wall clock also counts the other processes' turns.
2. **one training step, normcore vs torch.nn** (``impl``): the warm-up default model, the two
   implementations alternated step by step in one process; CPU time per step, median over
   steps, and the ratio.

Each view runs on one thread (as the page does: ``devices.placed``); the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

import torch

from normcore.lab.experiments.transformers import at_init, warmup
from normcore.lab.experiments.transformers.options import InitOptions, WarmupOptions
from normcore.lab.experiments.transformers.run_config import LMRunConfig, make_adamw
from normcore.lab.experiments.transformers.training import lm_run_cache, next_token_loss
from normcore.lab.text_corpus import load_corpus

TARGETS_S = {"first view": 3.0, "depth and init charts": 10.0, "warm-up comparison": 25.0, "cached rerun": 0.3}


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def _timed(work) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def page_views(init: InitOptions, warm: WarmupOptions, what: str) -> None:
    load_corpus()  # once per process, as on a server
    cache = lm_run_cache()
    views = {
        "first view": lambda: at_init.block_gradients(init),
        "depth and init charts": lambda: at_init.depth_sweep(init),
        "warm-up comparison": lambda: warmup.run_warmup(warm, cache=cache),
        "cached rerun": lambda: warmup.run_warmup(warm, cache=cache),
    }
    print(f"The page's views, {what} ({_load()})")
    print(f"{'view':<24}{'wall s':>9}{'CPU s':>9}{'target s':>10}")
    for name, work in views.items():
        wall, cpu = _timed(work)
        print(f"{name:<24}{wall:>9.2f}{cpu:>9.2f}{TARGETS_S[name]:>10.2f}")


def step_times(config: LMRunConfig, steps: int) -> dict[str, float]:
    """CPU seconds per training step of each impl, the two alternated step by step; medians."""
    corpus = load_corpus()
    runs = {}
    for impl in ("normcore", "torch"):
        model = replace(config, impl=impl).build_model(corpus.vocab_size)
        runs[impl] = (model, make_adamw(model, config), [])
    batches = corpus.batches("train", steps + 2, config.batch_size, config.context, seed=0)
    for i, (x, y) in enumerate(batches):
        for impl, (model, optimizer, times) in runs.items():
            start = time.process_time()
            loss = next_token_loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if i >= 2:  # the first steps pay one-time costs
                times.append(time.process_time() - start)
    return {impl: statistics.median(times) for impl, (_, _, times) in runs.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings, a smoke test")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    init, warm = InitOptions(), WarmupOptions()
    steps = 30
    if args.quick:
        init = InitOptions(depth=3, width=16, heads=2, context=8, batch_size=4)
        warm = WarmupOptions(depth=1, steps=10, warmup_steps=2, width=16, heads=2, context=8, batch_size=4)
        steps = 3
    page_views(init, warm, "quick settings" if args.quick else "defaults")
    config = LMRunConfig(d_model=warm.width, n_heads=warm.heads, n_layers=warm.depth, context=warm.context,
                         batch_size=warm.batch_size, placement="post")
    times = step_times(config, steps)
    print(f"\nOne training step, post-LN, depth {warm.depth}, width {warm.width}, {warm.batch_size} × {warm.context} "
          f"tokens, 1 thread, median of {steps} ({_load()})")
    print(f"normcore {times['normcore'] * 1e3:.1f} ms, torch.nn {times['torch'] * 1e3:.1f} ms: "
          f"normcore / torch ratio {times['normcore'] / times['torch']:.2f}")


if __name__ == "__main__":
    main()
