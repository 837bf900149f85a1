"""Every benchmark runs in its quick mode, so none of them can rot unnoticed.

Speed is never asserted here (these machines are shared and noisy): a benchmark passes when
it exits 0 and prints its ratios. The quick modes together take well under a minute.
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
          "load": "errors: 0"}


def test_every_benchmark_is_listed():
    assert set(BENCHMARKS) == set(PRINTS), "a new benchmark needs a line in PRINTS (and a --quick mode)"


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_in_quick_mode(name):
    if name == "load":
        from tests.e2e import harness

        if (problem := harness.browser_problem()) is not None:
            if os.environ.get("CI"):
                pytest.fail(f"the load benchmark needs a browser under CI: {problem}")
            pytest.skip(problem)
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert PRINTS[name] in done.stdout, done.stdout[-3000:]
