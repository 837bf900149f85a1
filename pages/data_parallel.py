"""Data-parallel BN: local BatchNorm, SyncBatchNorm and GroupNorm trained on real worker processes.

Widgets (``normcore.lab.experiments.data_parallel.FIELDS``, carried in the URL) -> a
``Comparison`` -> ``run`` (the lab's distributed runner, as ``python -m normcore.lab.distributed``)
-> charts. The comparison lives in session_state, so when Stop (or a closed tab) ends the
script run mid-training, the runner ends the workers as the exception passes, and what
arrived stays on the page. Finished runs are cached across sessions by settings.
"""

import streamlit as st

from normcore.lab import limits
from normcore.lab.experiments import data_parallel as D
from normcore.lab.viz import data_parallel_charts as charts
from pages.data_parallel_parts import results, sweep
from pages.shared import controls, redraw
from pages.shared.cached_run import CachedRun, show_status
from pages.shared.page_options import PageOptions, sync_url

OPTIONS = PageOptions(D.DataParallelOptions, "dp_options", "dp_")
RUNS = CachedRun("dp_live", D.FinishedDataParallelRuns)
OPTIONS.current()  # first visit: the page's options from the URL (a bad parameter is explained here)
sweep.OPTIONS.current()

st.title("👥 Data-parallel BN")
st.markdown("Real `torch.distributed` worker processes on this machine (gloo, one CPU thread each) train the digits "
            "classifier with DDP, each on its slice of every batch: **local BN** (each worker's own statistics, what "
            "plain DDP gives), **SyncBN** (the global batch's) and **GroupNorm** (per sample), one after the other.")
controls.sidebar(())  # the shared controls do not apply here
OPTIONS.option("norms")
for row in (("workers", "per_worker_batch", "epochs", "model"), ("width", "depth", "lr", "seed")):
    for column, name in zip(st.columns(4), row):
        OPTIONS.option(name, column)
OPTIONS.option("broadcast_buffers")
o: D.DataParallelOptions = OPTIONS.current()
sync_url(OPTIONS, sweep.OPTIONS)
found = D.problems(o)
for message in found:
    st.error(message)

b1, b2, b3 = st.columns([1, 1, 4])
run_clicked = b1.button("▶️ Run", type="primary", disabled=bool(found), width="stretch")
stop_clicked = b2.button("⏹️ Stop", width="stretch", help="Ends the worker processes; what finished stays on the page.")
b3.caption(f"{o.workers} workers × ~230 MB · at most {limits.MAX_WORKERS} workers and one run per server at a time; "
           f"a run is capped at {limits.MAX_DISTRIBUTED_RUN_S:.0f} s. The same settings again come from the cache.")

RUNS.mark_cut_short(stop_clicked, "Stopped by you: the workers were ended.",
                    "Interrupted (a control changed while it was training): the workers were ended.")
progress_box, message_box = st.empty(), st.empty()
view = redraw.LiveView(progress_box, [c.empty() for c in st.columns(2)], charts.live_charts)
live, _ = RUNS.result(None if found else o, run_clicked, D.Comparison,
                      lambda c: view.follow(c, lambda on_progress: D.run(c, on_progress, view.stop_check(c))))

if live is None:
    message_box.info("Choose the settings and press ▶️ Run: the workers start (a few seconds) and the curves update "
                     "as they train.")
else:
    view.draw(live)
    show_status(message_box, live, live.options == o, "These results are from earlier settings; press ▶️ Run for the "
                "current ones.")
    results.show_accuracy(live)
    results.show_statistics(live)
    results.show_step_time(live)
    results.show_accumulation(live.options)
sweep.section(o)
results.show_notes()
