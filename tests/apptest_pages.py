"""Open the app in AppTest the way a user reaches it: the router first, then (optionally) a page.

Streamlit runs a full ``gc.collect()`` after every script run (``runner.postScriptGC``): on a
server it frees reference cycles between reruns, but in the test process, whose heap holds
every test module (and, late in a run, Keras), it took 0.3 s of each rerun. AppTest runs
without it; the server keeps it (``benchmarks.load`` measures its memory). Nor does each
AppTest rescan the installed packages for components (:func:`scan_installed_components_once`).
"""

import functools
from pathlib import Path

import pandas as pd
import pyarrow as pa
from streamlit import config
from streamlit.components.v2 import manifest_scanner
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def scan_installed_components_once() -> None:
    """Each new AppTest scans every installed package's metadata for Streamlit components (the
    server does it once, at start): 0.3 s of each ``open_app`` here, with ~200 packages. The
    packages of a test process do not change, so it scans once."""
    scan = manifest_scanner.scan_component_manifests
    if not hasattr(scan, "cache_info"):
        manifest_scanner.scan_component_manifests = functools.cache(scan)


scan_installed_components_once()


def open_app(timeout: float = 60, **query) -> AppTest:
    """The router (app.py) run once, on its default page; ``query`` becomes URL parameters."""
    config.get_option("runner.postScriptGC")  # parse the config files first, or they reset the option
    config.set_option("runner.postScriptGC", False)
    at = AppTest.from_file(APP, default_timeout=timeout)
    for name, value in query.items():
        at.query_params[name] = str(value)
    at.run()
    assert not at.exception, at.exception
    return at


def open_page(page: str, timeout: float = 60, **query) -> AppTest:
    """``page`` is a script path such as "pages/training.py"; ``query`` becomes URL parameters."""
    at = open_app(timeout, **query)
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    """The values of some elements (st.error, st.markdown, ...) as one string."""
    return " ".join(str(e.value) for e in elements)


def chart_rows(at: AppTest) -> pd.DataFrame:
    """Every row the page's charts draw (their Arrow datasets, concatenated)."""
    return pd.concat([pa.ipc.open_stream(d.data.data).read_all().to_pandas()
                      for chart in at.get("vega_lite_chart") for d in chart.proto.datasets])
