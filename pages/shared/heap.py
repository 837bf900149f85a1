"""Keep Streamlit's garbage collection after every script run cheap.

Streamlit runs a full ``gc.collect()`` after every script run (``runner.postScriptGC``), on
the script's thread and holding the GIL, so the browser hears "finished" only after it. With
torch, pandas and Altair imported the server's heap holds ~250,000 tracked objects: each
collection took 0.15 s, on every Step, slider and tab switch of every session.

Almost all of those objects are modules and what they built at import, which live as long
as the process. :func:`freeze_imports` moves everything alive into the collector's permanent
generation (``gc.freeze``) whenever modules were imported since it last did: the collection
after a run then scans only what the runs since allocated (~0 ms). Reference cycles still
die at the next collection, except among objects frozen alive; the price is that a session
that happens to be running when a new module arrives keeps what it had then until the
process ends, once per new import, a bounded few MB.
"""

from __future__ import annotations

import gc
import sys

_modules_at_freeze = 0


def freeze_imports() -> None:
    """Freeze the heap if modules were imported since the last freeze (cheap otherwise)."""
    global _modules_at_freeze
    if len(sys.modules) > _modules_at_freeze:
        gc.freeze()
        _modules_at_freeze = len(sys.modules)
