"""The Data-parallel BN page's batch sweep: test error against the per-worker batch for local BN,
SyncBN and GroupNorm, beside the GroupNorm paper's numbers. Its own button, Stop and options
(``SWEEP_FIELDS``, carried in the URL as ``dp_sweep_*``); workers, model, width, depth, learning
rate and seed are the page's. The lab runs it (``run_page_sweep``); this only wires and draws.
"""

import time

import streamlit as st

from normcore.lab import limits
from normcore.lab.experiments import data_parallel as D
from normcore.lab.experiments import training as T
from normcore.lab.viz import data_parallel_charts as charts
from pages.shared import controls, redraw, widgets

STORE, RECORD = "dp_sweep_options", "dp_sweep_live"
RUN_LABEL = "▶️ Run the batch sweep"
TICK_S = 0.5  # while waiting on the workers, the progress bar is redrawn this often (and Stop noticed)
PCT = st.column_config.NumberColumn(format="%.1f%%")


def read_url(params: dict) -> None:
    """The sweep's options from the URL, on the first visit."""
    if STORE not in st.session_state:
        st.session_state[STORE], messages = D.SweepOptions.from_query(params)
        for message in messages:
            st.warning(message)


def query() -> dict:
    return st.session_state[STORE].to_query()


@st.cache_resource
def finished_sweeps() -> D.ResultCache:
    return D.ResultCache()


def option(name: str, where=st):
    convert = (list, tuple) if name == "batches" else ()
    return widgets.draw(D.SWEEP_FIELDS[name], where=where, **controls.bind(STORE, name, f"dp_sweep_{name}", *convert))


def follower(view: redraw.LiveView, record: D.SweepRecord):
    """``on_progress`` and ``should_stop`` for the runner: the chart redrawn on every new point,
    the progress bar every TICK_S (where Streamlit raises its stop exception after a click)."""
    shown, last = [-1], [0.0]

    def on_progress(_record) -> None:
        if len(record.points) != shown[0] or not record.running:
            view.draw(record)
            shown[0] = len(record.points)

    def should_stop() -> bool:
        if time.perf_counter() - last[0] >= TICK_S:
            view.progress(record)
            last[0] = time.perf_counter()
        return False
    return on_progress, should_stop


def controls_row(o: D.DataParallelOptions) -> tuple[bool, bool, list[str]]:
    c1, c2 = st.columns([1, 3])
    option("epochs", c1)
    option("batches", c2)
    s = st.session_state[STORE]
    found = D.sweep_problems(o, s)
    for message in found:
        st.error(message)
    b1, b2, b3 = st.columns([2, 2, 4])
    run_clicked = b1.button(RUN_LABEL, disabled=bool(found), width="stretch")
    stop_clicked = b2.button("⏹️ Stop the sweep", key="dp_sweep_stop", width="stretch")
    b3.caption(f"{3 * len(s.batches)} runs (3 norms × {len(s.batches)} batches) on {o.workers} workers with the model, "
               f"learning rate and seed above, capped at {limits.MAX_SWEEP_RUN_S:.0f} s; the default takes under a "
               "minute. One distributed run per server at a time; the same settings again come from the cache.")
    return run_clicked, stop_clicked, found


def section(o: D.DataParallelOptions) -> None:
    st.subheader("Accuracy against the batch per worker")
    st.markdown("Local BN normalizes over each worker's slice, so its statistics get noisy as the batch per worker "
                "shrinks; SyncBN's are the global batch's, GroupNorm's each sample's. Each (batch, norm) is one run.")
    run_clicked, stop_clicked, found = controls_row(o)
    record = st.session_state.get(RECORD)
    if record is not None and record.running:  # the previous script run was cut short mid-sweep
        record.mark_interrupted("Stopped by you: the workers were ended." if stop_clicked else
                                "Interrupted (a control changed while it was training): the workers were ended.")
    progress_box, message_box = st.empty(), st.empty()
    view = redraw.LiveView(progress_box, [c.empty() for c in st.columns(2)],
                           lambda r: [charts.sweep_chart(r.frame()), charts.paper_sweep_chart(D.paper_curves())])
    w = D.sweep_settings(o, st.session_state[STORE])
    if run_clicked and not found:
        record = finished_sweeps().get(w)
        if record is None:
            record = st.session_state[RECORD] = D.SweepRecord(w)
            view.progress(record)
            D.run_page_sweep(record, *follower(view, record))
            finished_sweeps().put(record)
        st.session_state[RECORD] = record
    elif not found and (cached := finished_sweeps().get(w)) is not None:
        record = st.session_state[RECORD] = cached
    if record is None:
        message_box.info(f"Press {RUN_LABEL}: the chart fills in as each (batch, norm) run finishes.")
    else:
        show(record, w, view, message_box)
    st.caption(D.SHAPE_NOTE)
    with st.expander("The GroupNorm paper (Wu & He 2018): ImageNet ResNet-50 top-1 error (%) by images per GPU"):
        st.dataframe(T.paper_table(), width="stretch")


def show(record: D.SweepRecord, w, view: redraw.LiveView, message_box) -> None:
    view.draw(record)
    if record.options != w:
        message_box.warning(f"This sweep is from earlier settings; press {RUN_LABEL} for the current ones.")
    elif record.status in ("failed", "timed out"):
        message_box.error(f"💥 {record.message}")
    elif record.status in ("stopped", "interrupted", "busy"):
        message_box.warning(f"⏹️ {record.message}")
    table = D.error_table(record.frame())
    table.index.name = "batch per worker"
    st.dataframe(table, width="stretch", column_config={c: PCT for c in table.columns})
    st.caption("Test error (%) of worker 0's model on the digits test split, by batch per worker.")
