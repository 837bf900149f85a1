"""The Data-parallel BN page's batch sweep: test error against the per-worker batch for local BN,
SyncBN and GroupNorm, beside the GroupNorm paper's numbers. Its own button, Stop and options
(``SWEEP_FIELDS``, carried in the URL as ``dp_sweep_*``); workers, model, width, depth, learning
rate and seed are the page's. The lab runs it (``run_page_sweep``); this only wires and draws.
"""

import streamlit as st

from normcore.lab import limits
from normcore.lab.experiments import data_parallel as D
from normcore.lab.experiments import training as T
from normcore.lab.viz import data_parallel_charts as charts
from pages.shared import redraw
from pages.shared.cached_run import CachedRun, show_status
from pages.shared.page_options import PageOptions

OPTIONS = PageOptions(D.SweepOptions, "dp_sweep_options", "dp_sweep_")
SWEEPS = CachedRun("dp_sweep_live", D.FinishedDataParallelRuns)
RUN_LABEL = "▶️ Run the batch sweep"
PCT = st.column_config.NumberColumn(format="%.1f%%")


def redraw_on_new_point(view: redraw.LiveView, record: D.SweepRecord):
    """``on_progress`` for the runner: the chart redrawn on every new point (and the last)."""
    shown = [-1]

    def on_progress(_record) -> None:
        if len(record.points) != shown[0] or not record.running:
            view.draw(record)
            shown[0] = len(record.points)
    return on_progress


def train(view: redraw.LiveView, record: D.SweepRecord) -> None:
    view.progress(record)
    D.run_page_sweep(record, redraw_on_new_point(view, record), view.stop_check(record))


def controls_row(o: D.DataParallelOptions) -> tuple[bool, bool, list[str]]:
    c1, c2 = st.columns([1, 3])
    OPTIONS.option("epochs", c1)
    OPTIONS.option("batches", c2)
    s = OPTIONS.current()
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
    SWEEPS.mark_cut_short(stop_clicked, "Stopped by you: the workers were ended.",
                          "Interrupted (a control changed while it was training): the workers were ended.")
    progress_box, message_box = st.empty(), st.empty()
    view = redraw.LiveView(progress_box, [c.empty() for c in st.columns(2)],
                           lambda r: [charts.sweep_chart(r.frame()), charts.paper_sweep_chart(D.paper_curves())])
    w = D.sweep_settings(o, OPTIONS.current())
    record, _ = SWEEPS.result(None if found else w, run_clicked, D.SweepRecord, lambda r: train(view, r))
    if record is None:
        message_box.info(f"Press {RUN_LABEL}: the chart fills in as each (batch, norm) run finishes.")
    else:
        show(record, w, view, message_box)
    st.caption(D.SHAPE_NOTE)
    with st.expander("The GroupNorm paper (Wu & He 2018): ImageNet ResNet-50 top-1 error (%) by images per GPU"):
        st.dataframe(T.paper_table(), width="stretch")


def show(record: D.SweepRecord, w, view: redraw.LiveView, message_box) -> None:
    view.draw(record)
    show_status(message_box, record, record.options == w,
                f"This sweep is from earlier settings; press {RUN_LABEL} for the current ones.")
    table = D.error_table(record.frame())
    table.index.name = "batch per worker"
    st.dataframe(table, width="stretch", column_config={c: PCT for c in table.columns})
    st.caption("Test error (%) of worker 0's model on the digits test split, by batch per worker.")
