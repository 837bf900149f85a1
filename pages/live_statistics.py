"""Live statistics: which values share a statistic, one batch before and after, and a live
stream of batch vs running statistics. Widgets -> normcore.lab.experiments.live -> charts."""

import streamlit as st

from normcore.lab.experiments import live
from normcore.lab.viz import live_charts as charts
from pages.shared import altair_specs, controls
from pages.shared.page_options import PageOptions, sync_url

TICK_SECONDS = 0.5  # Play: one fragment rerun every half second
NOTE_STEPS = 20  # a "stream restarted" note stays this many steps
STREAM, PLAYING, NOTE = "live_stream", "live_playing", "live_note"
OPTIONS = PageOptions(live.LiveOptions, "live_options", "live_")

OPTIONS.current()  # first visit: the page's own options from the URL (a bad parameter is explained here)
s = controls.sidebar()


@st.cache_data(max_entries=16, show_spinner="Normalizing one batch…")
def batch_view(settings, quiet: bool) -> live.BatchView:
    return live.one_batch(settings, quiet)


@st.cache_data(max_entries=32, show_spinner=False)
def chart_specs(settings, quiet: bool | None = None) -> list[dict]:
    """Section 1's chart (``quiet`` None) or section 2's two, built once per input (pages/shared/altair_specs.py)."""
    built = charts.diagram_charts(settings) if quiet is None else charts.batch_charts(batch_view(settings, quiet), settings)
    return [altair_specs.spec(chart) for chart in built]


def metrics(rows) -> None:
    """A row of (label, value, explanation) readouts."""
    for column, (label, value, explanation) in zip(st.columns(len(rows)), rows):
        column.metric(label, value)
        column.caption(explanation)


st.title("📈 Live statistics")
st.markdown(
    "Every normalization standardizes values with a mean and a variance, **(x − mean) / √(var + eps)**. "
    "They differ in *which values share* one mean and variance. RMSNorm drops the mean: **x / √(mean(x²) + eps)**. "
    "Pick one under **Normalization** in the sidebar; batch size, momentum, eps and groups are there too."
)
blocked = controls.show_problems(s, training=True)

st.header("1 · Which values share one mean and variance")
st.markdown(live.SHARING[s.norm])
diagram = live.diagram_frame(s)
if diagram is None:
    st.info("No diagram while the group count does not divide the channel count (see the message above).")
else:
    st.vega_lite_chart(spec=chart_specs(s)[0], width="content")
    st.caption(diagram.caption)

st.header("2 · One batch, before and after")
OPTIONS.option("quiet_channel")
quiet = OPTIONS.current().quiet_channel
if blocked:
    st.info("Fix the settings above to see a batch.")
else:
    view = batch_view(s, quiet)
    histograms, eps = chart_specs(s, quiet)
    st.vega_lite_chart(spec=histograms, width="content")
    st.caption(view.caption)
    if live.is_standard_normal(s):
        st.button("🎲 At the defaults the input is N(0, 1) already. Try an offset, spread-out input",
                  on_click=controls.update, kwargs=live.EXAMPLE_INPUT)
    if view.rms is not None:  # RMSNorm: its output is not zero-mean
        st.info(view.rms.note)
        metrics(view.rms.readouts)
        st.markdown(f"**{live.COMPARISON_TITLE}**")
        st.dataframe(view.rms.comparison, hide_index=True, column_config={
            c: st.column_config.NumberColumn(c, format="%.4g") for c in ("output mean", "output std", "output RMS")})
    left, right = st.columns(view.widths) if view.widths else (st.container(), st.container())
    with left:
        title, table, columns = view.table
        st.markdown(f"**{title}**")
        st.dataframe(table, hide_index=True, height=36 + 35 * min(len(table), 8), column_config={
            c: st.column_config.NumberColumn(label, format="%.6g") for c, label in columns.items()})
    with right:
        st.markdown("**Channel 0's output shrinks as eps grows** (red: the eps in use)")
        st.vega_lite_chart(spec=eps, width="stretch")
    st.caption(view.eps_caption)

st.header("3 · Live stream")
st.markdown("Each step draws a new batch from the same distribution and runs it through a normcore layer in "
            "training mode, next to torch.nn's twin fed the same batch.")
st.caption("With a drift, compare momentum values: a small momentum averages more batches (less noise) "
           "but its running mean lags behind a moving population mean.")
no_drift = OPTIONS.current().drift == "none"
for column, name in zip(st.columns(len(live.STREAM_OPTIONS)), live.STREAM_OPTIONS):
    OPTIONS.option(name, column, disabled=no_drift and name in live.DRIFT_SHAPE)
if s.norm == "instance":
    OPTIONS.option("track_running_stats")
sync_url(OPTIONS)
playing = st.session_state.get(PLAYING, False) and not blocked


def reset_stream() -> None:
    st.session_state[STREAM].reset()
    st.session_state.pop(NOTE, None)


def live_panel() -> None:
    settings, opts = controls.current(), OPTIONS.current()
    stream = st.session_state.get(STREAM)
    if stream is None:
        stream = st.session_state[STREAM] = live.LiveStream(settings, opts)
    elif note := stream.update(settings, opts):
        st.session_state[NOTE] = note
    play, step, reset = st.columns(3)
    if play.button("⏸️ Pause" if playing else "▶️ Play", key="live_play", width="stretch"):
        st.session_state[PLAYING] = not playing
        st.rerun()  # the whole page, so the fragment's timer starts or stops
    step.button("⏭️ Step", key="live_step", on_click=stream.step, disabled=playing, width="stretch")
    reset.button("🔄 Reset", key="live_reset", on_click=reset_stream, width="stretch")
    if playing:
        stream.step(live.steps_per_tick(settings, opts))
    if st.session_state.get(NOTE) and stream.steps < NOTE_STEPS:
        st.info(st.session_state[NOTE])
    metrics(live.readouts(stream))
    if not stream.keeps_running_stats:
        st.info(live.RUNNING_STATS[settings.norm])
    stream_charts = charts.stream_charts(stream)
    if not stream_charts:
        st.info("Press ▶️ Play or ⏭️ Step to stream batches.")
        return
    for column, spec in zip(st.columns(2), stream_charts):
        column.vega_lite_chart(spec, width="stretch")
    st.caption(live.stream_caption(settings.norm))
    st.badge(stream.parity.summary, color="green" if stream.parity.ok else "orange")

if blocked:
    st.info("The stream needs valid settings (see the message above).")
    st.session_state[PLAYING] = False
else:
    st.fragment(run_every=TICK_SECONDS if playing else None)(live_panel)()
