"""A page's own options, in one store: read from the URL once per session, drawn from their
schema, mirrored back to the URL.

A page (or a tab, or a part of a page) names its options once::

    OPTIONS = PageOptions(live.LiveOptions, "live_options", "live_")

    OPTIONS.current()            # the frozen options (on the session's first call: the URL's)
    OPTIONS.option("drift", c)   # the field's widget in column c, bound to the store
    sync_url(OPTIONS)            # the shared settings and these options, mirrored to the URL

The options class is a frozen dataclass with a schema (``normcore.lab.fields.QueryOptions``).
The store in ``st.session_state`` is the one source of truth: a widget is seeded from it
before it is drawn and writes back to it on change (``controls.bind``), so a value survives
page switches and tabs that are not drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from normcore.lab.fields import Schema
from pages.shared import controls, widgets


@dataclass(frozen=True)
class PageOptions:
    """One store of a page's options. ``options_class`` is a ``QueryOptions`` dataclass;
    ``store`` its key in session_state; a widget's key is ``key_prefix`` + the field's name."""

    options_class: type
    store: str
    key_prefix: str

    @property
    def fields(self) -> Schema:
        return self.options_class.SCHEMA

    def current(self):
        """This session's options. The first call of a session reads them from the URL and
        shows a warning for each bad parameter (which keeps its default) where it is called."""
        if self.store not in st.session_state:
            st.session_state[self.store], messages = self.options_class.from_query(st.query_params.to_dict())
            for message in messages:
                st.warning(message)
        return st.session_state[self.store]

    def option(self, name: str, where=st, **extra):
        """Field ``name``'s widget in ``where`` (``st``, a column), bound to the store; ``extra``
        goes to the widget (``disabled``, ``horizontal``). A list field is a list in the widget
        and a tuple in the store (which stays hashable, a cache key)."""
        self.current()
        field = self.fields[name]
        convert = (list, tuple) if field.kind == "choices" else ()
        binding = controls.bind(self.store, name, self.key_prefix + name, *convert)
        return widgets.draw(field, where=where, **binding, **extra)

    def query(self) -> dict[str, str]:
        """The options that differ from their defaults, as URL parameters."""
        return self.current().to_query()


def sync_url(*stores: PageOptions) -> None:
    """Mirror the shared settings and each store's options to the URL; a parameter of these
    stores back at its default is removed from it."""
    extra: dict[str, str] = {}
    names: tuple[str, ...] = ()
    for options in stores:
        extra |= options.query()
        names += options.fields.url_names
    controls.sync_url(extra, page_params=names)
