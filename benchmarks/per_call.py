"""Per-call cost of normcore's layers at small shapes, where a call's fixed cost dominates.

Printed by ``python -m benchmarks.norms`` (first table; ``--per-call`` prints it alone): each
layer's forward + backward in training mode, one CPU thread, timed by the thread's CPU time
(the machine is shared and its wall clock swings 2x), normcore and torch.nn alternated in one
loop so that a noisy spell slows both alike. A repeat times ``CALLS`` steps; the table shows the
median per step in µs, and the aten operators one step runs (torch.profiler, counted where
they are called from Python or the autograd engine, not the ones they call themselves).
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

import normcore

CALLS = 20  # steps per timed repeat
CASES = [  # the small shapes
    ("LayerNorm(64)", (32, 16, 64), lambda m: m.LayerNorm(64)),
    ("BatchNorm1d(64)", (32, 64), lambda m: m.BatchNorm1d(64)),
    ("GroupNorm(4, 16)", (32, 16, 8, 8), lambda m: m.GroupNorm(4, 16)),
    ("RMSNorm(64)", (32, 16, 64), lambda m: m.RMSNorm(64)),
    ("BatchNorm2d(16)", (32, 16, 8, 8), lambda m: m.BatchNorm2d(16)),
    ("InstanceNorm2d(16, affine)", (32, 16, 8, 8), lambda m: m.InstanceNorm2d(16, affine=True)),
]


def _step(layer: nn.Module, x: torch.Tensor, dy: torch.Tensor) -> None:
    layer(x).backward(dy)
    x.grad = None
    layer.zero_grad(set_to_none=True)


def ops_per_step(layer: nn.Module, x: torch.Tensor, dy: torch.Tensor) -> int:
    """The aten operators one step runs at the top level (not those they run inside)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _step(layer, x, dy)
    return sum(1 for e in prof.events() if e.name.startswith("aten::")
               and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))


def measure(shape, build, repeats: int) -> dict:
    """Median CPU µs per step and ops per step for "torch" and "normcore"."""
    torch.manual_seed(0)
    layers = {"torch": build(nn), "normcore": build(normcore)}
    layers["normcore"].load_state_dict(layers["torch"].state_dict())
    x, dy = torch.randn(shape, requires_grad=True), torch.randn(shape)
    times = {lib: [] for lib in layers}
    for i in range(repeats + 3):
        for lib in list(layers) if i % 2 == 0 else list(layers)[::-1]:
            start = time.thread_time()
            for _ in range(CALLS):
                _step(layers[lib], x, dy)
            if i >= 3:
                times[lib].append((time.thread_time() - start) / CALLS)
    return {lib: (statistics.median(t) * 1e6, ops_per_step(layers[lib], x, dy)) for lib, t in times.items()}


def print_table(repeats: int) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        print(f"Per call at small shapes: fwd+bwd, train mode, 1 thread, CPU time, median of {repeats} x {CALLS} steps, "
              "normcore and torch alternated")
        header = f"{'layer':28} {'shape':16} {'torch µs':>9} {'nc µs':>8} {'ratio':>6}   {'ops torch':>9} {'ops nc':>6}"
        print(header + "\n" + "-" * len(header))
        for name, shape, build in CASES:
            t = measure(shape, build, repeats)
            (theirs, their_ops), (ours, our_ops) = t["torch"], t["normcore"]
            print(f"{name:28} {str(shape):16} {theirs:9.1f} {ours:8.1f} {ours / theirs:6.2f}   {their_ops:9d} {our_ops:6d}", flush=True)
    finally:
        torch.set_num_threads(threads)
    print()
