"""Where a training run can execute, discovered at run time: cpu, cuda, mps.

A run's placement is a :class:`Target`: a torch device plus, on the CPU, how many threads
torch may use. The device comparison trains the same model on each target:

* with an accelerator: the CPU (all threads) against every GPU found;
* without one: the CPU with 1 thread against the CPU with all threads, and
  :func:`no_accelerator_message` says plainly that no GPU was found.

Nothing here branches on the device type beyond discovery and synchronisation: the
training code is the same for every target, the device is just a parameter.

Note: ``torch.set_num_threads`` is process-wide, so a thread count applies to whatever else
runs in the process meanwhile: :func:`placed` runs one body at a time per process.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass

import torch

# torch's own default (physical cores), read once before anything changes it.
DEFAULT_THREADS = torch.get_num_threads()


def cuda_devices() -> list[str]:
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def accelerators() -> list[str]:
    """Every accelerator torch can use here, e.g. ['cuda:0'] or ['mps']; [] on a CPU-only machine."""
    return cuda_devices() + (["mps"] if mps_available() else [])


def available() -> list[str]:
    """Every device a test or run can use: 'cpu' first, then the accelerators."""
    return ["cpu", *accelerators()]


def device_name(device: str) -> str:
    """What the hardware is called, for tables: e.g. 'NVIDIA H100 80GB HBM3' or 'CPU'."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    if device == "mps":
        return "Apple GPU (MPS)"
    return "CPU"


@dataclass(frozen=True)
class Target:
    """One place to run: ``device`` ('cpu', 'cuda:0', 'mps') and, for the CPU, ``threads``
    (None = torch's default, all cores)."""

    device: str = "cpu"
    threads: int | None = None

    @property
    def is_accelerator(self) -> bool:
        return self.device != "cpu"

    @property
    def key(self) -> str:
        """A short stable name used in configs and tables: 'cpu', 'cpu:1t', 'cuda:0'."""
        return self.device if self.threads is None else f"{self.device}:{self.threads}t"

    @property
    def label(self) -> str:
        if self.device == "cpu":
            n = self.threads or DEFAULT_THREADS
            return f"CPU, {n} thread{'s' if n != 1 else ''}" + ("" if self.threads else " (all)")
        return f"{self.device} ({device_name(self.device)})"


_KEY = re.compile(r"^(cpu)(?::(\d{1,3})t)?$|^(cuda:\d{1,2}|mps)$")


def parse_target(key: str) -> Target:
    """The :class:`Target` named by ``key`` ('cpu', 'cpu:1t', 'cuda:0', 'mps').

    Raises ``ValueError`` in words when the name is malformed or the device is not on this
    machine (a configuration saved on a GPU machine and loaded on a CPU one).
    """
    m = _KEY.match(str(key).strip())
    if not m:
        raise ValueError(f"Unknown device {key!r}: expected 'cpu', 'cpu:<threads>t', 'cuda:<index>' or 'mps'.")
    if m.group(1):
        threads = int(m.group(2)) if m.group(2) else None
        if threads is not None and not 1 <= threads <= DEFAULT_THREADS:
            raise ValueError(f"Device {key!r} asks for {threads} CPU threads; this machine has 1 to {DEFAULT_THREADS}.")
        return Target("cpu", threads)
    device = m.group(3)
    if device not in accelerators():
        found = ", ".join(accelerators()) or "none"
        raise ValueError(f"Device {device!r} is not available on this machine (accelerators found: {found}).")
    return Target(device)


def comparison_targets() -> list[Target]:
    """The default device comparison on this machine (see the module docstring)."""
    found = accelerators()
    if found:
        return [Target("cpu"), *(Target(d) for d in found)]
    if DEFAULT_THREADS > 1:
        return [Target("cpu", 1), Target("cpu")]
    return [Target("cpu")]


def default_targets() -> list[Target]:
    """What a run uses unless told otherwise: the full comparison when there is a GPU to
    compare with; without one, the CPU with 1 thread only. (On a busy shared CPU, all
    threads can be many times slower than one, so that comparison is opt-in.)"""
    return comparison_targets() if accelerators() else comparison_targets()[:1]


def all_targets() -> list[Target]:
    """Every target a user may pick here: CPU with 1 thread, CPU with all, each accelerator."""
    cpu = [Target("cpu", 1), Target("cpu")] if DEFAULT_THREADS > 1 else [Target("cpu")]
    return cpu + [Target(d) for d in accelerators()]


def no_accelerator_message() -> str | None:
    """Plain words for the page when no GPU was found; None when one was."""
    if accelerators():
        return None
    return (
        f"No GPU was found on this machine (no CUDA, no Apple MPS), so the device comparison is the CPU "
        f"with 1 thread against the CPU with all {DEFAULT_THREADS} threads (pick both under Devices). On a "
        "machine with a GPU the same code trains on it too: the device is only a parameter."
    )


@contextlib.contextmanager
def thread_count(threads: int | None):
    """Run the body with ``threads`` CPU threads (None: leave the count as it is), restoring
    the previous count after. Takes no lock: torch's count is process-wide, so callers that
    train concurrently in one process must serialize themselves (see :func:`placed`)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# torch.set_num_threads is process-wide, and a server runs every session's reruns in the same
# process. Experiments place their work with placed(), which holds this lock: overlapping runs
# would otherwise save and restore each other's counts (leaving the server at 1 thread) and
# time each other's work. Re-entrant, because a scenario may train inside its own placed().
_THREADS_LOCK = threading.RLock()


def _new_thread_count() -> int:
    """The count a new thread starts with: the one last set in the process. (torch keeps a
    count per thread too: a thread started while another session trained at 1 thread holds
    1 as its own, which is not the count to restore.)"""
    seen = []
    probe = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    probe.start()
    probe.join()
    return seen[0]


@contextlib.contextmanager
def placed(target: Target):
    """Run the body on ``target``: its torch device is yielded, its CPU thread count set for
    the body and the process's count restored after. Bodies run one at a time per process
    (see ``_THREADS_LOCK``), so timings are honest too. Experiments take it; the training
    loop does not."""
    with _THREADS_LOCK:
        before = _new_thread_count() if target.threads is not None else None
        with thread_count(target.threads):
            yield torch.device(target.device)
        if before is not None:
            torch.set_num_threads(before)


def synchronize(device) -> None:
    """Wait for queued kernels so a wall-clock reading is honest (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


__all__ = [
    "DEFAULT_THREADS", "Target", "accelerators", "all_targets", "available", "comparison_targets", "default_targets",
    "cuda_devices", "device_name", "mps_available", "no_accelerator_message", "parse_target", "placed",
    "synchronize", "thread_count",
]
