"""Reading the RFC 4285 key file (``node.key_file``): one ``SPI HEX-KEY`` a line, ``#``
comments, a file only its owner may read. Read at start (the config loader) and on SIGHUP (the
node's key reload); the keys end up in a :class:`router.core.security.KeyRing` and are never
logged or shown in an error.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from pathlib import Path

from router.core.security import MAX_SPI, MIN_SPI, KeyRing

#: Shortest key accepted: 128 bits.
MIN_KEY_BYTES = 16


class KeyFileError(ValueError):
    """The key file cannot be used; ``problems`` are messages (never key material)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def read_key_file(path: Path, needed: Iterable[int] = ()) -> KeyRing:
    """Read ``path`` (one ``SPI HEX-KEY`` a line, ``#`` comments) or raise :class:`KeyFileError`.

    Refused: a file group or others may access (it must be ``chmod 600``), a line that does not
    parse, an SPI below 256 or given twice, a key shorter than 128 bits, and an SPI in
    ``needed`` without a key.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError([f"{path}: cannot read: {type(exc).__name__}"]) from None
    problems: list[str] = []
    if not stat.S_ISREG(mode):
        problems.append(f"{path} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        problems.append(
            f"{path} holds keys and others may access it (mode {stat.S_IMODE(mode):04o}): chmod 600"
        )
    keys: dict[int, bytes] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{path} line {number}"
        if len(parts) != 2:
            problems.append(f"{where}: not 'SPI HEX-KEY'")
            continue
        try:
            spi = int(parts[0], 0)
        except ValueError:
            problems.append(f"{where}: the SPI is not a whole number")
            continue
        if not MIN_SPI <= spi <= MAX_SPI:
            problems.append(f"{where}: SPI {spi} is not in {MIN_SPI}..{MAX_SPI} (0-255 reserved)")
            continue
        try:
            key = bytes.fromhex(parts[1])
        except ValueError:
            problems.append(f"{where}: the key of SPI {spi} is not hex")  # not the key itself
            continue
        if len(key) < MIN_KEY_BYTES:
            problems.append(
                f"{where}: the key of SPI {spi} has {len(key)} bytes, at least "
                f"{MIN_KEY_BYTES} are needed"
            )
            continue
        if spi in keys:
            problems.append(f"{where}: SPI {spi} is given twice")
            continue
        keys[spi] = key
    for spi in sorted(set(needed)):
        if spi not in keys and not any(f"SPI {spi} " in p for p in problems):
            problems.append(f"{path}: no key for SPI {spi}")
    if problems:
        raise KeyFileError(problems)
    return KeyRing(keys)
