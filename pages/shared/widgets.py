"""Draw a control from its schema field (``normcore.lab.fields.Field``), nothing else.

The widget's kind, label, help, range, step, format and option labels all come from the
field, so no page re-types a range. The value lives in ``st.session_state[key]``: a page seeds
it (``controls.bind`` or a default) before the widget is drawn and reads it back after.
"""

from __future__ import annotations

import streamlit as st

from normcore.lab.fields import Field


def _number(f: Field, value):
    return int(value) if f.kind == "int" else float(value)


def draw(f: Field, key: str, where=st, *, label: str | None = None, **extra):
    """Draw ``f``'s widget in ``where`` (``st``, a column, the sidebar) under ``key``.
    ``extra`` goes to the widget as it is (``disabled``, ``on_change``, ``label_visibility``)."""
    args = dict(key=key, help=f.help or None, **extra)
    label = label or f.label
    kind = f.widget_kind
    if kind == "toggle":
        return where.toggle(label, **args)
    if kind in ("selectbox", "radio", "multiselect"):
        widget = {"selectbox": where.selectbox, "radio": where.radio, "multiselect": where.multiselect}[kind]
        short = sum(len(f.label_of(o)) for o in f.options) < 80  # side by side when they fit
        horizontal = {"horizontal": args.pop("horizontal", short)} if kind == "radio" else {}
        return widget(label, list(f.options), format_func=f.label_of, **horizontal, **args)
    if kind == "select_slider":
        return where.select_slider(label, options=list(f.options), format_func=f.label_of, **args)
    bounds = dict(min_value=_number(f, f.low), max_value=_number(f, f.high))
    if f.step is not None:
        bounds["step"] = _number(f, f.step)
    if f.format:
        bounds["format"] = f.format
    if kind == "number_input":
        return where.number_input(label, **bounds, **args)
    return where.slider(label, **bounds, **args)
