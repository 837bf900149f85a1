"""The lab's pages, listed once: the router builds st.navigation from this, the overview its cards."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
THUMBNAIL_WIDTH = 480  # px: an overview card is ~230-500 CSS px wide; 480 stays sharp at both ends
CARDS_PER_ROW = 3  # the overview's grid: at 1280 px a card is ~250 px wide, so no title breaks inside a word
# ...and where three no longer fit a title's longest word (below ~1000 px with the sidebar open), a card
# keeps 10rem and the row wraps, at one card's width (Streamlit's columns are a wrapping flex row).
CARD_GRID_CSS = """<style>
.st-key-overview_cards [data-testid="stColumn"] { min-width: 10rem; flex: 0 1 calc((100% - 4rem) / 3); }
</style>"""


@functools.lru_cache(maxsize=16)
def _thumbnail(path: Path, modified_ns: int) -> bytes:
    """A JPEG of the screenshot at THUMBNAIL_WIDTH: ~50 KB instead of ~300 KB of 1400-px PNG,
    which Streamlit decoded on every run of the overview (0.34 s for six) and each visitor
    downloaded. ``modified_ns`` renews it when the screenshot is retaken."""
    from PIL import Image  # Streamlit's own dependency; only the overview needs it

    with Image.open(path) as image:
        height = round(image.height * THUMBNAIL_WIDTH / image.width)
        small = image.convert("RGB").resize((THUMBNAIL_WIDTH, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()


@dataclass(frozen=True)
class PageInfo:
    """One page. ``url_path`` must equal the script's file stem: on a fresh server Streamlit
    routes the first session by scanning pages/ before st.navigation runs, and a link to any
    other path shows "Page not found" (tests/e2e: test_shared_link_on_a_cold_server...)."""

    script: str  # relative to the repository root
    title: str
    icon: str
    url_path: str
    blurb: str

    @property
    def screenshot(self) -> Path:
        return SCREENSHOTS / f"{self.url_path}.png"

    def thumbnail(self) -> bytes | None:
        """The screenshot, small, for the overview's card; None when there is none."""
        path = self.screenshot
        return _thumbnail(path, path.stat().st_mtime_ns) if path.exists() else None


OVERVIEW = PageInfo("pages/overview.py", "Overview", "🧪", "overview", "What the lab is and where to start.")
PAGES = (
    PageInfo(
        "pages/live_statistics.py", "Live statistics", "📈", "live_statistics",
        "Which values share one mean and variance, one batch before and after, and batch vs running "
        "statistics streaming in as you change batch size, momentum, eps and groups.",
    ),
    PageInfo(
        "pages/train_vs_eval.py", "Train vs eval", "⚖️", "train_vs_eval",
        "Why outputs change after model.eval(): warm-up, batch size, non-i.i.d. batches, test-time "
        "shift, PreciseBN, a forgotten .eval(), and frozen BN for fine-tuning.",
    ),
    PageInfo(
        "pages/training.py", "Training comparison", "🏋️", "training",
        "Train small MLPs and CNNs with each normalization side by side, live, and time them on every "
        "device this machine has.",
    ),
    PageInfo(
        "pages/gradients.py", "Gradients", "🧮", "gradients",
        "Backprop through a norm step by step and the Jacobian that couples a batch; then gradient flow "
        "through a deep network with and without a norm, and whether BatchNorm smooths the loss landscape.",
    ),
    PageInfo(
        "pages/data_parallel.py", "Data-parallel BN", "👥", "data_parallel",
        "Real worker processes train with DDP: local BatchNorm vs SyncBatchNorm vs GroupNorm, per-worker "
        "running statistics, the eval gap and SyncBN's step time, with Stop and no worker left behind.",
    ),
    PageInfo(
        "pages/deploy_port.py", "Deploy & port", "🚀", "deploy_port",
        "Fold BatchNorm into the layer before it (and the classic mistakes, live), port normalization "
        "settings between PyTorch and Keras, and measure each method's precision against float64.",
    ),
    PageInfo(
        "pages/transformers.py", "Transformers", "🧠", "transformers",
        "A tiny GPT with post-, pre- or peri-LN: per-block gradients at initialization against depth (Xiong "
        "et al. 2020), and post-LN and pre-LN trained with and without learning-rate warm-up, live.",
    ),
)


def card_rows(pages=PAGES, per_row: int = CARDS_PER_ROW) -> list[tuple[PageInfo, ...]]:
    """The overview's cards, ``per_row`` to a row (the last row may hold fewer)."""
    return [tuple(pages[i:i + per_row]) for i in range(0, len(pages), per_row)]
