"""The Gradients page's parts, one module each, in the order of its tabs. Each part draws its
own controls (fields of ``normcore.lab.experiments.gradients.FIELDS``), calls the lab and
renders what comes back; ``common`` holds what they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import streamlit as st

from pages.gradients_parts import backprop, coupling, flow, landscape


def backprop_and_coupling() -> None:
    """Parts 1 and 2 share the small input, so they share a tab."""
    st.caption("Parts 1–2 have their own small input (at most 64 values), set below, and compute in float64.")
    if backprop.input_controls():
        backprop.render()
        coupling.render()


@dataclass(frozen=True)
class Part:
    key: str
    title: str
    render: Callable[[], None]


PARTS = (
    Part("backprop", "1–2 · Backprop and coupling", backprop_and_coupling),
    Part("flow", "3 · Gradient flow in depth", flow.render),
    Part("landscape", "4 · The landscape", landscape.render),
)
