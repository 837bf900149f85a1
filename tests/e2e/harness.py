"""Plumbing shared by the browser tests, the screenshot script and the load benchmark.

* :class:`StreamlitServer` runs ``streamlit run app.py`` on a free loopback port and waits
  until ``/_stcore/health`` answers ``ok``; it stops the whole process group on exit.
* :func:`launch_chromium` starts Debian's Chromium headless through Playwright (never a
  Playwright-downloaded browser; see docs/design.md).
* :class:`AppPage` wraps one Playwright page: it records console errors and uncaught page
  errors, and knows when a Streamlit rerun has finished.

Playwright is imported lazily, so importing this module never needs a browser.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("NORMCORE_ARTIFACTS", ROOT / "artifacts"))
E2E_ARTIFACTS = ARTIFACTS / "e2e"  # screenshots, server logs, failure pictures of the browser tests
CHROMIUM = Path(os.environ.get("NORMCORE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 2200}  # tall: Streamlit scrolls inside its own container

# Streamlit's markers. The app root also carries the script state, which
# tells "a rerun has not started yet" apart from "it has finished".
APP = '[data-testid="stApp"]'
APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
APP_BUSY = '[data-testid="stApp"]:not([data-test-script-state="notRunning"])'
STATUS_WIDGET = '[data-testid="stStatusWidget"]'
EXCEPTION = '[data-testid="stException"]'
SIDEBAR_LINKS = '[data-testid="stSidebarNav"] a'


# Console errors that are not the app's. Only this one, and only narrowly:
# Streamlit's frontend, opened on a page URL such as /live_statistics, first looks for the
# server under that path (in case the app is served below a base URL path) and only then
# at the root, so the browser logs a 404 for <page>/_stcore/health and <page>/_stcore/host-config.
# A 404 for the root /_stcore/... endpoints would still fail a test.
BENIGN_CONSOLE_ERRORS = (
    re.compile(r"^Failed to load resource: the server responded with a status of 404 \(Not Found\) "
               r"\(https?://[^/]+(/[^/?#]+)+/_stcore/(health|host-config):\d+\)$"),
)


def console_text(message) -> str:
    """A console message with where it came from, as the tests print and match it."""
    location = message.location or {}
    return f"{message.text} ({location.get('url', '?')}:{location.get('lineNumber', '?')})"


def benign_console_error(message) -> bool:
    return any(pattern.match(console_text(message)) for pattern in BENIGN_CONSOLE_ERRORS)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def browser_problem() -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -r requirements-dev.txt)"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium; never `playwright install`)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the server's process before it starts (Linux): the kernel sends it SIGTERM when
    the process that started it dies, even by SIGKILL (a timed-out benchmark, a killed test
    run), which would otherwise leave a server of its own session running."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class StreamlitServer:
    """``streamlit run app.py`` on 127.0.0.1 and a free port, for tests and benchmarks.

    Use as a context manager. ``extra_args`` are more ``--section.option value`` flags,
    ``env`` more environment variables for the server.
    The server's output goes to ``log_path`` (a temporary file by default), whose tail is
    quoted when the server does not come up.
    """

    def __init__(self, root: Path = ROOT, extra_args: tuple[str, ...] = (), log_path: Path | None = None,
                 start_timeout: float = 90.0, env: dict[str, str] | None = None, script: str = "app.py"):
        self.root, self.extra_args, self.start_timeout = Path(root), tuple(extra_args), start_timeout
        self.script = script  # relative to root: the app, or another page (benchmarks.browser's baseline)
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="streamlit-", suffix=".log")[1])
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "", **query) -> str:
        q = f"?{urllib.parse.urlencode(query)}" if query else ""
        return f"{self.base_url}/{path.lstrip('/')}{q}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> StreamlitServer:
        # The port is free when picked but could be taken before Streamlit binds it: retry.
        for attempt in range(3):
            self.port = free_port()
            command = [
                sys.executable, "-m", "streamlit", "run", self.script,
                "--server.headless", "true",
                "--server.address", "127.0.0.1",
                "--server.port", str(self.port),
                "--browser.gatherUsageStats", "false",
                "--client.showErrorDetails", "full",  # tracebacks in failing tests' screenshots
                *self.extra_args,
            ]
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    command, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group, so stop() ends every child too
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            if self._wait_healthy():
                return self
            exited = self.process.poll() is not None
            self.stop()
            if not exited:
                break  # it ran but never got healthy: a retry would not help
        raise RuntimeError(f"Streamlit did not become healthy on port {self.port}; log tail:\n{self.log_tail()}")

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.base_url}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> StreamlitServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def launch_chromium(playwright):
    """Debian's Chromium, headless, with the flags a sandboxed CI machine needs. Playwright gives
    every launch a fresh temporary user-data-dir and deletes it on close."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


@dataclass
class AppPage:
    """One browser tab on the app, recording what the console says."""

    page: object  # playwright.sync_api.Page
    console_errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, context) -> AppPage:
        app = cls(context.new_page())
        app.page.on("console", app._on_console)
        app.page.on("pageerror", lambda error: app.console_errors.append(f"uncaught: {error}"))
        return app

    def _on_console(self, message) -> None:
        if message.type == "error" and not benign_console_error(message):
            self.console_errors.append(console_text(message))

    def goto(self, url: str, timeout_ms: float = 60_000) -> None:
        self.page.goto(url, wait_until="domcontentloaded", timeout=timeout_ms)
        self.wait_loaded(timeout_ms)

    def wait_loaded(self, timeout_ms: float = 60_000) -> None:
        """Wait for a page being opened to connect and finish its first run (goto without waiting
        lets several pages load at once)."""
        self.page.wait_for_selector(f'{APP}[data-test-connection-state="CONNECTED"]', timeout=timeout_ms)
        self.wait_for_rerun(timeout_ms, started_within_ms=0)

    def wait_for_rerun(self, timeout_ms: float = 60_000, started_within_ms: float = 2_000) -> None:
        """Wait for the rerun an interaction triggered to finish.

        A widget change starts its rerun after a short debounce, so first give it up to
        ``started_within_ms`` to start (a very fast rerun may be over before we look), then
        wait until the script is idle and the status widget ("Running...") is gone.
        """
        if started_within_ms:
            with contextlib.suppress(Exception):  # playwright's TimeoutError: it already ran, or never will
                self.page.wait_for_selector(APP_BUSY, timeout=started_within_ms)
        self.page.wait_for_selector(APP_IDLE, timeout=timeout_ms)
        self.page.wait_for_selector(STATUS_WIDGET, state="detached", timeout=timeout_ms)

    def exceptions(self) -> list[str]:
        return [e.inner_text() for e in self.page.locator(EXCEPTION).all()]

    def press_slider(self, slider, key: str = "ArrowRight", times: int = 1) -> None:
        """Move a slider (a ``[role="slider"]`` thumb) with the keyboard, then wait for the rerun."""
        slider.focus()
        for _ in range(times):
            slider.press(key)
        self.wait_for_rerun()

    def click(self, locator, timeout_ms: float = 60_000) -> None:
        locator.click()
        self.wait_for_rerun(timeout_ms)

    def screenshot(self, path: Path, full_height: bool = True) -> Path:
        """The viewport down to the end of the content, or all of it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        clip = None
        if full_height:
            bottom = self.page.evaluate(
                """() => {
                    const parts = ['[data-testid="stMainBlockContainer"]', '[data-testid="stSidebarContent"]']
                        .map(s => document.querySelector(s)).filter(Boolean)
                        .map(e => e.getBoundingClientRect().top + e.scrollHeight);
                    return Math.max(0, ...parts);
                }"""
            )
            size = self.page.viewport_size
            clip = {"x": 0, "y": 0, "width": size["width"], "height": max(200, min(size["height"], int(bottom) + 16))}
        self.page.screenshot(path=str(path), clip=clip)
        return path
