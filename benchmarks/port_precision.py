"""The Deploy & port page's Port and Precision tabs: first render and cached rerun (AppTest).

    python -m benchmarks.port_precision            # 10 cached reruns per setting
    python -m benchmarks.port_precision --quick    # a smoke test: 3 reruns, defaults only

Each tab is opened from a URL (``deploy_tab``), with Streamlit's caches cleared first: its
**first render** (target ≤ 3 s; the real-Keras button is not pressed) and the median of its
**cached reruns** (target ≤ 300 ms). Wall-clock and this process's CPU time (all threads) are
both given, and the load average: on a shared machine wall time grows with the load while CPU
time stays near what an idle machine takes.
"""

from __future__ import annotations

import argparse
import os
import statistics

import streamlit as st

from benchmarks.pages import timed
from normcore.lab import limits

PAGE = "pages/deploy_port.py"
PORT, PRECISION = "🔁 Port between frameworks", "🎯 Precision"
SETTINGS = {
    "Port, defaults (6 layers × 50 steps)": (PORT, {}),
    "Port, cap (24 layers × 50 steps, 48 eps blocks)": (PORT, dict(p_depth=limits.MAX_PORT_DEPTH, p_steps=50,
                                                                     p_ln_depth=limits.MAX_EPS_DEPTH)),
    "Precision, defaults (float32, offset sweep)": (PRECISION, {}),
    "Precision, cap (float16, 4 points per decade)": (PRECISION, dict(x_dtype="float16",
                                                                       x_points=limits.MAX_PRECISION_POINTS_PER_DECADE)),
}
FIRST_RENDER_TARGET, RERUN_TARGET = 3.0, 0.3  # seconds


def time_tab(tab: str, query: dict, reruns: int):
    """((first wall, first cpu), (median rerun wall, cpu)) of one tab, caches cleared first."""
    from tests.apptest_pages import open_app

    st.cache_data.clear()
    at = open_app(timeout=120, deploy_tab=tab, **query)
    at.switch_page(PAGE)
    first = timed(at.run)
    if at.exception or at.error:
        raise RuntimeError(at.error[0].value if at.error else at.exception[0].message)
    samples = [timed(at.run) for _ in range(reruns)]
    return first, tuple(statistics.median(column) for column in zip(*samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 reruns, the defaults only (a smoke test)")
    args = parser.parse_args()
    print(f"Deploy & port tabs, AppTest (targets: first render ≤ {FIRST_RENDER_TARGET:g} s, cached rerun "
          f"≤ {RERUN_TARGET * 1e3:.0f} ms), load average {os.getloadavg()[0]:.1f}")
    print(f"{'':50s} {'first render (ms)':>20s} {'cached rerun (ms)':>20s}")
    print(f"{'setting':50s} {'wall':>10s}{'cpu':>10s} {'wall':>10s}{'cpu':>10s}")
    for label, (tab, query) in SETTINGS.items():
        if args.quick and "defaults" not in label:
            continue
        (first, first_cpu), (rerun, rerun_cpu) = time_tab(tab, query, 3 if args.quick else 10)
        verdict = "within" if first <= FIRST_RENDER_TARGET and rerun <= RERUN_TARGET else "OVER"
        print(f"{label:50s} {first * 1e3:10.0f}{first_cpu * 1e3:10.0f} {rerun * 1e3:10.0f}{rerun_cpu * 1e3:10.0f}   "
              f"{verdict} targets")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
