"""Training comparison: normalizations × devices, trained live, plus batch-size and learning-rate sweeps.

Widgets -> a ``RunConfig`` -> ``normcore.lab.experiments.training.run`` -> charts. The run records
into a ``LiveRun`` kept in session_state, so when Stop (or any control) reruns the page
mid-run, the partial results are still there to show. Finished runs are cached across
sessions by configuration, so the same settings come back instantly.
"""

import streamlit as st

from normcore.lab import datasets, devices, limits, models
from normcore.lab.experiments import training as T
from normcore.lab.loop import OPTIMIZER_LABELS
from normcore.lab.viz import training_charts as charts
from pages.shared import controls

LIVE, AUTORUN, UPLOAD_SEEN, URL_READ = "training_live", "training_autorun", "training_upload_seen", "training_url_read"


@st.cache_resource
def finished_runs() -> T.ResultCache:
    return T.ResultCache(max_entries=32)


def key(name: str) -> str:
    return f"training_{name}"


def set_controls(values: dict) -> None:
    """Put page-field values (widget form: lists) into their widgets' state, before they are drawn."""
    for name, value in values.items():
        st.session_state[key(name)] = value


st.title("🏋️ Training comparison")
st.caption("Small MLPs and CNNs on sklearn's 8×8 digits (or synthetic clusters), one per normalization, trained live.")

# A loaded configuration sets every control (before they are drawn) and runs once.
with st.expander("📂 Load a saved run configuration (JSON)"):
    upload = st.file_uploader("Run configuration", type=["json"], key=key("upload"),
                              help=f"A file saved with the download button below; at most {limits.MAX_CONFIG_BYTES:,} bytes.")
if upload is not None and upload.file_id != st.session_state.get(UPLOAD_SEEN):
    st.session_state[UPLOAD_SEEN] = upload.file_id
    try:
        loaded = T.from_json(upload.getvalue())
    except T.ConfigError as exc:
        st.error("This file cannot be loaded:\n\n" + "\n".join(f"- {m}" for m in exc.messages))
    else:
        set_controls({name: value for name, value in loaded.values().items() if name in T.PAGE_FIELDS})
        controls.update(**{name: getattr(loaded, name) for name in T.SHARED_FIELDS})
        st.session_state[AUTORUN] = True
        st.success("Configuration loaded: re-running that experiment.")

s = controls.sidebar(T.SHARED_FIELDS)
# Defaults go through session_state only (a loaded file and a shared link write there too;
# a widget given both a value and a key warns). A link is read once per session.
DEFAULTS = T.page_defaults()
if not st.session_state.get(URL_READ):
    st.session_state[URL_READ] = True
    from_url, url_messages = T.from_query(st.query_params.to_dict())
    set_controls(from_url)
    for message in url_messages:
        st.warning(message)
for name, default in DEFAULTS.items():
    st.session_state.setdefault(key(name), default)

mode = st.radio("Mode", T.MODES, format_func=T.MODE_LABELS.get, horizontal=True, key=key("mode"))
c1, c2, c3, c4 = st.columns(4)
dataset = c1.selectbox("Data set", datasets.DATASETS, format_func=datasets.DATASET_LABELS.get, key=key("dataset"))
c1.slider("Cluster separation (noise stds)", 0.0, 20.0, step=0.5, key=key("separation"),
          disabled=dataset != "clusters", help="Distance between class means; 0 = pure noise.")
c2.selectbox("Model", models.MODEL_KINDS, format_func=models.MODEL_LABELS.get, key=key("model"))
c2.selectbox("Activation", list(models.ACTIVATIONS), key=key("activation"))
c3.slider("Width (units or channels)", 1, limits.MAX_WIDTH, key=key("width"))
c3.slider("Hidden blocks", 1, limits.MAX_DEPTH, key=key("depth"))
c4.slider("Block tracked for percentiles", 1, limits.MAX_DEPTH, key=key("probe_layer"))
c4.radio("Implementation", models.IMPLS, horizontal=True, key=key("impl"), help="normcore's layers or torch.nn's.")
c1, c2, c3, c4 = st.columns(4)
c1.multiselect("Normalizations", models.NORMS, format_func=models.NORM_LABELS.get, key=key("norms"),
               disabled=mode != "compare", help="Sweeps use their own fixed sets.")
c2.number_input("Learning rate", 1e-6, 100.0, format="%g", key=key("lr"))
c2.slider("Epochs", 1, limits.MAX_EPOCHS, key=key("epochs"))
c3.selectbox("Optimizer", list(OPTIMIZER_LABELS), format_func=OPTIMIZER_LABELS.get, key=key("optimizer"))
c4.multiselect("Devices", [t.key for t in devices.all_targets()], key=key("devices"),
               format_func=lambda k: devices.parse_target(k).label, help="Sweeps use the first device.")
if note := devices.no_accelerator_message():
    st.info(f"🖥️ {note}")

chosen = {name: st.session_state[key(name)] for name in T.PAGE_FIELDS}
controls.sync_url(T.to_query(chosen, DEFAULTS), page_params=tuple(T.URL_NAMES.values()))  # a link to this comparison
try:
    config = T.from_dict(chosen | {name: getattr(s, name) for name in T.SHARED_FIELDS})
    variants, problems = T.plan(config)
except T.ConfigError as exc:
    config, variants, problems = None, [], [T.Problem("error", m) for m in exc.messages]
for p in problems:
    (st.error if p.level == "error" else st.warning)(p.message)
blocked = config is None or any(p.level == "error" for p in problems)

b1, b2, b3 = st.columns([1, 1, 4])
run_clicked = b1.button("▶️ Run", type="primary", disabled=blocked, width="stretch")
stop_clicked = b2.button("⏹️ Stop", width="stretch", help="Stops the run; what it trained so far stays on the page.")
b3.caption(f"{len(variants)} run(s) · one run at a time per session; a rerun with the same settings comes from the cache.")

live = st.session_state.get(LIVE)
if live is not None and live.running:  # the previous script run was cut short mid-training
    live.mark_interrupted("Stopped by you." if stop_clicked else "Interrupted: a control changed while it was training.")
progress_box, message_box = st.empty(), st.empty()
left, right = (c.empty() for c in st.columns(2))


def show_progress(live: T.LiveRun) -> None:
    progress_box.progress(live.fraction, text=live.progress_text())


def draw(live: T.LiveRun) -> None:
    show_progress(live)
    for box, spec in zip((left, right), charts.live_charts(**live.chart_frames())):
        box.vega_lite_chart(spec, width="stretch")


trained = False
if (run_clicked or st.session_state.pop(AUTORUN, False)) and not blocked:
    live = finished_runs().get(config)
    if live is None:
        live = st.session_state[LIVE] = T.LiveRun(config, variants)
        show_progress(live)  # the charts follow at the first redraw (DrawBudget), once there is something to draw
        budget = T.DrawBudget()  # redraws a bounded share of the time; the final state is drawn by the last report
        trained = T.run(config, live, on_progress=lambda lv: budget.draw(lv, draw, show_progress)) is live
        finished_runs().put(live)
    st.session_state[LIVE] = live
elif config is not None and (cached := finished_runs().get(config)) is not None:
    live = st.session_state[LIVE] = cached  # these settings ran before: show them at once

if live is None:
    message_box.info("Choose the settings and press ▶️ Run. The curves update while it trains.")
    st.stop()
if not trained:
    draw(live)
if config is not None and live.config != config:
    message_box.warning("These results are from earlier settings; press ▶️ Run for the current ones.")
elif live.status == "stopped":
    message_box.warning(f"⏹️ {live.message} The table shows what finished before that.")

summary = live.summary()
table = T.results_table(summary)
st.subheader("Results")
number = st.column_config.NumberColumn
st.dataframe(table, hide_index=True, width="stretch", column_config={
    "Train accuracy": number(format="percent", help="Over the last epoch's training batches, as trained (train mode)."),
    "Test accuracy": number(format="percent", help="On the held-out test set after the last epoch, in eval mode."),
    "Time per epoch (s)": number(format="%.3f"), "Samples/s": number(format="%.0f"),
    "Speed-up vs CPU": number(format="%.2f×", help="Samples/s against the CPU run with the fewest threads, same normalization.")})
for note in [n for n in summary["note"] if str(n).startswith("Diverged")]:
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
