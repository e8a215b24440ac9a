"""Loading of the hex test vectors (see README.md beside this file)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def load_hex(name: str) -> bytes:
    """The bytes of ``<name>.hex`` below this folder, comments (``#`` lines) ignored."""
    text = (HERE / f"{name}.hex").read_text()
    return bytes.fromhex("".join(line for line in text.splitlines() if not line.startswith("#")))
