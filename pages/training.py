"""Training comparison: normalizations × devices, trained live, plus batch-size and learning-rate sweeps.

Widgets -> a ``RunConfig`` -> ``normcore.experiments.training.run`` -> charts. The run records
into a ``LiveRun`` kept in session_state, so when Stop (or any control) reruns the page
mid-run, the partial results are still there to show. Finished runs are cached across
sessions by configuration, so the same settings come back instantly.
"""

import time

import streamlit as st

from normcore import datasets, devices, limits, models
from normcore.experiments import training as T
from normcore.training import OPTIMIZER_LABELS
from normcore.viz import training as charts
from pages.shared import controls

LIVE, AUTORUN, UPLOAD_SEEN = "training_live", "training_autorun", "training_upload_seen"
SHARED = ("batch_size", "momentum", "eps", "num_groups", "seed")
RENDER_EVERY_S = 0.5  # redraw the live charts at most this often (the rest is training time)


@st.cache_resource
def finished_runs() -> T.ResultCache:
    return T.ResultCache(max_entries=32)


def key(name: str) -> str:
    return f"training_{name}"


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
        for name in T.SPECS:
            if name not in SHARED:
                st.session_state[key(name)] = list(getattr(loaded, name)) if name in ("norms", "devices") else getattr(loaded, name)
        controls.update(**{name: getattr(loaded, name) for name in SHARED})
        st.session_state[AUTORUN] = True
        st.success("Configuration loaded: re-running that experiment.")

s = controls.sidebar(SHARED)
# Defaults go through session_state only (a loaded file writes there too; a widget given both warns).
for name, default in (vars(T.RunConfig()) | {"devices": tuple(t.key for t in devices.comparison_targets())}).items():
    if name not in SHARED:
        st.session_state.setdefault(key(name), list(default) if isinstance(default, tuple) else default)

mode = st.radio("Mode", T.MODES, format_func=T.MODE_LABELS.get, horizontal=True, key=key("mode"))
c1, c2, c3, c4 = st.columns(4)
dataset = c1.selectbox("Data set", datasets.DATASETS, format_func=datasets.DATASET_LABELS.get, key=key("dataset"))
separation = c1.slider("Cluster separation (noise stds)", 0.0, 20.0, step=0.5, key=key("separation"),
                       disabled=dataset != "clusters", help="Distance between class means; 0 = pure noise.")
model = c2.selectbox("Model", models.MODEL_KINDS, format_func=models.MODEL_LABELS.get, key=key("model"))
activation = c2.selectbox("Activation", list(models.ACTIVATIONS), key=key("activation"))
width = c3.slider("Width (units or channels)", 1, limits.MAX_WIDTH, key=key("width"))
depth = c3.slider("Hidden blocks", 1, limits.MAX_DEPTH, key=key("depth"))
probe_layer = c4.slider("Block tracked for percentiles", 1, limits.MAX_DEPTH, key=key("probe_layer"))
impl = c4.radio("Implementation", models.IMPLS, horizontal=True, key=key("impl"), help="normcore's layers or torch.nn's.")
c1, c2, c3, c4 = st.columns(4)
norms = c1.multiselect("Normalizations", models.NORMS, format_func=models.NORM_LABELS.get, key=key("norms"),
                       disabled=mode != "compare", help="Sweeps use their own fixed sets.")
lr = c2.number_input("Learning rate", 1e-6, 100.0, format="%g", key=key("lr"))
epochs = c2.slider("Epochs", 1, limits.MAX_EPOCHS, key=key("epochs"))
optimizer = c3.selectbox("Optimizer", list(OPTIMIZER_LABELS), format_func=OPTIMIZER_LABELS.get, key=key("optimizer"))
chosen = c4.multiselect("Devices", [t.key for t in devices.all_targets()], key=key("devices"),
                        format_func=lambda k: devices.parse_target(k).label, help="Sweeps use the first device.")
if note := devices.no_accelerator_message():
    st.info(f"🖥️ {note}")

try:
    config = T.from_dict(dict(mode=mode, dataset=dataset, separation=separation, model=model, width=width, depth=depth,
                              activation=activation, probe_layer=probe_layer, norms=norms, impl=impl, lr=lr, epochs=epochs,
                              optimizer=optimizer, devices=chosen, batch_size=s.batch_size, momentum=s.momentum,
                              eps=s.eps, num_groups=s.num_groups, seed=s.seed))
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


def draw(live: T.LiveRun) -> None:
    summary = live.summary()
    current = live.variants[min(live.current, len(live.variants) - 1)].label if live.variants else ""
    text = {"running": f"Training {live.current + 1}/{len(live.variants)}: {current}", "finished": "Finished",
            "stopped": "Stopped"}[live.status]
    progress_box.progress(live.fraction, text=f"{text} · {live.elapsed_s:.1f} s")
    history = live.history()
    if live.config.mode == "compare" or not len(summary):
        left.altair_chart(charts.loss_chart(history), width="stretch")
        right.altair_chart(charts.accuracy_chart(history), width="stretch")
    elif live.config.mode == "batch_sweep":
        left.altair_chart(charts.batch_sweep_chart(summary), width="stretch")
        right.altair_chart(charts.paper_chart(T.paper_group_norm_errors()), width="stretch")
    else:
        left.altair_chart(charts.lr_sweep_chart(summary, T.largest_trainable_lr(summary, T.chance_accuracy(live.config))), width="stretch")
        right.altair_chart(charts.loss_chart(history), width="stretch")


if (run_clicked or st.session_state.pop(AUTORUN, False)) and not blocked:
    live = finished_runs().get(config)
    if live is None:
        live = st.session_state[LIVE] = T.LiveRun(config, variants)
        last_draw = [0.0]

        def on_progress(live: T.LiveRun) -> None:
            if time.perf_counter() - last_draw[0] >= RENDER_EVERY_S or not live.running:
                draw(live)
                last_draw[0] = time.perf_counter()

        T.run(config, live, on_progress=on_progress)
        finished_runs().put(live)
    st.session_state[LIVE] = live
elif config is not None and (cached := finished_runs().get(config)) is not None:
    live = st.session_state[LIVE] = cached  # these settings ran before: show them at once

if live is None:
    message_box.info("Choose the settings and press ▶️ Run. The curves update while it trains.")
    st.stop()
draw(live)
if config is not None and live.config != config:
    message_box.warning("These results are from earlier settings; press ▶️ Run for the current ones.")
elif live.status == "stopped":
    message_box.warning(f"⏹️ {live.message} The table shows what finished before that.")

summary = live.summary()
table = T.results_table(summary)
st.subheader("Results")
st.dataframe(table, hide_index=True, width="stretch", column_config={
    "Train accuracy": st.column_config.NumberColumn(format="percent"),
    "Test accuracy": st.column_config.NumberColumn(format="percent"),
    "Time per epoch (s)": st.column_config.NumberColumn(format="%.3f"),
    "Samples/s": st.column_config.NumberColumn(format="%.0f"),
    "Speed-up vs CPU": st.column_config.NumberColumn(format="%.2f×", help="Samples/s against the CPU run with the fewest threads, same normalization."),
})
for note in summary["note"] if len(summary) else []:
    if note and "Diverged" in note:
        st.error(f"💥 {note}")
d1, d2, _ = st.columns([1, 1, 3])
d1.download_button("⬇️ Results (CSV)", table.to_csv(index=False), "training_results.csv", "text/csv", width="stretch")
d2.download_button("⬇️ Configuration (JSON)", live.config.to_json(), "training_config.json", "application/json", width="stretch")

history, cfg = live.history(), live.config
if cfg.mode == "compare":
    st.subheader("Pre-activation percentiles: with BatchNorm vs without (Ioffe & Szegedy 2015, Fig. 1)")
    if {"batch", "none"} <= set(history["norm"]):
        st.altair_chart(charts.percentile_chart(history, min(cfg.probe_layer, cfg.depth)), width="stretch")
        st.caption("The input of one nonlinearity over the training batches. Without BN its distribution drifts as the "
                   "weights change; with BN it stays put (BN re-centres and re-scales it every step).")
    else:
        st.info("Include both BatchNorm and No norm in the normalizations to compare their pre-activations.")
elif cfg.mode == "batch_sweep":
    st.caption(f"Left: this lab, learning rate {cfg.lr:g}·min(1, N/{T.BATCH_SWEEP_REFERENCE}), at least "
               f"{T.MIN_SWEEP_STEPS} steps per point. Right: the paper's numbers (error, lower is better): BN "
               "degrades at small batches, GN does not.")
    st.dataframe(T.paper_group_norm_errors().pivot(index="normalization", columns="batch_size", values="top1_error"), width="stretch")
else:
    largest = T.largest_trainable_lr(summary, T.chance_accuracy(cfg))
    st.caption("“Still trains”: no NaN/inf loss and test accuracy at least halfway from chance to 100 %.")
    st.dataframe(largest.rename(columns={"normalization": "Normalization", "largest_lr": "Largest learning rate that trains",
                                         "best_test_accuracy": "Best test accuracy"}).drop(columns="norm"), hide_index=True)
