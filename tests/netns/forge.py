"""Forged packets into a running lab, and sniffers that say whether any came out.

The test process builds the frames with scapy; a small :class:`Injector` in the sending
namespace writes them on a packet socket (no scapy start-up per batch), and a :class:`Sniffer`
in each namespace that must see nothing counts the frames carrying a forged packet's marker
(their processes: ``tests/netns/children/injector.py`` and ``marker_sniffer.py``).
Every process runs through :meth:`Lab.popen`, so the lab ends it by PID, and every wait has a
deadline.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterable
from typing import Any

from netlmm_lab.errors import LabError
from netlmm_lab.poll import read_line
from netlmm_lab.topology import Lab
from tests.netns.children import REPO, child_argv

MARKER = b"NLFORGE:"


def marker(kind: str) -> bytes:
    """The payload that names a forged packet's kind to the sniffers."""
    return MARKER + kind.encode() + b";"


def _ready(process: subprocess.Popen[str], what: str, timeout: float = 15.0) -> None:
    line = read_line(process, timeout, what)
    if line != "ready":
        raise LabError(f"{what} did not start: {line!r}")


class Injector:
    """A packet socket on ``ifname`` in namespace ``ns``: :meth:`send` writes frames."""

    def __init__(self, lab: Lab, ns: str, ifname: str) -> None:
        self.lab = lab
        self.process = lab.popen(
            ns, child_argv("injector", ifname), cwd=REPO, stdin=subprocess.PIPE
        )
        _ready(self.process, f"injector in {ns}")

    def send(self, frames: Iterable[bytes], timeout: float = 30.0) -> int:
        """Write ``frames`` (bytes each); returns how many the kernel took."""
        assert self.process.stdin is not None
        self.process.stdin.write(" ".join(f.hex() for f in frames) + "\n")
        self.process.stdin.flush()
        return int(read_line(self.process, timeout, "the injector's count"))

    def close(self) -> None:
        self.lab.stop(self.process)


class Sniffer:
    """Counts marked frames on ``ifname`` in ``ns`` from :meth:`__init__` to :meth:`stop`."""

    def __init__(self, lab: Lab, ns: str, ifname: str) -> None:
        self.lab = lab
        self.where = f"{ns}:{ifname}"
        self.process = lab.popen(
            ns,
            child_argv("marker_sniffer", ifname, MARKER.decode()),
            cwd=REPO,
            stdin=subprocess.PIPE,
        )
        _ready(self.process, f"sniffer in {ns}")

    def stop(self, timeout: float = 10.0) -> Counter[str]:
        """The kinds seen, with their counts."""
        try:
            out, _ = self.process.communicate("stop\n", timeout=timeout)
        finally:
            self.lab.stop(self.process)
        lines = out.strip().splitlines()
        if not lines:
            raise LabError(f"sniffer on {self.where} said nothing")
        return Counter(json.loads(lines[-1]))


def flat(counters: dict[str, Any], prefix: str = "") -> Counter[str]:
    """``show counters`` as one ``group.name -> value`` counter (numbers only)."""
    out: Counter[str] = Counter()
    for key, value in counters.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = int(value)
    return out
