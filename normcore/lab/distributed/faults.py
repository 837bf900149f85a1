"""Faults injected into a worker on purpose, for the tests of what a run does when one breaks.

Set the environment variable ``NORMCORE_DP_FAULT`` to ``KIND@RANK:STEP`` before a run
(spawned workers inherit the environment): worker RANK (``*``: every worker) then, at its
training step STEP (counted from 1 over the whole run), says so on stderr and does KIND:

* ``raise``: raises ``RuntimeError`` (a bug in the worker);
* ``kill``: sends itself SIGKILL (the OOM killer, a user's ``kill -9``);
* ``hang``: sleeps without end (a deadlock; the others wait in a collective until its timeout).

Not a control of any page: it exists for the tests only.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass

VARIABLE = "NORMCORE_DP_FAULT"
KINDS = ("raise", "kill", "hang")


@dataclass(frozen=True)
class Fault:
    kind: str
    rank: int  # -1: every worker
    step: int

    def to_text(self) -> str:
        return f"{self.kind}@{'*' if self.rank < 0 else self.rank}:{self.step}"


def parse(text: str | None) -> Fault | None:
    """``"raise@1:3"`` -> Fault("raise", 1, 3); empty -> None; anything else is a ValueError."""
    if not text:
        return None
    kind, _, where = text.partition("@")
    rank, _, step = where.partition(":")
    if kind not in KINDS or not (rank.isdigit() or rank == "*") or not step.isdigit():
        raise ValueError(f"{VARIABLE}={text!r}: expected KIND@RANK:STEP with KIND in {KINDS}, RANK a number or *.")
    return Fault(kind, -1 if rank == "*" else int(rank), int(step))


def from_environment() -> Fault | None:
    return parse(os.environ.get(VARIABLE))


def inject(fault: Fault | None, rank: int, step: int) -> None:
    """Do ``fault`` if it is this worker's, at this step."""
    if fault is None or fault.rank not in (rank, -1) or fault.step != step:
        return
    sys.stderr.write(f"injected fault: worker {rank} does {fault.kind} at step {step}\n")  # one write: one line
    sys.stderr.flush()
    if fault.kind == "raise":
        raise RuntimeError(f"injected fault: worker {rank} raised at step {step}")
    if fault.kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    while True:  # hang
        time.sleep(1.0)
