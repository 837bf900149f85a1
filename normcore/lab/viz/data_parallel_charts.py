"""Charts for the Data-parallel BN page, from the frames of ``normcore.lab.experiments.data_parallel``.

Each chart is a Vega-Lite spec (a dict, data under ``"datasets"``) for ``st.vega_lite_chart``.
The live ones (accuracy by epoch, step time) are written with Altair once and only get new
frames while a run trains (:mod:`normcore.lab.viz.specs`). Each norm keeps one colour.
"""

from __future__ import annotations

from functools import lru_cache

import altair as alt
import pandas as pd

from normcore.lab.viz import specs
from normcore.lab.experiments.data_parallel import tables

NORM_ORDER = ("local BN", "SyncBN", "GroupNorm")
NORM_COLORS = ("#1f77b4", "#9467bd", "#2ca02c")  # local BN blue like BatchNorm elsewhere, GN green
HEIGHT = 260
WORKER_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")  # one per worker (at most 4)


def _norm_color(title: str = "normalization") -> alt.Color:
    return alt.Color("norm:N", title=title, scale=alt.Scale(domain=list(NORM_ORDER), range=list(NORM_COLORS)))


@lru_cache(maxsize=4)
def _accuracy_template() -> str:
    chart = alt.Chart(specs.named("accuracy")).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("test accuracy:Q", title="test accuracy (worker 0)", scale=alt.Scale(zero=False), axis=alt.Axis(format="%")),
        color=_norm_color(), tooltip=["norm:N", "epoch:Q", alt.Tooltip("test accuracy:Q", format=".1%")],
    ).properties(height=HEIGHT, title="Test accuracy by epoch")
    return specs.template(chart)


@lru_cache(maxsize=4)
def _step_time_template() -> str:
    chart = alt.Chart(specs.named("steps")).mark_bar().encode(
        y=alt.Y("norm:N", title=None, sort=list(NORM_ORDER)),
        x=alt.X("ms:Q", title="ms per worker and step", stack="zero"),
        color=alt.Color("part:N", title="part of the step",
                        scale=alt.Scale(domain=["compute (incl. DDP gradient all-reduce)", "SyncBN collectives"],
                                        range=["#bbbbbb", "#d62728"])),
        tooltip=["norm:N", "part:N", alt.Tooltip("ms:Q", format=".2f")],
    ).properties(height=HEIGHT, title="Step time: compute vs SyncBN's collectives")
    return specs.template(chart)


def accuracy_chart(comparison) -> dict:
    return specs.with_data(_accuracy_template(), accuracy=tables.accuracy_frame(comparison))


def step_time_chart(comparison) -> dict:
    return specs.with_data(_step_time_template(), steps=tables.step_time_table(comparison))


def live_charts(comparison) -> list[dict]:
    """The two charts redrawn while a run trains."""
    return [accuracy_chart(comparison), step_time_chart(comparison)]


def rank_means_chart(frame: pd.DataFrame) -> dict:
    """Each worker's running mean per channel of the first BatchNorm, one panel per norm."""
    chart = alt.Chart(frame).mark_point(filled=True, size=60).encode(
        x=alt.X("channel:O", title="channel of the first BatchNorm"),
        y=alt.Y("running mean:Q", title="running mean"),
        color=alt.Color("worker:N", title="worker", scale=alt.Scale(range=list(WORKER_COLORS))), shape=alt.Shape("worker:N"),
        tooltip=["norm", "worker", "channel", alt.Tooltip("running mean:Q", format=".4f")],
    ).properties(height=200, width=320).facet(column=alt.Column("norm:N", title=None, sort=list(NORM_ORDER)))
    return chart.to_dict()



PAPER_COLORS = ("#1f77b4", "#2ca02c")  # the paper's BN (per GPU) like local BN, its GN like GroupNorm
BATCH_AXIS = dict(type="log", base=2)


def sweep_chart(frame: pd.DataFrame) -> dict:
    """The lab's batch sweep: test error (%) against the per-worker batch (log2), one line per norm."""
    chart = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("per_worker_batch:Q", title="batch per worker (log scale)", scale=alt.Scale(**BATCH_AXIS),
                axis=alt.Axis(values=[2, 4, 8, 16, 32, 64])),
        y=alt.Y("test error:Q", title="test error (%), digits"), color=_norm_color(),
        tooltip=["norm:N", "per_worker_batch:Q", alt.Tooltip("test error:Q", format=".1f")],
    ).properties(height=HEIGHT, title="This lab: test error by batch per worker")
    return chart.to_dict()


def paper_sweep_chart(frame: pd.DataFrame) -> dict:
    """The GroupNorm paper's curves (``sweep.paper_curves``): top-1 error (%) against images per GPU."""
    chart = alt.Chart(frame).mark_line(point=True, strokeDash=[4, 2]).encode(
        x=alt.X("per_worker_batch:Q", title="images per GPU (log scale)", scale=alt.Scale(**BATCH_AXIS),
                axis=alt.Axis(values=[2, 4, 8, 16, 32])),
        y=alt.Y("top-1 error:Q", title="top-1 error (%), ImageNet", scale=alt.Scale(zero=False)),
        color=alt.Color("norm:N", title="paper", scale=alt.Scale(range=list(PAPER_COLORS))),
        tooltip=["norm:N", "per_worker_batch:Q", "top-1 error:Q"],
    ).properties(height=HEIGHT, title="The GroupNorm paper: ImageNet top-1 error")
    return chart.to_dict()
