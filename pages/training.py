"""Training comparison: normalizations × devices, trained live, plus batch-size and learning-rate sweeps.

Widgets (drawn from ``normcore.lab.experiments.training.SCHEMA``) -> a ``RunConfig`` -> ``run``
-> charts. The run records into a ``LiveRun`` kept in session_state, so when Stop (or any
control) reruns the page mid-run, the partial results are still there to show. Finished runs
are cached across sessions by configuration, so the same settings come back instantly.
"""

import streamlit as st

from normcore.lab import devices, limits
from normcore.lab.experiments import training as T
from normcore.lab.viz import training_charts as charts
from pages.shared import controls, redraw, url, widgets
from pages.shared.cached_run import CachedRun, show_status

AUTORUN, UPLOAD_SEEN, URL_READ = "training_autorun", "training_upload_seen", "training_url_read"
RUNS = CachedRun("training_live", T.FinishedTrainingRuns)
# The page's own controls under the mode, row by row: each column's fields, top to bottom.
LAYOUT = ((("dataset", "separation"), ("model", "activation"), ("width", "depth"), ("probe_layer", "impl")),
          (("norms",), ("lr", "epochs"), ("optimizer",), ("devices",)))


def key(name: str) -> str:
    return f"training_{name}"


def set_controls(values: dict) -> None:
    """Put page-field values (widget form: lists) into their widgets' state, before they are drawn."""
    for name, value in values.items():
        st.session_state[key(name)] = value


def load(upload) -> None:
    """A loaded configuration sets every control (before they are drawn) and runs once."""
    if upload is None or upload.file_id == st.session_state.get(UPLOAD_SEEN):
        return
    st.session_state[UPLOAD_SEEN] = upload.file_id
    try:
        loaded = T.from_upload(upload.getvalue())
    except T.ConfigError as exc:
        st.error("This file cannot be loaded:\n\n" + "\n".join(f"- {m}" for m in exc.messages))
        return
    set_controls(T.page_values(loaded))
    controls.update(**T.shared_values(loaded))
    st.session_state[AUTORUN] = True
    st.success("Configuration loaded: re-running that experiment.")


def page_controls() -> dict:
    """The page's own widgets, seeded once from a shared link, then from their state."""
    from_url, messages = url.read_once(T.page_schema(), URL_READ)
    set_controls(T.widget_form(from_url))
    for message in messages:
        st.warning(message)
    for name, default in T.page_defaults().items():  # through session_state only (a widget given both warns)
        st.session_state.setdefault(key(name), default)
    off = T.inactive({name: st.session_state[key(name)] for name in T.PAGE_FIELDS})
    widgets.draw(T.SCHEMA["mode"], key("mode"), horizontal=True)
    for row in LAYOUT:
        for column, names in zip(st.columns(len(row)), row):
            for name in names:
                widgets.draw(T.SCHEMA[name], key(name), column, disabled=name in off)
    return {name: st.session_state[key(name)] for name in T.PAGE_FIELDS}


def show_results(live: T.LiveRun) -> None:
    summary = live.summary()
    table = T.results_table(summary)
    st.subheader("Results")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(**f) for c, f in T.RESULT_FORMATS.items()})
    for note in T.diverged_notes(summary):
        st.error(f"💥 {note}")
    d1, d2, _ = st.columns([1, 1, 3])
    d1.download_button("⬇️ Results (CSV)", table.to_csv(index=False), "training_results.csv", "text/csv", width="stretch")
    d2.download_button("⬇️ Configuration (JSON)", live.config.to_json(), "training_config.json", "application/json", width="stretch")
    cfg = live.config
    if cfg.mode == "compare":
        st.subheader("Pre-activation percentiles: with BatchNorm vs without (Ioffe & Szegedy 2015, Fig. 1)")
        if {"batch", "none"} <= set(cfg.norms):
            st.vega_lite_chart(charts.percentile_chart(live.history(), min(cfg.probe_layer, cfg.depth)), width="stretch")
        else:
            st.info("Include both BatchNorm and No norm in the normalizations to compare their pre-activations.")
    elif cfg.mode == "batch_sweep":
        st.dataframe(T.paper_table(), width="stretch")
    else:
        st.dataframe(T.largest_lr_table(summary, T.chance_accuracy(cfg)), hide_index=True)
    st.caption(T.MODE_NOTES[cfg.mode])


st.title("🏋️ Training comparison")
st.caption("Small MLPs and CNNs on sklearn's 8×8 digits (or synthetic clusters), one per normalization, trained live.")
with st.expander("📂 Load a saved run configuration (JSON)"):
    load(st.file_uploader("Run configuration", type=["json"], key=key("upload"),
                          help=f"A file saved with the download button below; at most {limits.MAX_CONFIG_BYTES:,} bytes."))
s = controls.sidebar(T.SHARED_FIELDS)
chosen = page_controls()
if note := devices.no_accelerator_message():
    st.info(f"🖥️ {note}")
controls.sync_url(T.to_query(chosen, T.page_defaults()), page_params=tuple(T.URL_NAMES.values()))  # a link to this comparison
try:
    config = T.from_page(chosen, s)
    variants, problems = T.plan(config)
except T.ConfigError as exc:
    config, variants, problems = None, [], [T.Problem("error", m) for m in exc.messages]
blocked = controls.show(problems) or config is None

b1, b2, b3 = st.columns([1, 1, 4])
run_clicked = b1.button("▶️ Run", type="primary", disabled=blocked, width="stretch")
stop_clicked = b2.button("⏹️ Stop", width="stretch", help="Stops the run; what it trained so far stays on the page.")
b3.caption(f"{len(variants)} run(s) · one run at a time per session; a rerun with the same settings comes from the cache.")

RUNS.mark_cut_short(stop_clicked, "Stopped by you.", "Interrupted: a control changed while it was training.")
progress_box, message_box = st.empty(), st.empty()
view = redraw.LiveView(progress_box, [c.empty() for c in st.columns(2)], charts.live_run_charts)
run = (run_clicked or st.session_state.pop(AUTORUN, False)) and not blocked
live, trained = RUNS.result(config, run, lambda c: T.LiveRun(c, variants),
                            lambda lv: view.follow(lv, lambda on_progress: T.run(config, lv, on_progress=on_progress)))

if live is None:
    message_box.info("Choose the settings and press ▶️ Run. The curves update while it trains.")
    st.stop()
if not trained:
    view.draw(live)
show_status(message_box, live, config is None or live.config == config,
            "These results are from earlier settings; press ▶️ Run for the current ones.",
            " The table shows what finished before that.")
show_results(live)
