"""pages/shared/heap.py: Streamlit's full collection after every run stays cheap because what
the imports built is frozen, and only when new modules arrive."""

import gc
import sys
import types

from pages.shared import heap


def test_new_modules_are_frozen_and_nothing_else_triggers_a_freeze(monkeypatch):
    heap.freeze_imports()
    frozen = gc.get_freeze_count()
    garbage = [[] for _ in range(1000)]  # tracked objects made after the freeze
    heap.freeze_imports()  # no new module: they stay collectable
    assert gc.get_freeze_count() == frozen
    monkeypatch.setitem(sys.modules, "_normcore_heap_test", types.ModuleType("_normcore_heap_test"))
    heap.freeze_imports()
    assert gc.get_freeze_count() >= frozen + len(garbage)
    # The collector's own generations now hold (almost) nothing: a full collection scans only
    # what was made since, not the ~250,000 objects of torch, pandas and Altair.
    assert len(gc.get_objects()) < 1000 < gc.get_freeze_count()
