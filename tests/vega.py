"""Checks for the Vega-Lite specs the live charts hand to ``st.vega_lite_chart``."""

import json

import altair as alt


def validated(spec: dict) -> dict:
    """``spec`` with its frames inlined as records, checked against the Vega-Lite schema by
    Altair; every field it encodes must be a column of the dataset that layer draws."""
    datasets = {name: frame.to_dict("records") for name, frame in spec["datasets"].items()}
    for part in spec.get("layer", [spec]):
        columns = set(spec["datasets"][part["data"]["name"]].columns)
        encoded = [e for enc in part["encoding"].values() for e in (enc if isinstance(enc, list) else [enc]) if "field" in e]
        assert {e["field"] for e in encoded} <= columns, (part["data"]["name"], columns)
    inline = json.loads(json.dumps(spec | {"datasets": datasets}))  # plain JSON: what the browser gets
    (alt.LayerChart if "layer" in spec else alt.Chart).from_dict(inline, validate=True)
    return inline
