"""Charts that are redrawn while something runs: a Vega-Lite spec written once, data swapped in.

Building an Altair chart and validating it costs ~5–20 ms, more than everything else a
live redraw does at this lab's sizes. A live chart's *shape* (its encodings, scales and
legends) changes rarely, its data at every redraw. So a chart builder writes the spec with
Altair once per shape, on named data (:func:`named`), and caches :func:`template`'s JSON;
each redraw is :func:`with_data`: a copy of that JSON with the current frames under
``"datasets"``. ``st.vega_lite_chart`` draws the result (it sends each frame as Arrow).
"""

from __future__ import annotations

import json

import altair as alt
import pandas as pd


def named(name: str) -> alt.NamedData:
    """Data a template refers to by ``name``; :func:`with_data` supplies it."""
    return alt.NamedData(name=name)


def template(chart: alt.TopLevelMixin) -> str:
    """``chart``'s spec, validated by Altair, as JSON without data or Altair's default view
    size (Streamlit sizes the chart; ``st.altair_chart`` drops that config too)."""
    spec = chart.to_dict()
    view = spec.get("config", {}).pop("view", None)
    if view is not None and not spec["config"]:
        del spec["config"]
    return json.dumps(spec)


def with_data(template_json: str, **frames: pd.DataFrame) -> dict:
    """A fresh spec from ``template_json`` with ``frames`` as its named datasets."""
    spec = json.loads(template_json)
    spec["datasets"] = frames
    return spec


__all__ = ["named", "template", "with_data"]
