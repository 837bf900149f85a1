"""Deploy & port, Port tab: a BatchNorm stack and a LayerNorm/RMSNorm stack in two conventions.
Widgets -> normcore.lab.experiments.deploy.port / port_eps / port_keras -> charts, code, messages."""

import streamlit as st

from normcore.lab.experiments.deploy import port as P
from normcore.lab.experiments.deploy import port_eps as E
from normcore.lab.experiments.deploy import port_keras as K
from normcore.lab.viz import port_charts as charts
from pages.shared.page_options import PageOptions, sync_url

PORT = PageOptions(P.PortOptions, "port_options", "port_options.")
EPS = PageOptions(E.EpsOptions, "port_eps_options", "port_eps_options.")
KERAS_SHOWN = "port_keras_shown"


@st.cache_data(max_entries=32, show_spinner="Training both stacks…")
def port_view(o: P.PortOptions):
    """The port and its chart as a Vega-Lite spec (built once: a rerun only sends it)."""
    view = P.run(o)
    return view, charts.port_chart(view.differences).to_dict()


@st.cache_data(max_entries=32, show_spinner=False)
def eps_view(o: E.EpsOptions):
    frame = E.differences(o)
    return frame, charts.eps_chart(frame, E.NORM_LABELS[o.norm]).to_dict()


@st.cache_data(max_entries=8, show_spinner="Importing Keras and running it (about 5 s to import)…")
def keras_view(o: P.PortOptions) -> K.KerasComparison:
    return K.compare_in_child(o)  # Keras stays out of the server process


def table(frame):
    st.dataframe(P.summary(frame), column_config={c: st.column_config.NumberColumn(c, format="%.3g")
                                                  for c in P.summary(frame).columns})


def real_keras(o: P.PortOptions) -> None:
    if not K.keras_available():
        st.info("Keras is not installed here, so the results above are normcore.keras alone (it implements "
                "Keras's BatchNormalization in torch). `pip install keras` and set KERAS_BACKEND=torch to compare.")
        return
    if K.keras_side(o) is None:
        st.caption("Real Keras: neither side of this port is Keras / TensorFlow.")
        return
    if st.button("Run real Keras beside normcore", key="port_keras_button", help="Imports Keras (4–5 s) the first time."):
        st.session_state[KERAS_SHOWN] = True
    if st.session_state.get(KERAS_SHOWN):
        try:
            comparison = keras_view(o)
        except Exception as exc:  # noqa: BLE001 (an optional dependency: its failure is a message, not a crash)
            st.error(f"Real Keras could not run here: {type(exc).__name__}: {exc}")
            return
        st.markdown(f"**Real Keras {comparison.version}** on the Keras side, same batches: max |Δ| against "
                    f"normcore.keras over the layers: **{comparison.agreement['difference'].max():.3g}**.")
        st.altair_chart(charts.port_chart(comparison.differences, "The same port with real Keras"), width="stretch",
                        height=380)
        table(comparison.differences)


def batchnorm_section() -> None:
    left, right = st.columns(2)
    PORT.option("source", left)
    PORT.option("target", right)
    for column, name in zip(st.columns(4), P.SETTINGS):
        PORT.option(name, column, horizontal=False)
    for column, name in zip(st.columns(4), ("depth", "steps", "batch", "seed")):
        PORT.option(name, column)
    o = PORT.current()
    found = P.problems(o)
    for message in found:
        st.error(message)
    if found:
        return
    view, chart = port_view(o)
    st.vega_lite_chart(spec=chart, width="stretch", height=380)
    st.caption(f"A stack of {o.depth} Linear → BatchNorm → ReLU blocks (16 features, the same weights on both sides) "
               f"runs {o.steps} training batches of {o.batch} in each convention, then one test batch in eval. "
               "Each line carries one setting as typed (the others converted); 'your choices' are the radios above.")
    table(view.differences)
    if view.same:
        st.caption("As typed = converted here for: " + ", ".join(P.SETTING_LABELS[s] for s in view.same) + ".")
    st.markdown("**The target's layer, with your choices** (copy it):")
    st.code(view.code, language="python")
    if view.notes:
        with st.expander("What the converter says (normcore.keras)"):
            st.markdown("\n".join(f"* {note}" for note in view.notes))
    st.markdown("**The channel axis** is no difference but a shape error: the source's layout "
                f"{view.axis.shape} fed to `{view.axis.code}`.")
    if view.axis.error:
        st.error(view.axis.error)
        st.success(f"Fix: {view.axis.fix}.")
    else:
        st.success(f"Runs: {view.axis.fix}.")
    real_keras(o)


def eps_section() -> None:
    st.subheader("LayerNorm and RMSNorm: each codebase's default eps")
    for column, name in zip(st.columns(4), ("norm", "source_eps", "depth", "scale")):
        EPS.option(name, column)
    o = EPS.current()
    for message in E.problems(o):
        st.error(message)
        return
    frame, chart = eps_view(o)
    st.vega_lite_chart(spec=chart, width="stretch", height=380)
    st.caption(f"{o.depth} pre-norm residual blocks h ← h + W₂·ReLU(W₁·norm(h)) in float64, so only eps differs; "
               "eps matters as it nears the variance of h (lower the activation std to see it grow).")
    st.markdown("**To keep the source's eps**, spell it out on the target (copy it):")
    st.code(E.keep_code(o.norm, o.source_eps), language="python")
    ends = frame[frame["layer"].isin((1, frame["layer"].max()))]
    table = ends.pivot_table(index="eps", columns="layer", values="difference").rename(columns=lambda c: f"block {c}")
    st.dataframe(table, column_config={c: st.column_config.NumberColumn(c, format="%.3g") for c in table.columns})


def render() -> None:
    sync_url(PORT, EPS)  # first visit: both stores from the URL (a bad parameter is explained here)
    st.markdown("A model ported between PyTorch and Keras/TensorFlow, or between from-scratch codebases, drifts "
                "by small amounts per layer that grow with depth. Carry each setting **as typed** or **converted** "
                "(normcore.keras's converters) and see what each mismatch costs.")
    batchnorm_section()
    eps_section()
