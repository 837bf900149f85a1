"""Altair charts as the Vega-Lite specs ``st.altair_chart`` sends, so a page can cache them.

Building an Altair chart, validating it and serializing its data costs 20–40 ms a chart,
on every rerun, whether or not the chart's data changed: a tab switched back to, an option
of another section. :func:`spec` does exactly what ``st.altair_chart`` does before it sends a
chart (its own conversion: Altair's "none" theme, the data as Arrow under hashed names), so a
page can keep the result in ``st.cache_data`` next to the result it draws (the same key) and
draw it with ``st.vega_lite_chart(spec=...)``: the same element, built once.
"""

from __future__ import annotations

from typing import Any

# Streamlit's own conversion (private, pinned with streamlit in requirements.txt; the page
# tests draw every cached chart, so a change of it fails there).
from streamlit.elements.vega_charts import _convert_altair_to_vega_lite_spec


def spec(chart: Any) -> dict:
    """``chart`` (any Altair chart) as the spec ``st.altair_chart`` would draw."""
    return _convert_altair_to_vega_lite_spec(chart)
