"""Per-call cost of normcore's layers at small shapes, where a call's fixed cost dominates.

Printed by ``python -m benchmarks.norms`` (first table; ``--per-call`` prints it alone,
``--per-call --before COMMIT`` adds normcore as it was at that commit to the same loop): each
layer's forward + backward in training mode, one CPU thread, timed by the thread's CPU time
(the machine is shared and its wall clock swings 2x), normcore and torch.nn alternated in one
loop so that a noisy spell slows both alike. A repeat times ``CALLS`` steps; the table shows the
median per step in µs, and the aten operators one step runs (torch.profiler, counted where
they are called from Python or the autograd engine, not the ones they call themselves).
"""

from __future__ import annotations

import atexit
import importlib
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

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
    # torch has no Batch Renormalization: normcore's BatchRenorm2d against torch's BatchNorm2d
    ("BatchRenorm2d(16) vs BN2d", (32, 16, 8, 8), lambda m: getattr(m, "BatchRenorm2d", m.BatchNorm2d)(16)),
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


def import_commit(commit: str):
    """normcore as it was at ``commit`` (``git archive``), imported as ``normcore_<commit>``."""
    root = Path(__file__).resolve().parents[1]
    target = Path(tempfile.mkdtemp(prefix="normcore_before_"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    archive = subprocess.run(["git", "archive", commit, "normcore"], cwd=root, capture_output=True, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(target, filter="data")
    name = f"normcore_{commit}"
    (target / "normcore").rename(target / name)
    sys.path.insert(0, str(target))
    return importlib.import_module(name)


def measure(shape, build, repeats: int, before=None) -> dict:
    """Median CPU µs per step and ops per step for "torch", "normcore" (and "before": normcore
    at an earlier commit, the module ``before``)."""
    torch.manual_seed(0)
    layers = {"torch": build(nn), "normcore": build(normcore)}
    if before is not None:
        layers["before"] = build(before)
    for lib in layers:
        if lib != "torch":
            layers[lib].load_state_dict(layers["torch"].state_dict())
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


def print_table(repeats: int, before_commit: str | None = None) -> None:
    """The table; ``before_commit``: also normcore at that commit, in the same loop."""
    before = import_commit(before_commit) if before_commit else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        print(f"Per call at small shapes: fwd+bwd, train mode, 1 thread, CPU time, median of {repeats} x {CALLS} steps, "
              "normcore and torch alternated" + (f" (and normcore at {before_commit}: 'before')" if before else ""))
        extra = f" {'before µs':>9} {'ratio':>6}" if before else ""
        header = f"{'layer':28} {'shape':16} {'torch µs':>9} {'nc µs':>8} {'ratio':>6}{extra}   ops torch / nc" + (" / before" if before else "")
        print(header + "\n" + "-" * len(header))
        for name, shape, build in CASES:
            t = measure(shape, build, repeats, before)
            (theirs, their_ops), (ours, our_ops) = t["torch"], t["normcore"]
            row = f"{name:28} {str(shape):16} {theirs:9.1f} {ours:8.1f} {ours / theirs:6.2f}"
            ops = f"{their_ops} / {our_ops}"
            if before:
                row += f" {t['before'][0]:9.1f} {t['before'][0] / theirs:6.2f}"
                ops += f" / {t['before'][1]}"
            print(f"{row}   {ops}", flush=True)
    finally:
        torch.set_num_threads(threads)
    print()
