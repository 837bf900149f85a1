"""Training speed: normcore vs torch.nn layers, and what the page's loop costs on top.

    python -m benchmarks.training_overhead         # every measurement, the default device comparison
    python -m benchmarks.training_overhead --quick # a smoke test: every table once, small (below)

Three tables:

1. **steps/s, normcore vs torch.nn**: the same model (same seed, same batches) trained
   with each implementation's norm layers, alternated in the same loop so a noisy machine
   slows both alike; median of the repeats. ``ratio`` = normcore / torch steps/s.
2. **the page's loop vs a bare loop**: ``experiments.training.run`` with what the page does
   around it (progress bar and live charts, built with Streamlit in bare mode: see
   :func:`page_loop`), against a plain ``for idx in batches: forward, loss, backward, step``
   loop with the same model, batches and optimizer plus the test accuracy at each epoch end.
   Target: ≤ 10 %.
3. **the default comparison**: the page's default settings (five normalizations, digits,
   default epochs, ``devices.default_targets()``), end to end. Target: ≤ 15 s. Then the
   same with this machine's full device comparison (CPU 1 thread vs all, or CPU vs GPU).

The machine is shared, so each figure is the best (minimum) or median of a few repeats,
and the load average is printed alongside.

``--quick`` runs every table once, too small for its figures to mean much: table 1 with 20
steps and one repeat, BatchNorm and RMSNorm in the MLP and the CNN; tables 2 and 3 with
BatchNorm only: table 2 with the default (MLP) row only, one epoch and one repeat; table 3
with the default comparison only (without a GPU that leaves out CPU with all threads, which
can crawl on cores another process keeps busy), one epoch and one repeat.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import streamlit as st
import torch
from torch import nn

from benchmarks import bare_streamlit
from normcore.lab import datasets, devices, models, loop
from normcore.lab.experiments import training as T
from normcore.lab.viz import training_charts as charts
from pages.shared import redraw


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def _steps_per_s(kind: str, norm: str, impl: str, data, steps: int, device: str) -> float:
    model = models.make_model(kind, norm, impl, width=64 if kind == "mlp" else 16, depth=2, seed=0)
    config = loop.TrainConfig(epochs=max(1, -(-steps // (len(data.x_train) // 32))), batch_size=32, log_every=10**9)
    calls = itertools.count()  # stop() is asked once before every step
    threads = 1 if device == "cpu" else None  # one thread: least disturbed on a shared machine
    result = loop.train(model, data, config, device=device, threads=threads, stop=lambda: next(calls) >= steps)
    return result.steps / result.train_time_s


def table_impl(data, quick: bool) -> None:
    steps, repeats = (20, 1) if quick else (150, 5)
    print(f"\n1. steps/s at batch 32, normcore vs torch.nn ({steps} steps, median of {repeats}; CPU: 1 thread)")
    print(f"{'device':8} {'model':5} {'norm':9} {'normcore':>10} {'torch.nn':>10} {'ratio':>7}")
    for device in devices.available():
        rows = [("mlp", n) for n in ("batch", "layer", "group", "rms")] + [("cnn", n) for n in ("batch", "layer", "group", "instance", "rms")]
        for kind, norm in [(k, n) for k in ("mlp", "cnn") for n in ("batch", "rms")] if quick else rows:
            runs = {"normcore": [], "torch": []}
            for _ in range(repeats):
                for impl in runs:
                    runs[impl].append(_steps_per_s(kind, norm, impl, data, steps, device))
            ours, theirs = statistics.median(runs["normcore"]), statistics.median(runs["torch"])
            print(f"{device:8} {kind:5} {norm:9} {ours:10.0f} {theirs:10.0f} {ours / theirs:7.2f}")


def bare_loop(config: T.RunConfig, variants, data) -> float:
    """The same work with nothing around it: seconds."""
    started = time.perf_counter()
    for v in variants:
        target = v.target
        with devices.placed(target) as dev:
            model = models.make_model(config.model, v.norm, config.impl, width=config.width, depth=config.depth,
                                      num_groups=config.num_groups, momentum=config.momentum, eps=config.eps, seed=config.seed).to(dev)
            x, y, xt, yt = (t.to(dev) for t in (data.x_train, data.y_train, data.x_test, data.y_test))
            opt = torch.optim.SGD(model.parameters(), lr=v.lr, momentum=0.9)
            order = loop.batch_order(len(x), v.batch_size, v.epochs, config.seed).to(dev)
            for step, idx in enumerate(order, 1):
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step % (len(order) // v.epochs) == 0:  # the test accuracy the page shows per epoch
                    model.eval()
                    with torch.no_grad():
                        float((model(xt).argmax(1) == yt).float().mean())
                    model.train()
    return time.perf_counter() - started


def page_loop(config: T.RunConfig) -> tuple[float, T.LiveRun]:
    """``experiments.training.run`` followed by the page's own live view
    (``pages.shared.redraw.LiveView``: the progress bar and the two live charts under its
    DrawBudget), through real Streamlit elements. Outside ``streamlit run`` (bare mode) each
    element is still built and marshalled (protobuf, Arrow), only not sent; sending happens
    on the server's own thread."""
    view = redraw.LiveView(st.empty(), (st.empty(), st.empty()), charts.live_run_charts)
    started = time.perf_counter()
    live = T.LiveRun(config, T.plan(config)[0])
    view.follow(live, lambda on_progress: T.run(config, live, on_progress=on_progress))
    return time.perf_counter() - started, live


def _clear_chart_templates() -> None:
    for template in (charts._loss_template, charts._accuracy_template):
        template.cache_clear()


def table_overhead(quick: bool) -> None:
    repeats = 1 if quick else 7
    epochs, norms = (1, ("batch",)) if quick else (T.RunConfig.epochs, T.RunConfig.norms)
    cpu = devices.all_targets()[0].key
    print(f"\n2. the page's loop vs a bare loop (best of {repeats}, alternated; CPU {cpu})")
    print(f"   {'settings':44} {'bare':>7} {'loop':>7} {'page':>7} {'loop overhead':>14} {'page overhead':>14}")
    cold = []
    rows = (
        ("default", T.RunConfig(devices=(cpu,), epochs=epochs, norms=norms)),
        ("heavier", T.RunConfig(devices=(cpu,), epochs=epochs, norms=norms, model="cnn", width=32)),
    )
    for name, config in rows[:1] if quick else rows:
        label = f"{name}: {len(config.norms)} norms, {config.model.upper()} {config.width}×{config.depth}, {config.dataset}"
        variants, _ = T.plan(config)
        data = datasets.load_digits_split(config.seed)
        page_loop(T.with_settings(config, epochs=1))  # warm thread pools and the device warm-up
        bare_loop(config, variants, data)
        _clear_chart_templates()
        cold.append((label, bare_loop(config, variants, data), page_loop(config)[0]))  # charts of a shape not seen yet
        bare, loop, page = [], [], []
        for _ in range(repeats):  # alternated, so load changes hit all three alike
            bare.append(bare_loop(config, variants, data))
            started = time.perf_counter()
            T.run(config)  # the page's loop without drawing anything
            loop.append(time.perf_counter() - started)
            page.append(page_loop(config)[0])
        b, lo, p = min(bare), min(loop), min(page)
        print(f"   {label + f', {config.epochs} epochs':44} {b:6.2f}s {lo:6.2f}s {p:6.2f}s {100 * (lo - b) / b:+13.1f}% {100 * (p - b) / b:+13.1f}%")
    print("   bare: forward/backward/step + test accuracy at each epoch end. loop: experiments.training.run (metrics,")
    print("   percentiles, per-epoch test accuracy, divergence checks). page: loop + the page's progress bar")
    print("   and live charts under DrawBudget (Streamlit elements in bare mode), final drawing included. Target ≤ 10 %.")
    for label, b, p in cold:
        print(f"   once per server process and chart shape, when Altair first builds the spec: {label}: page {p:.2f}s vs bare "
              f"{b:.2f}s ({100 * (p - b) / b:+.1f}%, one run each)")


def table_default(quick: bool) -> None:
    repeats = 1 if quick else 3
    epochs, norms = (1, ("batch",)) if quick else (T.RunConfig.epochs, T.RunConfig.norms)
    print("\n3. the page's default comparison, end to end (target ≤ 15 s), and the full device comparison")
    comparisons = [("default", devices.default_targets()), ("device comparison", devices.comparison_targets())]
    for what, targets in comparisons[:1] if quick else comparisons:
        config = T.RunConfig(devices=tuple(t.key for t in targets), epochs=epochs, norms=norms)
        times = []
        for _ in range(repeats):
            seconds, live = page_loop(config)
            times.append(seconds)
        print(f"   {what}: {len(live.variants)} variants ({', '.join(config.norms)} × {', '.join(config.devices)}; "
              f"{config.epochs} epochs on digits): best {min(times):.2f} s, median {statistics.median(times):.2f} s")
        for _, row in live.summary().iterrows():
            print(f"     {row['label']:34} test {row['test_accuracy']:.3f}  {row['samples_per_s']:8.0f} samples/s  "
                  f"speed-up {row['speedup_vs_cpu']:.2f}×")


def main() -> None:
    bare_streamlit.quiet()  # page_loop uses Streamlit in bare mode
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every table once, small: a smoke test")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, devices {devices.available()}, {torch.get_num_threads()} threads; {_load()}")
    data = datasets.load_digits_split(0)
    table_impl(data, args.quick)
    table_overhead(args.quick)
    table_default(args.quick)
    print(f"\n{_load()}")


if __name__ == "__main__":
    main()
