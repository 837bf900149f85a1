"""Regenerate the pictures of the README and the overview page: docs/screenshots/<url_path>.png.

    python -m tests.e2e.screenshots            # every page
    python -m tests.e2e.screenshots training   # only some (url paths)

Starts its own server, opens each page in headless Chromium with the same plan as the
end-to-end tests (tests/e2e/plans.py), lets it show results (a short stream, a tiny run),
and captures the main area, 1400 px wide. The overview is taken last, so it shows the new
pictures of the other pages. A picture over ``MAX_BYTES`` is reduced to a 256-colour
palette (lossless-looking for a UI) and, if still too big, scaled down.
Emoji in titles need a colour emoji font (Debian: fonts-noto-color-emoji).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

from PIL import Image

from pages.shared.navigation import SCREENSHOTS
from tests.e2e import harness as H
from tests.e2e.plans import ALL_PAGES, OVERVIEW, PLANS, Plan, by_path, move_slider, page_url, press_main_button, problems

WIDTH = 1400  # of the main area in the picture
# Pictures of one tab of a page: picture name -> (the page's url path, the plan; its query opens the tab).
TAB_PICTURES = {
    "deploy_port_port": ("deploy_port", Plan(query={"deploy_tab": "🔁 Port between frameworks"}, slider="Layers k",
                                                picture_height=3000)),
    "deploy_port_precision": ("deploy_port", Plan(query={"deploy_tab": "🎯 Precision"}, slider="Points per decade",
                                                          picture_height=2600)),
    # The default warm-up comparison (the slider moves the warm-up from 19 to the default 20 steps).
    "transformers_warmup": ("transformers", Plan(query={"transformers_tab": "🔥 Warm-up", "tw_warmup": "19"},
                                                 slider="Warm-up steps", button="Train the four runs",
                                                 rerun_timeout_ms=180_000, picture_height=2000)),
    # Part 2 at its defaults (the sidebar's batch moves from 31 to the default 32): the sweep, then the norms.
    "transformers_stability": ("transformers", Plan(query={"transformers_tab": "📈 Stability", "batch_size": "31"},
                                                    slider="Batch size N", button="Run the sweep",
                                                    rerun_timeout_ms=480_000, picture_height=2400)),
    "transformers_which_norm": ("transformers", Plan(query={"transformers_tab": "⚖️ Which norm", "batch_size": "31"},
                                                     slider="Batch size N", button="Train the norms side by side",
                                                     rerun_timeout_ms=400_000, picture_height=3000)),
}
MAX_BYTES = 400_000


def shrink(png: bytes, max_bytes: int = MAX_BYTES) -> bytes:
    """The PNG as it is if small enough, else palette-quantized, else also scaled down."""
    if len(png) <= max_bytes:
        return png
    image = Image.open(io.BytesIO(png)).convert("RGB")
    for scale in (1.0, 0.85, 0.7, 0.55, 0.4):
        resized = image if scale == 1.0 else image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        out = io.BytesIO()
        resized.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, "PNG", optimize=True)
        if out.tell() <= max_bytes:
            break
    return out.getvalue()


def capture_main(app: H.AppPage, max_height: int) -> bytes:
    """The main area (not the sidebar), WIDTH wide, down to the end of its content."""
    page = app.page
    sidebar = page.locator('[data-testid="stSidebar"]').bounding_box() or {"width": 0}
    page.set_viewport_size({"width": WIDTH + round(sidebar["width"]), "height": max_height + 200})
    app.wait_for_rerun(started_within_ms=500)  # a resize can re-layout charts
    page.wait_for_timeout(500)  # let Vega finish drawing
    box = page.locator('[data-testid="stMain"]').bounding_box()
    bottom = page.evaluate(
        """() => { const c = document.querySelector('[data-testid="stMainBlockContainer"]');
                   return c.getBoundingClientRect().top + c.scrollHeight; }"""
    )
    height = max(300, min(max_height, round(bottom)))
    return page.screenshot(clip={"x": box["x"], "y": 0, "width": min(WIDTH, box["width"]), "height": height})


def take(browser, server: H.StreamlitServer, info, out_dir: Path, name: str | None = None, plan: Plan | None = None) -> Path:
    plan = plan or PLANS.get(info.url_path, Plan())
    context = browser.new_context(viewport=H.VIEWPORT)
    try:
        app = H.AppPage.open(context)
        app.goto(page_url(server, info, **plan.query), timeout_ms=120_000)
        move_slider(app, plan)
        press_main_button(app, plan)
        if plan.showcase:
            plan.showcase(app)
        app.page.mouse.move(1, 1)  # no tooltip or focus ring in the picture
        app.page.evaluate("() => document.activeElement && document.activeElement.blur()")
        found = problems(app)
        if found:
            raise RuntimeError(f"{info.url_path} is not healthy, not taking its picture:\n" + "\n".join(found))
        png = shrink(capture_main(app, plan.picture_height))
    finally:
        context.close()
    path = out_dir / f"{name or info.url_path}.png"
    path.write_bytes(png)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help="url paths to take (default: all)")
    parser.add_argument("--out", type=Path, default=SCREENSHOTS)
    args = parser.parse_args(argv)
    problem = H.browser_problem()
    if problem:
        print(f"cannot take screenshots: {problem}", file=sys.stderr)
        return 2
    wanted = [(p, None, None) for p in ALL_PAGES if not args.pages or p.url_path in args.pages]
    wanted += [(by_path(path), name, plan) for name, (path, plan) in TAB_PICTURES.items()
               if not args.pages or name in args.pages]
    wanted.sort(key=lambda w: w[0] is OVERVIEW)  # the overview shows the others' new pictures
    args.out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    with H.StreamlitServer() as server, sync_playwright() as p:
        browser = H.launch_chromium(p)
        warm = browser.new_context()
        H.AppPage.open(warm).goto(server.url(), timeout_ms=120_000)  # the cold first run, once
        warm.close()
        for info, name, plan in wanted:
            started = time.monotonic()
            path = take(browser, server, info, args.out, name, plan)
            with Image.open(path) as image:
                size = f"{image.width}x{image.height}"
            print(f"{path}  {size}  {path.stat().st_size / 1000:.0f} KB  {time.monotonic() - started:.1f} s")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
