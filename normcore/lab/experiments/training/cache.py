"""Finished training runs, shared between reruns and sessions."""

from __future__ import annotations

from normcore.lab.finished_cache import FinishedCache


class FinishedTrainingRuns(FinishedCache):
    """Finished runs (``LiveRun``) by their configuration's key; stopped runs are never stored."""

    def __init__(self, max_entries: int = 32):
        super().__init__(lambda live: live.config.key, lambda config: config.key, max_entries)
