"""Server-side time of a Step on the Live statistics page, at the defaults and at the caps;
the Gradients page's first render and cached rerun; and the overview's pictures.

    python -m benchmarks.pages            # default repeats
    python -m benchmarks.pages --quick    # a smoke test: few repeats, AppTest at the defaults only
    python -m benchmarks.pages --gradients  # only the Gradients page, all four parts
    python -m benchmarks.pages --transformers  # only the Transformers page

Two measurements per setting, medians in milliseconds:

* ``fragment``: the work the page's live fragment does on a Step click, called directly:
  ``LiveStream.step()`` (draw a batch, normcore layer + torch.nn twin, record), the history
  window, the readouts, and both stream charts built and passed to ``st.vega_lite_chart``
  (Streamlit in bare mode: the element is marshalled, data as Arrow, but not sent). In the
  browser only this fragment reruns on Step and on every Play tick.
* ``apptest``: ``AppTest`` clicking Step. AppTest reruns the *whole* page script (fragments
  are not isolated there), so this is an upper bound: it adds the sidebar, the diagram and the
  cached one-batch section, and Streamlit's own element handling.

The Gradients page (AppTest, whole script): its **first render** with Streamlit's caches
cleared (targets: ≤ 2 s) and a **cached rerun** (≤ 300 ms), at its defaults and at its cap
(64 values: 4×4×2×2 GroupNorm, a 64×64 Jacobian). Then its parts 3 and 4 (their tabs opened
at their defaults: two deep MLPs trained, or two small ones probed and sliced): the first
render with the caches cleared (target ≤ 6 s) and a cached rerun (≤ 300 ms).

The Transformers page (AppTest, whole script, every cache cleared first): its first view as it
opens (per-block gradients at depth 12, three placements, one seed; target ≤ 3 s), the depth
sweep's button (the depth and init charts, ≤ 10 s), and the default warm-up comparison (four
runs, ≤ 25 s, with the number of live redraws of its curves while they train), each with a
cached rerun after it (≤ 300 ms).

The overview's cards (bare mode, alternately in one run): ``st.image`` of each 1400-px
screenshot, as the overview drew them before, against its cached 480-px JPEG thumbnail
(``PageInfo.thumbnail``), and the bytes a visitor downloads either way.

Each is given as wall-clock time and as this process's CPU time (all its threads). The
machines are shared: with a load average above the core count, wall-clock time grows while
CPU time stays close to what an idle machine would take; the load average is printed too.

``--quick`` times the fragment at every setting but only 3 steps after 20 steps of history
(25 after a full chart window by default), and AppTest at the defaults only, one click after
the warming one (8 by default); the other settings' AppTest columns then read ``nan``. It
leaves out the Gradients page's training parts (``--quick --gradients`` times them) and the
Transformers page (``--quick --transformers`` times it with a tiny warm-up).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from dataclasses import replace

import streamlit as st

from benchmarks import bare_streamlit
from normcore.lab import limits
from normcore.lab.experiments import live
from normcore.lab.settings import DEFAULTS, to_query
from normcore.lab.viz import live_charts as charts


SETTINGS = {
    "defaults (32×4×8×8, BatchNorm)": DEFAULTS,
    "caps (512×64×8×8 = MAX_ELEMENTS, BatchNorm)": replace(DEFAULTS, batch_size=512, channels=64, spatial=8),
    "caps (512×64×8×8, GroupNorm G=32)": replace(DEFAULTS, norm="group", batch_size=512, channels=64, spatial=8, num_groups=32),
}


def fragment_step(stream: live.LiveStream) -> None:
    """What the page's live fragment does on a Step click, through the same lab calls
    (stream.step, readouts, live_charts.stream_charts), drawn in bare mode."""
    stream.step()
    live.readouts(stream)
    for spec in charts.stream_charts(stream):
        st.vega_lite_chart(spec, width="stretch")


def timed(action) -> tuple[float, float]:
    """(wall, cpu) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def medians(samples) -> tuple[float, float]:
    """Median (wall, cpu) in milliseconds."""
    return tuple(statistics.median(column) * 1e3 for column in zip(*samples))


def time_fragment(settings, repeats: int, warm_steps: int) -> tuple[float, float]:
    # A full chart window of history, as after a while of Play. Filled with 2-sample batches
    # (fast even at the caps); the batch size then changes without restarting the stream.
    stream = live.LiveStream(replace(settings, batch_size=2))
    stream.step(warm_steps)
    assert stream.update(settings, stream.options) is None
    return medians([timed(lambda: fragment_step(stream)) for _ in range(repeats)])


def time_apptest(settings, repeats: int) -> tuple[float, float]:
    from tests.apptest_pages import open_page

    at = open_page("pages/live_statistics.py", timeout=120, **to_query(settings))  # fills the caches (one batch, histograms)
    times = []
    for _ in range(repeats + 1):
        times.append(timed(lambda: at.button(key="live_step").click().run()))
        if at.exception:
            raise RuntimeError(at.exception[0].message)
    return medians(times[1:])  # the first click also warms Streamlit's own caches


GRADIENTS = "pages/gradients.py"
GRADIENT_SETTINGS = {"defaults (worked example, BatchNorm)": {},
                     "cap (4×4×2×2 = 64 values, GroupNorm G=2)": dict(g_input="random", g_n=4, g_c=4, g_h=2, g_w=2,
                                                                       g_norm="group", g_groups=2)}
FIRST_RENDER_TARGET, RERUN_TARGET = 2.0, 0.3  # seconds
GRADIENT_PARTS = ("3 · Gradient flow in depth", "4 · The landscape")  # tabs that train: their defaults
PART_TARGET = 6.0  # seconds, a training part's first render


def time_gradients(query: dict, reruns: int) -> tuple[float, float]:
    """(first render, median cached rerun) wall seconds of the Gradients page, caches cleared first."""
    from tests.apptest_pages import open_app

    st.cache_data.clear()
    at = open_app(timeout=120, **query)
    at.switch_page(GRADIENTS)
    first, _ = timed(at.run)
    if at.exception or at.error:
        raise RuntimeError((at.exception or at.error)[0].value if at.error else at.exception[0].message)
    reruns_s = [timed(at.run)[0] for _ in range(reruns)]
    return first, statistics.median(reruns_s)


def print_gradients(reruns: int) -> None:
    print(f"Gradients page, AppTest (targets: first render ≤ {FIRST_RENDER_TARGET:g} s, cached rerun "
          f"≤ {RERUN_TARGET * 1e3:.0f} ms), load average {os.getloadavg()[0]:.1f}")
    for label, query in GRADIENT_SETTINGS.items():
        first, rerun = time_gradients(query, reruns)
        verdict = "within" if first <= FIRST_RENDER_TARGET and rerun <= RERUN_TARGET else "OVER"
        print(f"  {label:44s} first render {first * 1e3:7.0f} ms   cached rerun {rerun * 1e3:6.0f} ms   {verdict} targets")


def time_gradient_part(tab: str, reruns: int) -> tuple[float, float, float]:
    """(first render wall, its CPU, median cached rerun wall) seconds of one Gradients tab at its
    defaults. The training runs on one thread, so on a quiet machine its wall time is its CPU time."""
    from tests.apptest_pages import open_page

    at = open_page(GRADIENTS, timeout=120)  # parts 1–2 rendered (and cached) first
    st.cache_data.clear()
    at.session_state["gradient_part"] = tab
    first, cpu = timed(at.run)
    if at.exception or at.error:
        raise RuntimeError((at.exception or at.error)[0].value if at.error else at.exception[0].message)
    reruns_s = [timed(at.run)[0] for _ in range(reruns)]
    return first, cpu, statistics.median(reruns_s)


def print_gradient_parts(reruns: int) -> None:
    print(f"Gradients page, training parts (targets: first render ≤ {PART_TARGET:g} s, cached rerun "
          f"≤ {RERUN_TARGET * 1e3:.0f} ms), load average {os.getloadavg()[0]:.1f}")
    for tab in GRADIENT_PARTS:
        first, cpu, rerun = time_gradient_part(tab, reruns)
        verdict = "within" if first <= PART_TARGET and rerun <= RERUN_TARGET else "OVER"
        print(f"  {tab:44s} first render {first * 1e3:7.0f} ms (cpu {cpu * 1e3:6.0f} ms)   cached rerun "
              f"{rerun * 1e3:6.0f} ms   {verdict} targets")


def print_overview_cards(repeats: int) -> None:
    from pages.shared import navigation

    shown = [p for p in navigation.PAGES if p.screenshot.exists()]
    navigation._thumbnail.cache_clear()
    made, _ = timed(lambda: [p.thumbnail() for p in shown])
    samples = [(timed(lambda: [st.image(str(p.screenshot), width="stretch") for p in shown]),
                timed(lambda: [st.image(p.thumbnail(), width="stretch") for p in shown])) for _ in range(repeats)]
    full, small = medians([s[0] for s in samples]), medians([s[1] for s in samples])
    size_full = sum(p.screenshot.stat().st_size for p in shown)
    size_small = sum(len(p.thumbnail()) for p in shown)
    print(f"Overview, {len(shown)} cards' pictures per run (median of {repeats}): screenshots {full[0]:.0f} ms, "
          f"thumbnails {small[0]:.1f} ms ({full[0] / small[0]:.0f}x less; made once per server in {made * 1e3:.0f} ms); "
          f"{size_full / 1e6:.2f} MB -> {size_small / 1e3:.0f} KB per visit")


TRANSFORMERS = "pages/transformers.py"
TRANSFORMER_TARGETS = {"first view (depth 12, 3 placements, 1 seed)": 3.0, "depth sweep and init charts": 10.0,
                       "warm-up comparison (4 runs, default)": 25.0}  # seconds; a cached rerun: RERUN_TARGET


def transformer_views(reruns: int, warmup_query: dict) -> list[tuple[str, float, float, float]]:
    """(view, wall s, CPU s, median cached rerun wall s) of the Transformers page in AppTest, every
    cache cleared first: the first view as the page opens, the depth sweep's button, the warm-up's."""
    from normcore.lab.experiments.transformers import warmup
    from pages.shared import redraw
    from tests.apptest_pages import open_app

    st.cache_data.clear()
    st.cache_resource.clear()  # the finished comparisons (CachedRun)
    warmup.FINISHED_RUNS._items.clear()  # the finished runs (the lab's)
    at = open_app(timeout=300)
    at.switch_page(TRANSFORMERS)
    out = []

    def view(label: str, action) -> None:
        wall, cpu = timed(action)
        if at.exception or at.error:
            raise RuntimeError((at.exception or at.error)[0].value if at.error else at.exception[0].message)
        out.append((label, wall, cpu, statistics.median(timed(at.run)[0] for _ in range(reruns))))

    view("first view (depth 12, 3 placements, 1 seed)", at.run)
    view("depth sweep and init charts", next(b for b in at.main.button if "depth sweep" in b.label).click().run)
    draws, draw = [0], redraw.LiveView.draw
    redraw.LiveView.draw = lambda self, live: (draws.__setitem__(0, draws[0] + 1), draw(self, live))[1]
    try:
        at.session_state["transformers_tab"] = "🔥 Warm-up"
        for name, value in warmup_query.items():
            at.query_params[name] = value
        at.run()
        view(f"warm-up comparison (4 runs, {'default' if not warmup_query else 'tiny'})",
             next(b for b in at.main.button if "four runs" in b.label).click().run)
    finally:
        redraw.LiveView.draw = draw
    label, *times = out[-1]
    out[-1] = (f"{label}, {draws[0] - 1 - reruns} live redraws", *times)  # less the final state's and the reruns'
    return out


def print_transformers(reruns: int, quick: bool) -> None:
    print(f"Transformers page, AppTest, caches cleared (targets: cached rerun ≤ {RERUN_TARGET * 1e3:.0f} ms), "
          f"load average {os.getloadavg()[0]:.1f}")
    tiny = dict(tw_depth="1", tw_steps="20", tw_width="16", tw_context="8", tw_warmup="5") if quick else {}
    for label, wall, cpu, rerun in transformer_views(reruns, tiny):
        target = next((t for name, t in TRANSFORMER_TARGETS.items() if label.startswith(name.split(",")[0])), math.inf)
        verdict = "within" if wall <= target and rerun <= RERUN_TARGET else "OVER"
        print(f"  {label:58s} {wall:6.1f} s (cpu {cpu:5.1f} s, target {target:g} s)   cached rerun "
              f"{rerun * 1e3:5.0f} ms   {verdict} targets")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, short history (a smoke test)")
    parser.add_argument("--gradients", action="store_true", help="only the Gradients page (all its parts)")
    parser.add_argument("--transformers", action="store_true", help="only the Transformers page")
    args = parser.parse_args()
    if args.transformers:
        print_transformers(3 if args.quick else 10, args.quick)
        return
    if args.gradients:
        print_gradients(3 if args.quick else 10)
        print_gradient_parts(3 if args.quick else 10)
        return
    bare_streamlit.quiet()  # fragment_step uses Streamlit in bare mode
    repeats = 3 if args.quick else 25
    print(f"Live statistics, server-side time of one Step (median of {repeats}), load average {os.getloadavg()[0]:.1f}")
    print(f"{'':48s} {'fragment (ms)':>20s} {'AppTest rerun (ms)':>20s}")
    print(f"{'setting':48s} {'wall':>10s}{'cpu':>10s} {'wall':>10s}{'cpu':>10s}")
    for label, s in SETTINGS.items():
        assert s.num_elements <= limits.MAX_ELEMENTS
        fragment = time_fragment(s, repeats, warm_steps=20 if args.quick else live.CHART_WINDOW)
        if args.quick and label != next(iter(SETTINGS)):
            apptest = (math.nan, math.nan)
        else:
            apptest = time_apptest(s, 1 if args.quick else repeats // 3)
        print(f"{label:48s} {fragment[0]:10.1f}{fragment[1]:10.1f} {apptest[0]:10.1f}{apptest[1]:10.1f}")
    print_overview_cards(3 if args.quick else 15)
    print_gradients(3 if args.quick else 10)
    if not args.quick:  # ~15 s of training: tests/test_page_gradients.py opens those tabs already
        print_gradient_parts(10)
        print_transformers(10, quick=False)  # ~40 s of CPU: `--quick --transformers` times it small
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
