"""The Transformers page's work, timed against its targets, and normcore's layers against torch.nn's.

    python -m benchmarks.transformers          # the page's defaults
    python -m benchmarks.transformers --quick  # a smoke test: tiny settings, one repeat
    python -m benchmarks.transformers --part-two  # only part 2's views (the QK sweep, the norms)

Three tables:

1. **the page's views at their defaults**, each with its target: the first view (per-block
   gradients at initialization, depth 12, three placements, one seed) ≤ 3 s; the depth and
   init charts on demand ≤ 10 s; the warm-up comparison (four runs of 100 steps) ≤ 25 s; a
   cached rerun of it ≤ 300 ms. Wall-clock and CPU time (``time.process_time``) side by side:
   on this shared machine the wall clock also counts the other processes' turns.
2. **part 2's views** (#28): the default QK sweep ≤ 60 s with its first point ≤ 15 s, the
   S-curves first view ≤ 15 s, the five norms side by side ≤ 40 s, cached reruns ≤ 300 ms;
3. **one training step, normcore vs torch.nn** (``impl``): the warm-up default model, the two
   implementations alternated step by step in one process; CPU time per step, median over
   steps, and the ratio.

Each view runs on one thread (as the page does: ``devices.placed``); the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from normcore.lab.experiments.transformers import at_init, norm_comparison, s_curves, stability, warmup
from normcore.lab.experiments.transformers.norm_comparison import step_times
from normcore.lab.experiments.transformers.part2_options import NormOptions, StabilityOptions
from normcore.lab.experiments.transformers.options import InitOptions, WarmupOptions
from normcore.lab.experiments.transformers.run_config import LMRunConfig
from normcore.lab.experiments.transformers.training import lm_run_cache
from normcore.lab.text_corpus import load_corpus

PART_TWO_TARGETS_S = {"QK sweep (all runs)": 60.0, "first point": 15.0, "S-curves first view": 15.0,
                      "five norms side by side": 40.0, "cached rerun (sweep + norms)": 0.3}
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


def part_two_views(stab: StabilityOptions, norms: NormOptions, what: str) -> None:
    """Part 2's views (#28), each with its target: the sweep (and when its first point arrived),
    the S-curves first view, the five norms side by side, and a cached rerun of each."""
    load_corpus()
    cache = lm_run_cache()
    started, first = time.perf_counter(), []
    on_run = lambda sweep: first.append(time.perf_counter() - started) if not first else None  # noqa: E731
    views = {
        "QK sweep (all runs)": lambda: stability.run_stability(stab, cache=cache, on_run=on_run),
        "S-curves first view": lambda: s_curves.s_curves(norms, cache=cache),
        "five norms side by side": lambda: norm_comparison.run_norms(norms, cache=cache),
        "cached rerun (sweep + norms)": lambda: (stability.run_stability(stab, cache=cache),
                                                 norm_comparison.run_norms(norms, cache=cache)),
    }
    print(f"\nPart 2's views, {what} ({_load()})")
    print(f"{'view':<30}{'wall s':>9}{'CPU s':>9}{'target s':>10}")
    for name, work in views.items():
        if name.startswith("QK"):
            started = time.perf_counter()
        wall, cpu = _timed(work)
        print(f"{name:<30}{wall:>9.2f}{cpu:>9.2f}{PART_TWO_TARGETS_S[name]:>10.2f}")
    print(f"{'QK sweep: first point':<30}{first[0]:>9.2f}{'':>9}{PART_TWO_TARGETS_S['first point']:>10.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings, a smoke test")
    parser.add_argument("--part-two", action="store_true", help="only part 2's views (#28) and the step timing")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    init, warm = InitOptions(), WarmupOptions()
    steps = 30
    if args.quick:
        init = InitOptions(depth=3, width=16, heads=2, context=8, batch_size=4)
        warm = WarmupOptions(depth=1, steps=10, warmup_steps=2, width=16, heads=2, context=8, batch_size=4)
        steps = 3
    stab, norms = StabilityOptions(), NormOptions()
    if args.quick:
        stab = StabilityOptions(rates=("0.01", "0.3"), steps=50, warmup_steps=0, depth=1, width=16, heads=2, context=8,
                                batch_size=4)
        norms = NormOptions(steps=20, depth=2, width=16, context=8, batch_size=4, s_block=2)
    if not args.part_two:
        page_views(init, warm, "quick settings" if args.quick else "defaults")
    part_two_views(stab, norms, "quick settings" if args.quick else "defaults")
    config = LMRunConfig(d_model=warm.width, n_heads=warm.heads, n_layers=warm.depth, context=warm.context,
                         batch_size=warm.batch_size, placement="post")
    times = step_times(config, steps)
    print(f"\nOne training step, post-LN, depth {warm.depth}, width {warm.width}, {warm.batch_size} × {warm.context} "
          f"tokens, 1 thread, median of {steps} ({_load()})")
    print(f"normcore {times['normcore'] * 1e3:.1f} ms, torch.nn {times['torch'] * 1e3:.1f} ms: "
          f"normcore / torch ratio {times['normcore'] / times['torch']:.2f}")


if __name__ == "__main__":
    main()
