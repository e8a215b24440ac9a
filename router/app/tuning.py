"""Process-wide settings the appliance applies at start-up (and its benchmarks with it)."""

from __future__ import annotations

import gc

#: Young-generation threshold. The signaling path allocates a few dozen short-lived objects per
#: message; with CPython's default (700) a busy DLMAP spends ~15% of its time in collections
#: that find nothing (measured with bench/signaling). Cycles are still collected, just in
#: larger batches.
YOUNG_GENERATION_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect once, move everything alive now (modules, configuration, state just restored)
    to the permanent generation so later collections skip it, and batch young collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
