"""Folding BatchNorm into the digits CNN: parity, the inference speed-up, and the Fold tab's times.

    python -m benchmarks.fold            # default repeats
    python -m benchmarks.fold --quick    # a smoke test: the default CNN only, no AppTest

* **parity**: max |Δ| of the 450 test digits' logits, normcore's fold against the unfolded model
  in eval, and torch.nn.utils.fusion's fold against the same, at each setting;
* **speed-up**: the unfolded model's time over the folded one's, the median of per-pass ratios,
  both versions timed alternately in this one process on one CPU thread (the baseline, the
  unfolded model, is measured in the same run as the folded one);
* **the tab** (AppTest, the whole page script): its first render with Streamlit's caches
  cleared (target ≤ 3 s) and a cached rerun (≤ 300 ms).

The machines are shared: the load average is printed, since time on a busy machine grows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import streamlit as st

from normcore.lab.experiments.deploy import fold as F
from normcore.lab.experiments.deploy.fold_options import FoldOptions

SETTINGS = {
    "trained, 16 channels × 2 blocks (defaults)": FoldOptions(),
    "trained, 32 channels × 4 blocks (the caps)": FoldOptions(width=32, depth=4),
    "calibrated, 16 channels × 2 blocks": FoldOptions(source="calibrated"),
}
FIRST_RENDER_TARGET, RERUN_TARGET = 3.0, 0.3  # seconds
PAGE = "pages/deploy_port.py"


def fold_figures(o: FoldOptions) -> str:
    r = F.run(o, F.build_model(o))
    parity = r.parity.set_index("comparison").max_abs_delta
    t = r.timing
    return (f"max |Δ| normcore {parity.iloc[0]:.2g}, torch {parity.iloc[1]:.2g}, normcore vs torch {parity.iloc[2]:.2g}; "
            f"fold speed-up {t.speedup:.2f}× ({t.unfolded_ms:.2f} → {t.folded_ms:.2f} ms per pass, median of {t.passes})")


def time_tab(reruns: int) -> tuple[float, float]:
    """(first render, median cached rerun) wall seconds of the Fold tab, caches cleared first."""
    from tests.apptest_pages import open_app

    st.cache_data.clear()
    st.cache_resource.clear()
    at = open_app(timeout=120)
    at.switch_page(PAGE)
    start = time.perf_counter()
    at.run()
    first = time.perf_counter() - start
    if at.exception or at.error:
        raise RuntimeError(at.error[0].value if at.error else at.exception[0].message)
    times = []
    for _ in range(reruns):
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the default CNN only, no AppTest (a smoke test)")
    args = parser.parse_args()
    print(f"Fold BatchNorm into the digits CNN, load average {os.getloadavg()[0]:.1f}")
    for label, o in list(SETTINGS.items())[: 1 if args.quick else None]:
        print(f"  {label:44s} {fold_figures(o)}")
    if args.quick:  # the tab itself is run by tests/test_page_deploy_fold.py
        return print("Fold tab, AppTest: not timed with --quick")
    first, rerun = time_tab(10)
    verdict = "within" if first <= FIRST_RENDER_TARGET and rerun <= RERUN_TARGET else "OVER"
    print(f"Fold tab, AppTest: first render {first * 1e3:.0f} ms (target ≤ {FIRST_RENDER_TARGET:g} s), cached rerun "
          f"{rerun * 1e3:.0f} ms (≤ {RERUN_TARGET * 1e3:.0f} ms): {verdict} targets")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
