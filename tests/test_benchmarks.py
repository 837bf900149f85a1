"""Every benchmark runs in its quick mode, so none of them can rot unnoticed.

Speed is never asserted here (these machines are shared and noisy): a benchmark passes when
it exits 0 and prints the line that carries its result. The browser benchmarks (load,
browser) mostly wait on their browsers and servers, so they start first, in the background,
while the others run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py")
                    if p.stem != "__init__" and "def main(" in p.read_text())
# What each one's output must contain: the line that carries its result.
PRINTS = {"norms": "ratio", "pages": "defaults (", "train_eval": "slowest cached rerun", "training_overhead": "speed-up",
          "load": "errors: 0", "distributed": "SyncBN overhead", "fold": "fold speed-up",
          "port_precision": "Precision, defaults", "transformers": "normcore / torch ratio",
          "browser": "ratio = time / the baseline page's"}
IN_BACKGROUND = ("load", "browser")  # they need a browser


def start(name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", f"benchmarks.{name}", "--quick"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"})


def finish(name: str, process: subprocess.Popen) -> None:
    try:
        out, _ = process.communicate(timeout=180)
    finally:
        process.kill()
    assert process.returncode == 0, out[-4000:]
    assert PRINTS[name] in out, out[-4000:]


@pytest.fixture(scope="module")
def background():
    """The browser benchmarks, started once for the module ({} and the reason when no browser is here)."""
    from tests.e2e import harness

    problem = harness.browser_problem()
    processes = {} if problem else {name: start(name) for name in IN_BACKGROUND}
    yield processes, problem
    for process in processes.values():
        process.kill()


def test_every_benchmark_is_listed():
    assert set(BENCHMARKS) == set(PRINTS), "a new benchmark needs a line in PRINTS (and a --quick mode)"


@pytest.mark.parametrize("name", [b for b in BENCHMARKS if b not in IN_BACKGROUND] + list(IN_BACKGROUND))
def test_benchmark_runs_in_quick_mode(name, background):
    if name not in IN_BACKGROUND:
        return finish(name, start(name))
    processes, problem = background
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"the {name} benchmark needs a browser under CI: {problem}")
        pytest.skip(problem)
    finish(name, processes[name])
