"""A group of worker processes on this machine, joined in one torch.distributed process group.

:class:`WorkerPool` spawns W processes (``spawn`` start method: a fresh interpreter each, as
CUDA requires), each of which joins the group through a ``file://`` rendezvous in its own
temporary directory (no port is picked in advance, so nothing races for it), sets its
thread count, and then runs tasks until told to stop. A task is a picklable module-level
function ``fn(worker, arg)`` run on every rank at once, with one ``arg`` per rank; it gets a
:class:`Worker` (rank, world size, device, ``report``) and returns plain values (numbers,
lists, numpy arrays: never tensors). One pool serves many tasks: the tests keep one per
module, since spawning costs seconds.

The pool never leaves a process behind: :meth:`WorkerPool.close` (also on ``with`` exit, on an
error while starting, on a timeout, and when ``should_stop`` says so) asks the workers to
leave, then terminates and finally kills whatever is still alive.
"""

from __future__ import annotations

import datetime
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

POLL_S = 0.05
PARENT_POLL_S = 0.5  # how often a worker checks that its parent is alive
PARENT_GONE_EXIT = 3  # a worker's exit code when it left because its parent was gone


class WorkerError(RuntimeError):
    """A task raised in one or more workers; the message holds their tracebacks."""


class RunStopped(RuntimeError):
    """``should_stop`` returned True: the workers were terminated."""


@dataclass(frozen=True)
class Worker:
    """What a task knows about the process it runs in."""

    rank: int
    world_size: int
    local_rank: int
    device: str  # "cpu" or "cuda:<local_rank>"
    messages: Any = None  # the pool's queue; None under torchrun (reports are printed instead)

    def report(self, payload: dict) -> None:
        """Send plain values to the parent's ``on_message`` (printed by rank 0 under torchrun)."""
        if self.messages is not None:
            self.messages.put((None, "message", self.rank, payload))
        elif self.rank == 0:
            print(payload, flush=True)


def _next_task(tasks, parent: int):
    """The next task; ``None`` (leave) when told so or when the parent process is gone."""
    while os.getppid() == parent:
        try:
            return tasks.get(timeout=1.0)
        except queue.Empty:
            continue
    return None


def _watch_parent(parent: int, every_s: float = PARENT_POLL_S) -> None:
    """Runs on a daemon thread in each worker: leave at once when the parent is gone (killed,
    even with SIGKILL, which runs no clean-up in the parent: the worker is then re-parented)."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(PARENT_GONE_EXIT)


def _serve(rank, world_size, init_method, backend, timeout_s, threads, device, tasks, results, parent):
    """A worker's life: join the group, run tasks until ``None`` arrives, leave the group."""
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()
    torch.set_num_threads(threads)
    try:
        if device.startswith("cuda"):
            torch.cuda.set_device(device)
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    except BaseException:
        results.put((None, "error", rank, traceback.format_exc()))
        return
    results.put((None, "ready", rank, None))
    worker = Worker(rank, world_size, rank, device, results)
    try:
        while (task := _next_task(tasks, parent)) is not None:
            seq, fn, arg = task
            try:
                results.put((seq, "result", rank, fn(worker, arg)))
            except BaseException:
                results.put((seq, "error", rank, traceback.format_exc()))
    finally:
        dist.destroy_process_group()
        results.close()
        results.join_thread()  # every answer is in the pipe
    os._exit(0)  # skip the interpreter's teardown (seconds, once DDP has imported torch._dynamo)


def exit_words(code: int) -> str:
    """A worker's exit code in words: "was killed (SIGKILL)", "exited with code 1"."""
    if code is not None and code < 0:
        try:
            return f"was killed ({signal.Signals(-code).name})"
        except ValueError:
            return f"was killed (signal {-code})"
    return f"exited with code {code}"


class WorkerPool:
    """W spawned workers in one process group (gloo on the CPU by default)."""

    def __init__(self, world_size: int, *, backend: str = "gloo", devices: Sequence[str] | None = None,
                 timeout_s: float = 10.0, threads: int = 1, start_timeout_s: float = 120.0):
        self.world_size, self.timeout_s = world_size, timeout_s
        self._seq, self._closed = 0, False
        ctx = mp.get_context("spawn")
        self._dir = tempfile.mkdtemp(prefix="normcore-dist-")
        init_method = "file://" + os.path.join(self._dir, "rendezvous")
        devices = list(devices or ["cpu"] * world_size)
        self._results = ctx.Queue()
        self._tasks = [ctx.Queue() for _ in range(world_size)]
        self._procs = [
            ctx.Process(target=_serve, daemon=True, name=f"normcore-worker-{rank}",
                        args=(rank, world_size, init_method, backend, timeout_s, threads, devices[rank],
                              self._tasks[rank], self._results, os.getpid()))
            for rank in range(world_size)
        ]
        start = time.perf_counter()
        try:
            for p in self._procs:
                p.start()
            self._collect(None, "ready", start_timeout_s)
        except BaseException:
            self.close()
            raise
        self.spawn_s = time.perf_counter() - start  # start to every worker in the group

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(grace_s=5.0 if exc_type is None else 0.0)  # on an error (Ctrl-C too) at once

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def map(self, fn: Callable, args: Sequence | None = None, *, timeout_s: float = 60.0,
            on_message: Callable[[int, dict], None] | None = None,
            should_stop: Callable[[], bool] | None = None, fail_fast: bool = False) -> list:
        """Run ``fn(worker, args[rank])`` on every worker; their return values, by rank.

        Raises :class:`WorkerError` if any worker raised (the pool stays usable when every
        worker answered), ``TimeoutError`` after ``timeout_s`` and :class:`RunStopped` when
        ``should_stop()`` turns True; in those two cases the workers are terminated first.
        ``fail_fast``: the first error ends the map (the pool is closed, the others terminated)
        instead of waiting for the other workers, which may be stuck in a collective with it.
        """
        if self._closed:
            raise RuntimeError("This WorkerPool is closed; start a new one.")
        args = list(args) if args is not None else [None] * self.world_size
        if len(args) != self.world_size:
            raise ValueError(f"map needs one argument per worker ({self.world_size}), got {len(args)}.")
        self._seq += 1
        for rank, arg in enumerate(args):
            self._tasks[rank].put((self._seq, fn, arg))
        return self._collect(self._seq, "result", timeout_s, on_message, should_stop, fail_fast)

    def _collect(self, seq, kind, timeout_s, on_message=None, should_stop=None, fail_fast=False) -> list:
        """Wait until every rank answered ``kind`` (or an error) for task ``seq``."""
        answers: dict[int, tuple[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while len(answers) < self.world_size:
            if should_stop is not None and should_stop():
                self.close(grace_s=0.0)
                raise RunStopped("Stopped; the workers were terminated.")
            if time.monotonic() > deadline:
                self.close(grace_s=0.0)
                raise TimeoutError(f"Workers {sorted(set(range(self.world_size)) - set(answers))} did not answer "
                                   f"within {timeout_s:g} s; they were terminated.")
            try:
                got_seq, got_kind, rank, payload = self._results.get(timeout=POLL_S)
            except queue.Empty:
                self._check_alive(answers)
                continue
            if got_kind == "message" and on_message is not None:
                on_message(rank, payload)
            elif got_kind in (kind, "error") and got_seq == seq:
                answers[rank] = (got_kind, payload)
                if got_kind == "error" and fail_fast:
                    self.close(grace_s=0.0)
                    raise WorkerError(f"worker {rank}:\n{payload}")
        errors = [f"worker {rank}:\n{payload}" for rank, (k, payload) in sorted(answers.items()) if k == "error"]
        if errors:
            if seq is None:
                self.close()
            raise WorkerError("\n".join(errors))
        return [answers[rank][1] for rank in range(self.world_size)]

    def _check_alive(self, answers) -> None:
        dead = [r for r, p in enumerate(self._procs) if r not in answers and p.exitcode is not None]
        if dead:
            how = "; ".join(f"worker {r} {exit_words(self._procs[r].exitcode)}" for r in dead)
            self.close(grace_s=0.0)
            raise WorkerError(f"{how} without answering")

    def close(self, grace_s: float = 5.0) -> None:
        """Ask the workers to leave, then terminate, then kill; remove the rendezvous files."""
        if self._closed:
            return
        self._closed = True
        for q in self._tasks:
            try:
                q.put(None)
            except (ValueError, OSError):
                pass
        deadline = time.monotonic() + grace_s
        for p in self._procs:
            if p.pid is not None:
                p.join(max(0.0, deadline - time.monotonic()))
        for stop in ("terminate", "kill"):
            alive = [p for p in self._procs if p.is_alive()]
            for p in alive:
                getattr(p, stop)()
            for p in alive:
                p.join(2.0)
        for q in (*self._tasks, self._results):
            q.cancel_join_thread()
            q.close()
        shutil.rmtree(self._dir, ignore_errors=True)
