"""Load test: many concurrent browser sessions against one `streamlit run app.py`.

    python -m benchmarks.load                       # 2 rounds of 10 sessions (about 4 minutes)
    python -m benchmarks.load --sessions 4 --steps 3 --rounds 1
    python -m benchmarks.load --quick               # 1 round of 2 sessions, 2 Steps (a smoke test)

Each session is its own headless Chromium context (its own Streamlit session and
websocket), all in one browser, driven concurrently with Playwright's async API. Every
session opens the live_statistics page, presses Step ``--steps`` times (all sessions
together), then opens the training page and uploads a tiny saved run configuration, which
the page trains at once (each session its own seed, so none is served from the cache).
A second round of sessions then does the same against the same server. Reported:

* errors: exceptions shown on a page, console errors, dialogs, timeouts (target 0);
* p50 / p95 of one Step rerun (click until the rerun is over) while all sessions run;
* the server's RSS: after a warm-up visit (baseline), its peak under load (per-session
  growth = (peak - baseline) / sessions, target <= 50 MB) and after every session of a
  round closed and the server dropped them. The allocator keeps some freed memory, so the
  test of "no growth after sessions close" is that round 2 ends where round 1 did.

Why browsers and not AppTest: AppTest runs a script in this process, so it measures neither
the server's memory nor its websocket handling; 10 browser contexts fit on 2 cores (the
pages are idle between clicks). The server keeps a disconnected session for
``server.disconnectedSessionTTL`` (120 s by default) in case it reconnects; this
benchmark sets it to ``--ttl`` seconds so that "after close" is measured in seconds.
Everything is bounded: loopback only, fixed counts, timeouts on every wait.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

import psutil

from normcore.lab.experiments.training import RunConfig
from tests.e2e import harness as H
from tests.e2e.plans import by_path, page_url

STEP_LABEL = "Step"
MB = 1024 * 1024


@dataclass
class SessionResult:
    step_seconds: list[float] = field(default_factory=list)
    training_seconds: float | None = None
    errors: list[str] = field(default_factory=list)


def cpu_seconds(processes) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def tree(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def browser_processes(server_pid: int) -> list[psutil.Process]:
    """This process's descendants other than the server: Playwright's driver and Chromium."""
    server = {p.pid for p in tree(server_pid)}
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in server]


def rss_mb(pid: int) -> float:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / MB


class RssSampler(threading.Thread):
    """Samples the server's RSS every ``interval`` seconds; ``peak`` is the largest seen."""

    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak, self._halt = pid, interval, 0.0, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self._halt.wait(self.interval)

    def stop(self) -> float:
        self._halt.set()
        self.join(timeout=5)
        return self.peak


# -- async versions of the harness' waits ----------------------------------------------------


async def wait_for_rerun(page, timeout_ms: float = 120_000, started_within_ms: float = 2_000) -> None:
    if started_within_ms:
        try:
            await page.wait_for_selector(H.APP_BUSY, timeout=started_within_ms)
        except Exception:  # playwright's TimeoutError: it already ran
            pass
    await page.wait_for_selector(H.APP_IDLE, timeout=timeout_ms)
    await page.wait_for_selector(H.STATUS_WIDGET, state="detached", timeout=timeout_ms)


async def goto(page, url: str) -> None:
    await page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    await page.wait_for_selector(f'{H.APP}[data-test-connection-state="CONNECTED"]', timeout=120_000)
    await wait_for_rerun(page, started_within_ms=0)


async def page_problems(page, console: list[str]) -> list[str]:
    found = [f"exception: {t}" for t in await page.locator(H.EXCEPTION).all_inner_texts()]
    found += [f"dialog: {t}" for t in await page.locator('[data-testid="stDialog"]').all_inner_texts()]
    return found + [f"console: {c}" for c in console]


def button(page, label: str):
    return page.locator('[data-testid="stMain"]').get_by_role("button", name=re.compile(rf"^(\W+\s)?{re.escape(label)}$"))


async def one_session(browser, server: H.StreamlitServer, steps: int, seed: int, loaded: list,
                      start: asyncio.Event, result: SessionResult) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    console: list[str] = []
    page = await context.new_page()
    page.on("console", lambda m: m.type == "error" and not H.benign_console_error(m) and console.append(m.text))
    page.on("pageerror", lambda e: console.append(f"uncaught: {e}"))
    try:
        await goto(page, page_url(server, by_path("live_statistics")))
        loaded.append(True)
        await start.wait()  # every session is loaded: the Steps run under the full load
        for _ in range(steps):
            t0 = time.perf_counter()
            await button(page, STEP_LABEL).click(timeout=60_000)
            await wait_for_rerun(page)
            result.step_seconds.append(time.perf_counter() - t0)
        result.errors += await page_problems(page, console)
        # A short training run: upload a tiny saved configuration, which the page runs at once.
        # Each session its own seed, so each trains (the page caches finished runs by config).
        await goto(page, page_url(server, by_path("training")))
        await page.locator('[data-testid="stMain"]').get_by_text("Load a saved run configuration").click()
        tiny = RunConfig(epochs=1, width=16, depth=1, norms=("batch", "group"), devices=("cpu",), seed=seed)
        t0 = time.perf_counter()
        await page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
            files=[{"name": "tiny.json", "mimeType": "application/json", "buffer": tiny.to_json().encode()}])
        # The upload goes over HTTP before its rerun starts: wait for what the run leaves behind.
        await page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]').first.wait_for(timeout=300_000)
        await wait_for_rerun(page, timeout_ms=300_000, started_within_ms=0)
        result.training_seconds = time.perf_counter() - t0
        result.errors += await page_problems(page, console)
    except Exception as exc:  # a timeout or a missing button is an error of this session
        result.errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        await context.close()


async def drive(server: H.StreamlitServer, sessions: int, steps: int, first_seed: int) -> tuple[list[SessionResult], float]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(H.CHROMIUM), args=H.CHROMIUM_ARGS, headless=True)
        loaded, start = [], asyncio.Event()
        results = [SessionResult() for _ in range(sessions)]
        tasks = [asyncio.create_task(one_session(browser, server, steps, first_seed + i, loaded, start, r))
                 for i, r in enumerate(results)]
        # Start the Steps together once every session has its page (or failed), at most 180 s.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(loaded) + sum(t.done() for t in tasks) < sessions:
            await asyncio.sleep(0.2)
        start.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=900)
        browser_cpu = cpu_seconds(browser_processes(server.pid))  # before Chromium exits
        await browser.close()
    return results, browser_cpu


def warm_up(server: H.StreamlitServer) -> None:
    """One session, one after the other: every page, a Step and a tiny training run, so the
    baseline RSS holds the one-time costs (imports, data sets, torch's first training)."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.plans import ALL_PAGES, MAIN, button

    with sync_playwright() as p:
        browser = H.launch_chromium(p)
        context = browser.new_context()
        app = H.AppPage.open(context)
        for info in ALL_PAGES:
            app.goto(page_url(server, info), timeout_ms=120_000)
        app.goto(page_url(server, by_path("live_statistics")))
        app.click(button(app.page.locator(MAIN), STEP_LABEL))
        app.goto(page_url(server, by_path("training")))
        app.page.locator(MAIN).get_by_text("Load a saved run configuration").click()
        tiny = RunConfig(epochs=1, width=16, depth=1, norms=("batch", "group"), devices=("cpu",), seed=10_000)
        app.page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
            files=[{"name": "tiny.json", "mimeType": "application/json", "buffer": tiny.to_json().encode()}])
        app.page.locator(f'{MAIN} [data-testid="stDataFrame"]').first.wait_for(timeout=300_000)
        context.close()
        browser.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--steps", type=int, default=5, help="Step presses per session")
    parser.add_argument("--rounds", type=int, default=2, help="batches of sessions, one after the other")
    parser.add_argument("--ttl", type=int, default=5, help="server.disconnectedSessionTTL (s) for this run")
    parser.add_argument("--malloc-arena-max", type=int, help="MALLOC_ARENA_MAX for the server (glibc: fewer per-thread arenas)")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 sessions, 2 Steps each, TTL 1 s (a smoke test)")
    args = parser.parse_args(argv)
    settle = 10  # seconds past the TTL before "after close" is measured
    if args.quick:
        args.sessions, args.steps, args.rounds, args.ttl, settle = 2, 2, 1, 1, 2
    if not (1 <= args.sessions <= 50 and 1 <= args.steps <= 50 and 1 <= args.rounds <= 5):
        parser.error("--sessions and --steps must be 1..50, --rounds 1..5")
    problem = H.browser_problem()
    if problem:
        print(f"cannot run the load test: {problem}", file=sys.stderr)
        return 2

    rounds = []
    env = {"MALLOC_ARENA_MAX": str(args.malloc_arena_max)} if args.malloc_arena_max else {}
    with H.StreamlitServer(extra_args=("--server.disconnectedSessionTTL", str(args.ttl)), env=env) as server:
        warm_up(server)
        time.sleep(args.ttl + (1 if args.quick else 3))  # the warm-up session is dropped too
        baseline = rss_mb(server.pid)
        for r in range(args.rounds):
            sampler = RssSampler(server.pid)
            sampler.start()
            started, cpu_before = time.monotonic(), cpu_seconds(tree(server.pid))
            results, browser_cpu = asyncio.run(drive(server, args.sessions, args.steps, first_seed=r * args.sessions))
            wall, server_cpu = time.monotonic() - started, cpu_seconds(tree(server.pid)) - cpu_before
            peak = sampler.stop()
            time.sleep(args.ttl + settle)  # the server drops the closed sessions after the TTL
            rounds.append(dict(results=results, wall=wall, server_cpu=server_cpu, browser_cpu=browser_cpu,
                               peak=peak, after=rss_mb(server.pid), load=os.getloadavg()))
        log_tail = server.log_tail(2000)

    print(f"load test: {args.rounds} round(s) of {args.sessions} concurrent browser sessions, each {args.steps} Steps "
          f"on live_statistics + 1 tiny training run (uploaded config); one server, {psutil.cpu_count()} CPUs")
    errors = []
    print(f"server RSS baseline (after one warm-up session: every page, a Step, a tiny run): {baseline:.0f} MB"
          + (f"; server run with MALLOC_ARENA_MAX={args.malloc_arena_max}" if env else ""))
    for i, r in enumerate(rounds, 1):
        steps = [s for x in r["results"] for s in x.step_seconds]
        trainings = [x.training_seconds for x in r["results"] if x.training_seconds is not None]
        errors += [e for x in r["results"] for e in x.errors]
        print(f"round {i}: wall {r['wall']:.0f} s; CPU server {r['server_cpu']:.0f} s, browsers {r['browser_cpu']:.0f} s "
              f"(of {r['wall'] * psutil.cpu_count():.0f} CPU-s; load average {r['load'][0]:.1f}, other work on the "
              f"machine slows every figure)")
        if steps:
            print(f"  Step rerun: n={len(steps)}  p50 {statistics.median(steps):.2f} s  p95 {percentile(steps, 0.95):.2f} s  "
                  f"max {max(steps):.2f} s")
        if trainings:
            print(f"  tiny training run: n={len(trainings)}  p50 {statistics.median(trainings):.2f} s  max {max(trainings):.2f} s")
        print(f"  server RSS: peak {r['peak']:.0f} MB (+{(r['peak'] - baseline) / args.sessions:.1f} MB per session over "
              f"the baseline); {args.ttl + settle} s after the sessions closed {r['after']:.0f} MB "
              f"({r['after'] - baseline:+.0f} MB vs baseline)")
    print(f"errors: {len(errors)}")
    for e in errors[:20]:
        print(f"  - {e}")
    if errors:
        print("server log tail:\n" + log_tail)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
