"""Train vs eval: where a normalization layer's two modes part ways, and how to close the gap.

A thin loop over ``normcore.lab.experiments.train_eval.SCENARIOS``: each tab draws its own
controls, runs its experiment (cached per setting; only the open tab runs) and renders the
headline, the messages and the charts that come back. The tabs are a fragment: switching
tabs or moving a tab's own control reruns them alone, not the sidebar.
"""

import streamlit as st

from normcore.lab.experiments import train_eval as te
from normcore.lab.settings import LabSettings, as_dict
from normcore.lab.viz.train_eval_charts import charts_for
from pages.shared import altair_specs, controls, widgets

SHOW = {"error": st.error, "warning": st.warning, "info": st.info}


@st.cache_resource(show_spinner=False, max_entries=16)
def prepared(name: str, config: dict):
    """A shared expensive part (the trained digits network), built once per config. The
    progress bar lives inside, so a cache hit replays it already emptied."""
    spec = te.RESOURCES[name]
    bar = st.progress(0.0, text=spec.message)
    resource = spec.build(config, lambda done: bar.progress(done, text=spec.message))
    bar.empty()
    return resource


@st.cache_data(show_spinner=False, max_entries=128)
def result(key: str, settings: dict, params: dict, _resource=None) -> te.ScenarioResult:
    # _resource is not hashed: it is fully determined by (key, settings).
    return te.run_scenario(key, LabSettings(**settings), params, _resource)


@st.cache_data(show_spinner=False, max_entries=128)
def chart_specs(key: str, settings: dict, params: dict, _resource=None) -> list[list[dict]]:
    """The result's charts as Vega-Lite specs, built once per result (the same key)."""
    return [[altair_specs.spec(c) for c in row] for row in charts_for(key, result(key, settings, params, _resource))]


def scenario_params(sc: te.Scenario) -> dict:
    """The scenario's own controls, drawn from its schema, side by side."""
    columns = st.columns(max(len(sc.params), 1))
    values = {}
    for column, f in zip(columns, sc.params.fields):
        key = f"{sc.key}.{f.name}"
        st.session_state.setdefault(key, f.default)
        values[f.name] = widgets.draw(f, key, column)
    return values


def render(sc: te.Scenario, s: LabSettings) -> None:
    st.markdown(sc.explanation)
    params = scenario_params(sc)
    resource = None
    if sc.resource is not None:
        resource = prepared(sc.resource, te.RESOURCES[sc.resource].config(s))
    with st.spinner("Running the experiment…", show_time=True):
        r = result(sc.key, as_dict(s), params, resource)
    for m in r.messages:  # first: they say what the number below does and does not describe
        SHOW[m.level](m.message)
    if r.headline is not None:
        st.metric(r.headline.label, r.headline.value, help=r.headline.help or None)
    for row in chart_specs(sc.key, as_dict(s), params, resource):
        for column, spec in zip(st.columns(len(row)), row):
            column.vega_lite_chart(spec=spec, width="stretch")
    if r.table is not None:
        st.caption(r.table_caption)
        st.dataframe(r.table, hide_index=True, width="stretch")


s = controls.sidebar(controls.ALL_CONTROLS)
st.title("⚖️ Train vs eval")
st.markdown(
    "In **training** mode BatchNorm normalizes with the statistics of the batch in front of it; after "
    "`model.eval()`, with its **running statistics**, an average of past batches. Each tab shows one way "
    "the two part ways, and how to close the gap. The sidebar's controls apply to every tab; "
    f"momentum now: **{s.momentum_text()}**."
)


@st.fragment
def scenarios() -> None:
    s = controls.current()
    tabs = st.tabs([f"{sc.icon} {sc.title}" for sc in te.SCENARIOS], key="scenario", on_change="rerun",
                   bind="query-params")
    for tab, sc in zip(tabs, te.SCENARIOS):
        with tab:
            if tab.open:  # only the open tab runs its experiment
                render(sc, s)


scenarios()
