"""The router (app.py) and the overview it opens on: they render, link every page, and each
page the router lists opens without an exception."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pages.shared.navigation import CARDS_PER_ROW, OVERVIEW, PAGES, ROOT, THUMBNAIL_WIDTH, PageInfo, card_rows
from tests.apptest_pages import open_app, open_page


def test_every_listed_page_has_its_script():
    for page in (OVERVIEW, *PAGES):
        assert (ROOT / page.script).is_file(), page.script
    assert len({p.url_path for p in (OVERVIEW, *PAGES)}) == len(PAGES) + 1  # no two pages share a URL


def test_overview_is_the_default_page_and_links_every_page():
    at = open_app()
    assert at.title[0].value == "🧪 normcore lab"
    links = at.get("page_link")
    assert [(link.proto.label, link.proto.page) for link in links] == [(f"Open {p.title}", p.url_path) for p in PAGES]
    assert [h.value for h in at.subheader] == [f"{p.icon} {p.title}" for p in PAGES]
    assert any("normcore lab" in c.value for c in at.sidebar.caption)
    # its cards three to a row (six in six columns broke their titles mid-word at 1280 px; the
    # browser check of the words: tests/e2e/test_pages.py), for any page count
    rows = -(-len(PAGES) // CARDS_PER_ROW)
    assert [c.proto.weight for c in at.columns] == [1 / CARDS_PER_ROW] * rows * CARDS_PER_ROW
    assert [len(row) for row in card_rows(tuple(range(7)))] == [3, 3, 1] and card_rows(()) == []


@pytest.mark.parametrize("page", PAGES, ids=[p.url_path for p in PAGES])
def test_each_page_opens_from_the_router(page):
    at = open_page(page.script)  # asserts that nothing raised
    assert at.title, "every page opens with a title"


def test_every_url_path_is_its_scripts_file_stem():
    """Streamlit's pages/ scan routes a cold server's first session by file stem."""
    for page in PAGES:
        assert page.url_path == Path(page.script).stem, page


def test_coming_back_to_pages_overview_py_shows_a_picture_per_page():
    """pages/overview.py reached again from another page: one screenshot and link per page."""
    at = open_page(PAGES[0].script)
    at.switch_page("pages/overview.py")
    at.run()
    assert not at.exception
    assert at.title[0].value == "🧪 normcore lab"
    assert len(at.get("image")) == len(PAGES)  # the pictures exist (docs/screenshots) and are shown
    assert len(at.get("page_link")) == len(PAGES)


def test_the_overview_shows_each_screenshot_as_a_small_thumbnail():
    """Its cards are ~220 px wide: the 1400-px screenshots were decoded on every run (0.34 s) and
    downloaded by every visitor (1.7 MB)."""
    from PIL import Image

    for page in PAGES:
        thumbnail = page.thumbnail()
        with Image.open(io.BytesIO(thumbnail)) as image, Image.open(page.screenshot) as full:
            assert image.format == "JPEG" and image.width == THUMBNAIL_WIDTH, page
            assert abs(image.height / image.width - full.height / full.width) < 0.01  # the whole picture, scaled
        assert len(thumbnail) < 100_000, (page, len(thumbnail))  # the screenshots: 160-400 KB
    missing = PageInfo("pages/none.py", "None", "?", "no_such_page", "")
    assert missing.thumbnail() is None
