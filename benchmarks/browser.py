"""Latency a visitor feels, in a real browser: each page's cold first render, Step, a sidebar
slider, a tab switch and one control of each page's own, against a minimal Streamlit page.

    python -m benchmarks.browser                          # 3 rounds, this checkout only
    python -m benchmarks.browser --repo /work/wt-before   # ... and another checkout, alternately
    python -m benchmarks.browser --quick                  # a smoke test (Live statistics: cold, Step, slider)

Each page gets a fresh ``streamlit run`` (tests/e2e/harness.py: a free loopback port, waited
for until healthy) and a fresh headless Chromium context, so its first render is the first
visit on a server that is up but has served nothing. Then its interactions run on that tab,
each timed *inside the browser* (benchmarks/latency_probe.js): from the key or pointer press
to the first frame after the app is idle (script state "notRunning", the status widget
detached). The probe also counts the websocket messages the server sent (one per element
or delta), their bytes, and the Vega charts the browser (re)drew.

The baseline (benchmarks/browser_baseline_page.py: one chart, the same kinds of control) is
measured the same way in every round, so each figure is also given as its ratio to the
baseline's, which the machine's load moves much less than the times. With ``--repo``,
each round measures that checkout and this one, in alternating order; medians over rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.e2e import harness as H
from tests.e2e import plans as P

PROBE = (Path(__file__).parent / "latency_probe.js").read_text()
BASELINE_SCRIPT = "benchmarks/browser_baseline_page.py"
TIMEOUT_MS = 180_000  # a cold first render
INTERACTION_TIMEOUT_MS = 60_000
SETTLE_MS = 400


@dataclass(frozen=True)
class Interaction:
    name: str  # the row of the table: the same kind on the baseline and on a page
    act: object  # (playwright page) -> None: presses something that reruns the app


def press(label: str, key: str = "ArrowRight"):
    def act(page):
        thumb = P.slider(page, label).first
        thumb.wait_for(state="visible", timeout=30_000)
        before = thumb.input_value()
        way = "ArrowLeft" if before == thumb.get_attribute("max") else key
        for _ in range(3):  # a press can land before the thumb takes focus (tests/e2e/plans.py)
            thumb.focus()
            thumb.press(way)
            for _ in range(10):
                if thumb.input_value() != before:
                    return
                page.wait_for_timeout(100)
            page.evaluate("window.__latency.arm()")  # time the press that moved it
        raise RuntimeError(f"slider {label!r} did not move from {before}")
    return act


def click(label: str, role: str = "button"):
    def act(page):
        main = page.locator(P.MAIN)
        target = P.button(main, label) if role == "button" else main.get_by_role(role, name=label)
        target.first.click()
    return act


def toggle(label: str):
    def act(page):
        page.locator(P.MAIN).get_by_text(label, exact=False).first.click()
    return act


# Per page (url_path): the interactions timed after its cold first render, in this order.
STEP, SLIDER, OWN = "Step", "sidebar slider (batch size)", "page's own control"
TAB_FIRST, TAB = "tab switch (first open)", "tab switch (back)"
INTERACTIONS = {
    "baseline": [Interaction(STEP, click("Step")), Interaction(SLIDER, press("Batch size N")),
                 Interaction(TAB_FIRST, click("Two", "tab")), Interaction(TAB, click("One", "tab")),
                 Interaction(OWN, press("Points"))],
    "overview": [],
    "live_statistics": [Interaction(STEP, click("Step")), Interaction(SLIDER, press("Batch size N")),
                        Interaction(OWN, toggle("Add a quiet channel"))],
    # The first open computes that tab's experiment; back to the first tab, its result is cached.
    "train_vs_eval": [Interaction(TAB_FIRST, click("Which norms", "tab")), Interaction(TAB, click("Warm-up", "tab")),
                      Interaction(OWN, press("Stream mean shift"))],
    "training": [Interaction(OWN, press("Epochs", "ArrowLeft"))],
    "gradients": [Interaction(OWN, press("γ (every channel)"))],
    "deploy_port": [Interaction(OWN, press("Batch the train-mode fold sees"))],
    "data_parallel": [Interaction(OWN, press("Seed"))],
}
QUICK_PAGES = ("baseline", "live_statistics")


@dataclass
class Timing:
    seconds: float
    messages: int  # websocket messages from the server during the interaction
    kilobytes: float
    charts_drawn: int  # Vega views (re)drawn
    server_cpu: float = 0.0  # seconds of CPU the server's processes spent meanwhile (its script, mostly)
    browser_busy: float = 0.0  # seconds the page's main thread ran tasks (Chromium's TaskDuration, wall time)


class Meter:
    """So far: the CPU seconds of the server's process tree, and the seconds the page's main thread ran tasks."""

    def __init__(self, server_pid: int, page):
        self.server = psutil.Process(server_pid)
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Performance.enable")

    def read(self) -> tuple[float, float]:
        server = 0.0
        for p in [self.server, *self.server.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                server += t.user + t.system
        metrics = {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        return server, metrics["TaskDuration"]


def settled(page) -> None:
    """Wait a little and, if another rerun followed (a callback's st.rerun), for it too; then
    until every chart is drawn and the page has stopped changing."""
    page.wait_for_timeout(SETTLE_MS)
    page.wait_for_function("() => window.__latency.idleAfter(-1) && window.__latency.still()",
                           timeout=TIMEOUT_MS, polling=50)


def measure(page, act, meter: Meter) -> Timing:
    """Time one interaction in the page's own clock, from the press to the first idle frame."""
    runs = page.evaluate("window.__latency.arm()")
    before = meter.read()
    act(page)
    page.wait_for_function("n => window.__latency.idleAfter(n)", arg=runs, timeout=INTERACTION_TIMEOUT_MS, polling=50)
    settled(page)
    return timing(page.evaluate("window.__latency.last()"), before, meter.read())


def timing(r: dict, before: tuple[float, float], after: tuple[float, float]) -> Timing:
    server, browser = (b - a for a, b in zip(before, after))
    return Timing(r["ms"] / 1000, r["messages"], r["bytes"] / 1024, r["charts"], server, browser)


def start_server(root: Path, name: str) -> H.StreamlitServer:
    """A fresh ``streamlit run`` of the app in ``root``, or of the baseline page, up and healthy."""
    script = BASELINE_SCRIPT if name == "baseline" else "app.py"
    return H.StreamlitServer(root=H.ROOT if name == "baseline" else root, script=script,
                             extra_args=("--logger.level", "error")).start()


def measure_page(browser, server: H.StreamlitServer, name: str, rows=None) -> dict[str, Timing]:
    """``name``'s cold first render on ``server`` (which has served nothing), then its
    interactions (those named in ``rows``, or all); the server is stopped at the end."""
    context = browser.new_context(viewport=H.VIEWPORT)
    try:
        context.add_init_script(PROBE)
        page = context.new_page()
        meter = Meter(server.pid, page)
        before = meter.read()
        path = "" if name in ("baseline", "overview") else name
        page.goto(server.url(path), wait_until="commit", timeout=TIMEOUT_MS)
        page.wait_for_function("() => window.__latency.idleAfter(0)", timeout=TIMEOUT_MS, polling=100)
        settled(page)
        out = {"cold first render": timing(page.evaluate("window.__latency.cold()"), before, meter.read())}
        for interaction in INTERACTIONS[name]:
            if rows is not None and interaction.name not in rows:
                continue
            try:
                out[interaction.name] = measure(page, interaction.act, meter)
            except Exception as error:
                raise RuntimeError(f"{name}: {interaction.name!r} did not finish: {error}") from error
        problems = [e.inner_text() for e in page.locator(H.EXCEPTION).all()]
        if problems:
            raise RuntimeError(f"{name}: the page shows an exception: {problems[0][:500]}")
        return out
    finally:
        context.close()
        server.stop()


# -- rounds and the table --------------------------------------------------------------------


def run_round(browser, checkouts: list[tuple[str, Path]], pages: tuple[str, ...], log, quick: bool = False) -> dict:
    """One round: the baseline, then every page of every checkout. {(label, page, row): Timing}.
    ``quick`` starts the next server while a page is measured (a smoke test, not a measurement)
    and times only Step and the slider."""
    jobs = [("baseline", H.ROOT, "baseline")] + [(label, root, page) for label, root in checkouts
                                                   for page in pages if page != "baseline"]
    rows = (STEP, SLIDER) if quick else None
    out = {}
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(start_server, H.ROOT, "baseline") if quick else None
        for k, (label, root, page) in enumerate(jobs):
            server = upcoming.result() if upcoming else start_server(root, page)
            upcoming = pool.submit(start_server, *jobs[k + 1][1:]) if quick and k + 1 < len(jobs) else None
            for name, t in measure_page(browser, server, page, rows).items():
                out[(label, page, name)] = t
            log(f"  {label} {page}: {fmt_row(out, label, page)}")
    return out


def fmt_row(results: dict, label: str, page: str) -> str:
    return ", ".join(f"{row} {t.seconds:.2f} s" for (lb, pg, row), t in results.items() if (lb, pg) == (label, page))


def median(rounds: list[dict], key, attribute: str = "seconds") -> float | None:
    values = [getattr(r[key], attribute) for r in rounds if key in r]
    return statistics.median(values) if values else None


def table(rounds: list[dict], labels: list[str], pages: tuple[str, ...]) -> list[str]:
    """One line per (page, interaction): the baseline's time, then each checkout's time and ratio."""
    head = f"{'page':<16} {'interaction':<28} {'baseline':>9}" + "".join(
        f" {label:>9} {'ratio':>6} {'msgs':>5} {'kB':>6} {'charts':>6} {'srvCPU':>6} {'brBusy':>6}" for label in labels)
    lines = [head, "-" * len(head)]
    for page in pages:
        if page == "baseline":
            continue
        rows = ["cold first render"] + [i.name for i in INTERACTIONS[page]
                                        if any(key[1:] == (page, i.name) for r in rounds for key in r)]
        for row in rows:
            base = median(rounds, ("baseline", "baseline", row))
            line = f"{page:<16} {row:<28} {base:>8.2f}s"
            for label in labels:
                key = (label, page, row)
                t = median(rounds, key)
                if t is None:
                    line += f" {'-':>9}" + " " * 41
                    continue
                line += (f" {t:>8.2f}s {t / base:>5.1f}x {median(rounds, key, 'messages'):>5.0f}"
                         f" {median(rounds, key, 'kilobytes'):>6.0f} {median(rounds, key, 'charts_drawn'):>6.0f}"
                         f" {median(rounds, key, 'server_cpu'):>6.2f} {median(rounds, key, 'browser_busy'):>6.2f}")
            lines.append(line)
    return lines


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repo", type=Path, help="another checkout (the commit before), measured alternately")
    parser.add_argument("--pages", nargs="+", choices=list(INTERACTIONS), help="only these pages")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 1 round, the baseline and Live statistics, "
                                                              "their cold render, Step and slider")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.pages = 1, args.pages or list(QUICK_PAGES)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    problem = H.browser_problem()
    if problem:
        print(f"no browser here: {problem}")
        return 1
    from playwright.sync_api import sync_playwright

    pages = tuple(args.pages or INTERACTIONS)
    checkouts = [("before", args.repo.resolve())] if args.repo else []
    checkouts.append(("this", H.ROOT))
    labels = [label for label, _ in checkouts]
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)", flush=True)
    rounds = []
    with sync_playwright() as p:
        browser = H.launch_chromium(p)
        try:
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}", flush=True)
                order = checkouts if r % 2 == 0 else checkouts[::-1]  # alternate which goes first
                rounds.append(run_round(browser, order, pages, lambda line: print(line, flush=True), args.quick))
        finally:
            browser.close()
    print(f"\nmedians over {len(rounds)} round(s); ratio = time / the baseline page's same interaction; "
          f"msgs, kB: websocket messages from the server; charts: Vega charts (re)drawn; "
          f"srvCPU: CPU seconds of the server's processes; brBusy: seconds the page's main thread ran tasks")
    print("\n".join(table(rounds, labels, pages)))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
