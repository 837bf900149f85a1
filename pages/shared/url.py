"""The URL carries the state: read it once per session, mirror the state back to it.

What a value looks like in the URL, and how a bad one is explained, is the schema's
(``normcore.lab.fields.Schema.to_query`` / ``from_query``); this module only moves those
strings between ``st.query_params`` and the page.
"""

from __future__ import annotations

import streamlit as st

from normcore.lab import settings as S
from normcore.lab.fields import Schema


def read_once(schema: Schema, flag: str) -> tuple[dict, list[str]]:
    """The values the URL gives for ``schema`` on this session's first visit to a page
    (``flag`` marks the visit in session_state), with a message per bad parameter; later
    visits get nothing, so a link is read once and the widgets own the state from then on."""
    if st.session_state.get(flag):
        return {}, []
    st.session_state[flag] = True
    return schema.from_query(st.query_params.to_dict())


def sync(shared: S.LabSettings, extra: dict[str, str] | None = None, page_params: tuple[str, ...] = ()) -> None:
    """Mirror the shared settings (non-defaults only) and a page's ``extra`` params to the URL.

    ``page_params`` names every param the page may set, so one back at its default (absent
    from ``extra``) is removed from the URL too.
    """
    wanted = S.to_query(shared) | (extra or {})
    for name in (*S.FIELDS.url_names, *page_params):
        if name not in wanted and name in st.query_params:
            del st.query_params[name]
    for name, value in wanted.items():
        if st.query_params.get(name) != value:
            st.query_params[name] = value
