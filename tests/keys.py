"""RFC 4285 keys for the tests: signaling is protected by default (seed section 7), so the ini
files the tests load name a key file and an SPI like an operator's do.

The key file is made the first time this module is imported, with ``netlmm keygen``'s own
writer and a fresh key, in a temporary directory of its own that goes when the test process
ends: never a file of the repository. :func:`example` reads ``etc/<role>.ini`` with its
``key_file`` pointed at it (the examples name ``/etc/netlmm/netlmm.keys`` and SPI 256).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from router.adapters.keyfile import write_key_file

#: The SPI of the examples (etc/*.ini) and of the tests' ini files.
SPI = 256
#: Where the examples expect the domain's keys.
EXAMPLE_KEY_FILE = "/etc/netlmm/netlmm.keys"
ETC = Path(__file__).resolve().parents[1] / "etc"

_FOLDER = Path(tempfile.mkdtemp(prefix="netlmm-test-keys-"))
atexit.register(shutil.rmtree, _FOLDER, True)
KEY_FILE = _FOLDER / "netlmm.keys"
write_key_file(KEY_FILE, spi=SPI)

#: The [node] line and the [peer] line of a protected test configuration.
KEY_FILE_LINE = f"key_file = {KEY_FILE}"
SPI_LINE = f"spi = {SPI}"


def example(name: str) -> str:
    """``etc/<name>`` with its key file replaced by the tests' (same SPI)."""
    text = (ETC / name).read_text()
    line = f"key_file = {EXAMPLE_KEY_FILE}"
    assert line in text, f"etc/{name} does not name {EXAMPLE_KEY_FILE}"
    return text.replace(line, KEY_FILE_LINE)


def example_file(name: str, folder: Path) -> Path:
    """:func:`example` written to ``folder`` (for what reads a path: check-config, run)."""
    path = folder / name
    path.write_text(example(name))
    path.chmod(0o600)
    return path
