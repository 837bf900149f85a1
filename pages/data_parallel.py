"""Data-parallel BN: local BatchNorm, SyncBatchNorm and GroupNorm trained on real worker processes.

Widgets (``normcore.lab.experiments.data_parallel.FIELDS``, carried in the URL) -> a
``Comparison`` -> ``run`` (the lab's distributed runner, as ``python -m normcore.lab.distributed``)
-> charts. The comparison lives in session_state, so when Stop (or a closed tab) ends the
script run mid-training, the runner ends the workers as the exception passes, and what
arrived stays on the page. Finished runs are cached across sessions by settings.
"""

import time

import streamlit as st

from normcore.lab import limits
from normcore.lab.experiments import data_parallel as D
from normcore.lab.viz import data_parallel_charts as charts
from pages.data_parallel_parts import results, sweep
from pages.shared import controls, redraw, widgets

OPTIONS, LIVE = "dp_options", "dp_live"
TICK_S = 0.5  # while waiting on the workers, the progress bar is redrawn this often (and Stop noticed)

if OPTIONS not in st.session_state:  # first visit: the page's options from the URL
    st.session_state[OPTIONS], url_messages = D.DataParallelOptions.from_query(st.query_params.to_dict())
    for message in url_messages:
        st.warning(message)
sweep.read_url(st.query_params.to_dict())


@st.cache_resource
def finished_runs() -> D.ResultCache:
    return D.ResultCache()


def option(name: str, where=st, **extra):
    """A page control drawn from its field, bound to the options store (norms: a list in the widget)."""
    convert = (list, tuple) if name == "norms" else ()
    return widgets.draw(D.FIELDS[name], where=where, **controls.bind(OPTIONS, name, f"dp_{name}", *convert), **extra)


def ticker(view: redraw.LiveView, comparison: D.Comparison):
    """``should_stop`` for the runner: redraws the progress bar every TICK_S, which is where
    Streamlit raises its rerun/stop exception after a click on Stop or a closed tab."""
    last = [0.0]

    def should_stop() -> bool:
        if time.perf_counter() - last[0] >= TICK_S:
            view.progress(comparison)
            last[0] = time.perf_counter()
        return False
    return should_stop


st.title("👥 Data-parallel BN")
st.markdown("Real `torch.distributed` worker processes on this machine (gloo, one CPU thread each) train the digits "
            "classifier with DDP, each on its slice of every batch: **local BN** (each worker's own statistics, what "
            "plain DDP gives), **SyncBN** (the global batch's) and **GroupNorm** (per sample), one after the other.")
controls.sidebar(())  # the shared controls do not apply here
option("norms")
row = st.columns(4)
for column, name in zip(row, ("workers", "per_worker_batch", "epochs", "model")):
    option(name, column)
row = st.columns(4)
for column, name in zip(row, ("width", "depth", "lr", "seed")):
    option(name, column)
option("broadcast_buffers")
o: D.DataParallelOptions = st.session_state[OPTIONS]
controls.sync_url(o.to_query() | sweep.query(), page_params=D.FIELDS.url_names + D.SWEEP_FIELDS.url_names)
found = D.problems(o)
for message in found:
    st.error(message)

b1, b2, b3 = st.columns([1, 1, 4])
run_clicked = b1.button("▶️ Run", type="primary", disabled=bool(found), width="stretch")
stop_clicked = b2.button("⏹️ Stop", width="stretch", help="Ends the worker processes; what finished stays on the page.")
b3.caption(f"{o.workers} workers × ~230 MB · at most {limits.MAX_WORKERS} workers and one run per server at a time; "
           f"a run is capped at {limits.MAX_DISTRIBUTED_RUN_S:.0f} s. The same settings again come from the cache.")

live = st.session_state.get(LIVE)
if live is not None and live.running:  # the previous script run was cut short mid-training
    live.mark_interrupted("Stopped by you: the workers were ended." if stop_clicked else
                          "Interrupted (a control changed while it was training): the workers were ended.")
progress_box, message_box = st.empty(), st.empty()
view = redraw.LiveView(progress_box, [c.empty() for c in st.columns(2)], charts.live_charts)

if run_clicked and not found:
    live = finished_runs().get(o)
    if live is None:
        live = st.session_state[LIVE] = D.Comparison(o)
        budget = redraw.DrawBudget()
        view.progress(live)
        D.run(live, lambda c: budget.draw(c, view.draw, view.progress), ticker(view, live))
        finished_runs().put(live)
    st.session_state[LIVE] = live
elif not found and (cached := finished_runs().get(o)) is not None:
    live = st.session_state[LIVE] = cached

if live is None:
    message_box.info("Choose the settings and press ▶️ Run: the workers start (a few seconds) and the curves update "
                     "as they train.")
else:
    view.draw(live)
    if live.options != o:
        message_box.warning("These results are from earlier settings; press ▶️ Run for the current ones.")
    elif live.status in ("failed", "timed out"):
        message_box.error(f"💥 {live.message}")
    elif live.status in ("stopped", "interrupted", "busy"):
        message_box.warning(f"⏹️ {live.message}")
    results.show_accuracy(live)
    results.show_statistics(live)
    results.show_step_time(live)
    results.show_accumulation(live.options)
sweep.section(o)
results.show_notes()
