"""What to do on each page of the lab in a browser, for the end-to-end tests and the
screenshot script alike.

Pages come from ``pages/shared/navigation.py``. For each, the generic plan moves the first
slider of the main area (else of the sidebar) and presses the first of ``MAIN_BUTTONS``
it finds. ``PLANS`` overrides that where a page needs something specific: a tiny
configuration in the URL, a particular slider or button, or a longer wait.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pages.shared.navigation import OVERVIEW, PAGES
from tests.e2e import harness as H

ALL_PAGES = (OVERVIEW, *PAGES)
MAIN = '[data-testid="stMain"]'
SIDEBAR = '[data-testid="stSidebar"]'
DIALOG = '[data-testid="stDialog"]'
MAIN_BUTTONS = ("Step", "Run", "Play", "Start", "Train")  # a page's main button, by label


@dataclass(frozen=True)
class Plan:
    """How to exercise one page. ``None`` means the generic choice."""

    query: dict = field(default_factory=dict)  # deep-link settings for a tiny, fast run
    slider: str | None = None  # label of the slider to move; generic: first in main, else sidebar
    slider_key: str = "ArrowRight"  # the key pressed on it (the opposite way if it cannot move)
    button: str | None = None  # label of the main button; generic: first of MAIN_BUTTONS shown
    rerun_timeout_ms: float = 60_000
    # What to check once the main button's rerun is done (page, server), beyond a healthy page.
    check: Callable[[H.AppPage, H.StreamlitServer], None] | None = None
    # For the README pictures: what to do after the checks so the page shows results.
    showcase: Callable[[H.AppPage], None] | None = None
    picture_height: int = 1800  # px of the page, from the top, in its README picture


def by_path(url_path: str):
    return next(p for p in ALL_PAGES if p.url_path == url_path)


def page_url(server: H.StreamlitServer, page, **query) -> str:
    # The default page lives at "/": Streamlit answers its own url_path with "Page not found".
    return server.url("" if page is OVERVIEW else page.url_path, **query)


def slider(page, label: str):
    # The thumb is an <input type="range"> whose accessible name also includes its value
    # (aria-labelledby), so find it by its aria-label rather than get_by_role(name=...).
    return page.locator(f'input[type="range"][aria-label="{label}"]')


def button(scope, label: str):
    """A button whose label is ``label``, after an optional icon ("⏭️ Step" for "Step")."""
    return scope.get_by_role("button", name=re.compile(rf"^(\W+\s)?{re.escape(label)}$"))


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def visible(locator) -> list:
    return [x for x in locator.all() if x.is_visible()]


def move_slider(app: H.AppPage, plan: Plan) -> str:
    """Move one slider a notch with the keyboard; return what moved (for the log)."""
    page = app.page
    if plan.slider:
        slider(page, plan.slider).first.wait_for(state="visible", timeout=30_000)
        candidates = visible(slider(page, plan.slider))
    else:
        candidates = [s for scope in (MAIN, SIDEBAR) for s in visible(page.locator(f'{scope} input[type="range"]'))
                      if s.is_enabled()][:1]
    if not candidates:
        return "no slider on this page"
    thumb = candidates[0]
    label, before = thumb.get_attribute("aria-label"), thumb.input_value()
    stuck = {"ArrowRight": "max", "End": "max", "ArrowLeft": "min", "Home": "min"}[plan.slider_key]
    key = plan.slider_key
    if before == thumb.get_attribute(stuck):
        key = "ArrowLeft" if stuck == "max" else "ArrowRight"
    # A key press can land before the thumb has focus, or the value can be read before the
    # frontend settles: re-read after a pause, and press again (at most 3 tries) only if the
    # value really did not change.
    for _ in range(3):
        app.press_slider(thumb, key)
        after = slider(page, label).first.input_value()
        if after == before:
            page.wait_for_timeout(500)
            after = slider(page, label).first.input_value()
        if after != before:
            break
        thumb = slider(page, label).first
    assert after != before, f"slider {label!r} did not move from {before}"
    return f"slider {label!r}: {before} -> {after}"


def press_main_button(app: H.AppPage, plan: Plan) -> str:
    main = app.page.locator(MAIN)
    if plan.button:
        button(main, plan.button).first.wait_for(state="visible", timeout=30_000)
    for name in (plan.button,) if plan.button else MAIN_BUTTONS:
        buttons = [b for b in visible(button(main, name)) if b.is_enabled()]
        if buttons:
            app.click(buttons[0], timeout_ms=plan.rerun_timeout_ms)
            return f"button {name!r}"
    assert plan.button is None, f"no enabled button {plan.button!r} on the page"
    return "no main button on this page"


def problems(app: H.AppPage) -> list[str]:
    """Everything that says the page is broken: exceptions, console errors, dialogs."""
    found = [f"exception: {text}" for text in app.exceptions()]
    found += [f"console error: {text}" for text in app.console_errors]
    found += [f"dialog: {d.inner_text()}" for d in visible(app.page.locator(DIALOG))]
    return found


# -- page-specific plans ---------------------------------------------------------------------


def play_for(seconds: float) -> Callable[[H.AppPage], None]:
    def showcase(app: H.AppPage) -> None:
        main = app.page.locator(MAIN)
        app.click(button(main, "Play"))
        time.sleep(seconds)
        app.click(button(main, "Pause"))
    return showcase


def open_tab(title: str, heading_timeout_ms: float = 120_000) -> Callable[[H.AppPage], None]:
    """Click a tab that computes when it opens, and wait for its heading (its work done)."""
    def showcase(app: H.AppPage) -> None:
        main = app.page.locator(MAIN)
        app.click(main.get_by_role("tab", name=title), timeout_ms=heading_timeout_ms)
        main.get_by_role("heading", name=title).wait_for(state="visible", timeout=heading_timeout_ms)
    return showcase


def run_two_epochs(app: H.AppPage) -> None:
    """Epochs 1 -> 2, then Run: the picture has curves, not single points."""
    app.press_slider(slider(app.page, "Epochs").first, "ArrowRight")
    app.click(button(app.page.locator(MAIN), "Run"), timeout_ms=180_000)


def server_workers(server: H.StreamlitServer) -> list:
    """The server's worker processes (psutil), not multiprocessing's resource tracker."""
    import psutil

    out = []
    for p in psutil.Process(server.pid).children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def data_parallel_charts_drawn(app: H.AppPage, server: H.StreamlitServer) -> None:
    """The tiny run finished, drew its three charts, and left no worker behind."""
    app.page.get_by_text("Finished in").first.wait_for(timeout=30_000)
    charts = app.page.locator(f'{MAIN} [data-testid="stVegaLiteChart"]')
    assert charts.count() == 3
    app.page.wait_for_timeout(500)  # let Vega finish drawing
    marks = [charts.nth(i).locator('[role="graphics-symbol"]').count() for i in range(3)]
    assert marks[0] >= 3 and marks[1] >= 3 and marks[2] >= 2 * 16, marks  # lines+points, bars, per-worker means
    assert server_workers(server) == []


def transformers_charts_drawn(app: H.AppPage, server: H.StreamlitServer) -> None:
    """The default first view (depth 12) and the depth sweep: four charts, each sentence written from them."""
    main = app.page.locator(MAIN)
    main.get_by_text("post / pre goes from").first.wait_for(timeout=60_000)
    assert main.get_by_text("At depth 12 (Xavier").count() == 1
    assert main.locator('[data-testid="stVegaLiteChart"]').count() == 4


PLANS: dict[str, Plan] = {
    # Tall picture: the stream (section 3) is what the page is about.
    "live_statistics": Plan(button="Step", showcase=play_for(5), picture_height=2800),
    # The default comparison for one epoch: 5 norms x the CPU targets, a few seconds.
    "training": Plan(slider="Epochs", slider_key="Home", button="Run", rerun_timeout_ms=180_000, picture_height=2400),
    # No button: parts 1–2 are computed as the page opens (γ moves from 1.0 to 1.1); the
    # picture shows part 3, gradient flow in depth, trained at its defaults when its tab opens.
    "gradients": Plan(slider="γ (every channel)", showcase=open_tab("3 · Gradient flow in depth"), picture_height=2900),
    # The Fold tab computes as it opens; this slider reruns the fold, not the (cached) training.
    "deploy_port": Plan(slider="Batch the train-mode fold sees", picture_height=3000),
    # Real worker processes: 2 workers, the three norms for 1 epoch at 64 per worker (10 steps
    # each; the slider moves the seed); its charts are checked. The picture: the same for 2 epochs.
    "data_parallel": Plan(query={"dp_batch": "64", "dp_epochs": "1"}, slider="Seed",
                          button="Run", rerun_timeout_ms=180_000, check=data_parallel_charts_drawn,
                          showcase=run_two_epochs, picture_height=3200),
    # The first view opens at depth 11 and the slider moves it to the default 12; then the depth sweep.
    "transformers": Plan(query={"ti_depth": "11"}, slider="Depth (blocks)", button="Run the depth sweep",
                         check=transformers_charts_drawn, picture_height=2600),
}
