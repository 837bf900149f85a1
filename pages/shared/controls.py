"""The shared controls, defined once from ``normcore.lab.settings.FIELDS``.

The settings live in ``st.session_state`` (so they survive page switches, even on pages that
show only some of the controls) and are mirrored to ``st.query_params`` so a copied URL
opens the same view. On a session's first run they are read back from the URL.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from normcore.lab import settings as S
from pages.shared import heap, url, widgets

_STORE = "lab_settings"
_URL_MESSAGES = "lab_url_messages"
LAYER_CONTROLS = ("norm", "batch_size", "channels", "spatial", "momentum", "eps", "num_groups", "affine", "seed")
DISTRIBUTION_CONTROLS = ("mean_offset", "scale", "channel_spread", "outlier_fraction")
ALL_CONTROLS = LAYER_CONTROLS + DISTRIBUTION_CONTROLS


def current() -> S.LabSettings:
    """This session's settings; on its first run, the ones the URL describes."""
    if _STORE not in st.session_state:
        settings, messages = S.from_query(st.query_params.to_dict())
        st.session_state[_STORE] = settings
        st.session_state[_URL_MESSAGES] = messages
    return st.session_state[_STORE]


def update(**changes) -> None:
    st.session_state[_STORE] = replace(current(), **changes)


def reset() -> None:
    st.session_state[_STORE] = S.DEFAULTS


# -- widgets ---------------------------------------------------------------------------
# Each widget's state is rewritten from the store before it is drawn and copied back in
# its on_change callback, so the store is the one source of truth.


def _key(name: str) -> str:
    return f"control_{name}"


def bind(store: str, name: str, key: str, to_widget=lambda v: v, to_store=lambda v: v) -> dict:
    """Bind a widget to field ``name`` of the frozen dataclass in ``st.session_state[store]``.

    Seeds the widget's state from the store and returns the ``key``/``on_change`` arguments
    that copy a change back, so the store stays the one source of truth. Pages use it for
    their own option stores too.
    """
    st.session_state[key] = to_widget(getattr(st.session_state[store], name))

    def commit():
        st.session_state[store] = replace(st.session_state[store], **{name: to_store(st.session_state[key])})

    return {"key": key, "on_change": commit}


def _momentum_widgets(s: S.LabSettings) -> None:
    widgets.draw(S.FIELDS["momentum_convention"], **bind(_STORE, "momentum_convention", _key("momentum_convention")))
    st.session_state[_key("momentum_none")] = s.momentum is None
    st.checkbox(
        "None: cumulative average", key=_key("momentum_none"),
        on_change=lambda: update(momentum=None if st.session_state[_key("momentum_none")] else S.DEFAULTS.momentum),
        help="momentum=None in PyTorch: the running statistics are the plain average of all batches so far.",
    )
    keras = s.momentum_convention == "keras"
    if s.momentum is not None:
        in_convention = lambda m: round(1 - m if keras else m, 4)  # noqa: E731 (its own inverse)
        widgets.draw(S.FIELDS["momentum"], label=f"Momentum ({'Keras/d2l' if keras else 'PyTorch'} convention)",
                     **bind(_STORE, "momentum", _key("momentum"), in_convention, in_convention))
    st.caption(f"Momentum: {s.momentum_text()}")


def _widget(name: str, s: S.LabSettings) -> None:
    if name == "momentum":
        return _momentum_widgets(s)
    widgets.draw(S.FIELDS[name], **bind(_STORE, name, _key(name)))


def sidebar(names=ALL_CONTROLS) -> S.LabSettings:
    """Draw the shared controls a page uses in the sidebar and return the current settings."""
    heap.freeze_imports()  # every page but the overview calls this, after its imports
    s = current()
    with st.sidebar:
        st.subheader("Shared controls")
        for name in names:
            if name in LAYER_CONTROLS:
                _widget(name, s)
        shown = [n for n in names if n in DISTRIBUTION_CONTROLS]
        if shown:
            with st.expander("Input distribution", expanded=False):
                for name in shown:
                    _widget(name, s)
        st.button("Reset to defaults", on_click=reset, key="control_reset")
    sync_url()
    for message in st.session_state.pop(_URL_MESSAGES, []):
        st.warning(message)
    return current()


def sync_url(extra: dict[str, str] | None = None, page_params: tuple[str, ...] = ()) -> None:
    """The shared settings and a page's own ``extra`` URL parameters, mirrored to the URL."""
    url.sync(current(), extra, page_params)


def show(problems) -> bool:
    """Render each ``Problem`` as st.error / st.warning; True if any is an error."""
    blocked = False
    for p in problems:
        (st.error if p.level == "error" else st.warning)(p.message)
        blocked |= p.level == "error"
    return blocked


def show_problems(s: S.LabSettings, training: bool = True) -> bool:
    """Render every problem with the shared settings; True if any is an error."""
    return show(S.problems(s, training))
