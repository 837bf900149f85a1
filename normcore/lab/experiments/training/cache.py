"""Finished results, shared between reruns and sessions."""

from __future__ import annotations

import threading
from collections import OrderedDict

from .config import RunConfig
from .running import LiveRun


class ResultCache:
    """Finished runs by configuration key, least recently used dropped first. Thread-safe:
    a dashboard shares one across sessions. Stopped runs are never stored."""

    def __init__(self, max_entries: int = 32):
        self.max_entries = max_entries
        self._items: OrderedDict[str, LiveRun] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, config: RunConfig) -> LiveRun | None:
        with self._lock:
            item = self._items.get(config.key)
            if item is not None:
                self._items.move_to_end(config.key)
            return item

    def put(self, live: LiveRun) -> None:
        if live.status != "finished":
            return
        with self._lock:
            self._items[live.config.key] = live
            self._items.move_to_end(live.config.key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
