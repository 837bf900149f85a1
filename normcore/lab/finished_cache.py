"""Finished results shared between reruns and sessions: one least-recently-used cache that
every page's long work uses (training runs, data-parallel comparisons and sweeps)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable


class FinishedCache:
    """Finished items by key, least recently used dropped first. Thread-safe: a dashboard shares
    one across sessions. An item whose ``status`` is not "finished" (stopped, failed) is never
    stored. ``key_of_item(item)`` and ``key_of(query)`` give the same key for one setting."""

    def __init__(self, key_of_item: Callable[[Any], Any], key_of: Callable[[Any], Any], max_entries: int = 32):
        self.key_of_item, self.key_of, self.max_entries = key_of_item, key_of, max_entries
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, query):
        key = self.key_of(query)
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, item) -> None:
        if item.status != "finished":
            return
        key = self.key_of_item(item)
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
