"""The RFC 4285 key file (``node.key_file``): one ``SPI HEX-KEY`` a line, ``#`` comments, a
file only its owner may read. Read at start (the config loader) and on SIGHUP (the node's key
reload); the keys end up in a :class:`router.core.security.KeyRing` and are never logged or
shown in an error. :func:`write_key_file` makes one (``netlmm keygen``): a fresh SPI and key,
in a file that is mode 600 from the moment it exists.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from router.core.security import MAX_SPI, MIN_SPI, KeyRing

#: Shortest key accepted: 128 bits.
MIN_KEY_BYTES = 16
#: What ``netlmm keygen`` makes: 256 bits, above HMAC-SHA1's 160 and below its 512-bit block.
KEYGEN_BYTES = 32


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


def fresh_spi() -> int:
    """A random SPI outside the reserved 0..255 (RFC 4285)."""
    return MIN_SPI + secrets.randbelow(MAX_SPI - MIN_SPI + 1)


def write_key_file(
    path: Path, *, spi: int | None = None, key: bytes | None = None, force: bool = False
) -> int:
    """Write a key file holding one SPI and key (fresh ones unless given); returns the SPI.

    The file is created mode 600 (never readable by others, not even for a moment); an existing
    one raises :class:`FileExistsError` unless ``force``, and is then made mode 600 again before
    the new key goes in. Other failures raise :class:`OSError`.
    """
    spi = fresh_spi() if spi is None else spi
    key = secrets.token_bytes(KEYGEN_BYTES) if key is None else key
    if not MIN_SPI <= spi <= MAX_SPI or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"SPI {spi} or a key of {len(key)} bytes cannot be written")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        os.fchmod(fd, 0o600)
        out.write(
            "# RFC 4285 MN-HA keys of a netlmm domain (netlmm keygen): SPI HEX-KEY.\n"
            "# The same file on every node; each [peer] section names the SPI.\n"
            f"{spi} {key.hex()}\n"
        )
    return spi
