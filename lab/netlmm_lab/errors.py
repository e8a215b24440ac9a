"""The one error the lab raises for its own failures."""

from __future__ import annotations


class LabError(RuntimeError):
    """The lab could not be built, a command in it failed, or a wait timed out."""
