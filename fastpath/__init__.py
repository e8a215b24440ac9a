"""The per-packet data plane: a compiled twin (``fastpath._fastpath``) and its pure-Python
reference (``fastpath.reference``) with the same API.

``implementation()`` returns the compiled module when it is built, else the reference; the
application uses that, tests use both. This package imports nothing from ``router``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fastpath.common import VERDICT_OF, Binding, Direction, Punt, Reason, Result, Verdict

__all__ = [
    "VERDICT_OF",
    "Binding",
    "Direction",
    "Punt",
    "Reason",
    "Result",
    "Verdict",
    "implementation",
]


def implementation(name: str = "auto") -> ModuleType:
    """``"compiled"``, ``"reference"`` or ``"auto"`` (compiled when it is built)."""
    if name in ("compiled", "auto"):
        try:
            return importlib.import_module("fastpath._fastpath")
        except ImportError:
            if name == "compiled":
                raise
    return importlib.import_module("fastpath.reference")
