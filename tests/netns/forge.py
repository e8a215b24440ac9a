"""Forged packets into a running lab, and sniffers that say whether any came out (issue 8).

The test process builds the frames with scapy; a small :class:`Injector` in the sending
namespace writes them on a packet socket (no scapy start-up per batch), and a :class:`Sniffer`
in each namespace that must see nothing counts the frames carrying a forged packet's marker.
Every process runs through :meth:`Lab.popen`, so the lab ends it by PID, and every wait has a
deadline.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from netlmm_lab.topology import Lab, LabError

MARKER = b"NLFORGE:"

#: Writes the hex frames of each stdin line on ``argv[1]``, then says how many it sent.
INJECTOR = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
print("ready", flush=True)
for line in sys.stdin:
    sent = 0
    for frame in line.split():
        try:
            s.send(bytes.fromhex(frame))
            sent += 1
        except OSError:
            pass  # a full queue under a flood: the count says so
    print(sent, flush=True)
"""

#: Counts frames received on ``argv[1]`` carrying the marker, by the word after it, until
#: stdin closes.
SNIFFER = r"""
import json, select, socket, sys
marker = sys.argv[2].encode()
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.setblocking(False)
seen = {}
print("ready", flush=True)
done = False
while not done:
    ready, _, _ = select.select([s, sys.stdin], [], [], 1.0)
    if sys.stdin in ready:
        done = True
    while True:
        try:
            frame, address = s.recvfrom(65535)
        except BlockingIOError:
            break
        if address[2] == socket.PACKET_OUTGOING:
            continue  # what the host itself sends (an ICMP error quoting a marker) is not news
        at = frame.find(marker)
        if at >= 0:
            tail = frame[at + len(marker):at + len(marker) + 24]
            word = tail.split(b";")[0].decode("ascii", "replace")
            seen[word] = seen.get(word, 0) + 1
print(json.dumps(seen), flush=True)
"""


def marker(kind: str) -> bytes:
    """The payload that names a forged packet's kind to the sniffers."""
    return MARKER + kind.encode() + b";"


def _ready(process: subprocess.Popen[str], what: str, timeout: float = 15.0) -> None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if line.strip() != "ready":
        err = process.stderr.read() if process.stderr and process.poll() is not None else ""
        raise LabError(f"{what} did not start: {line!r} {err}")


class Injector:
    """A packet socket on ``ifname`` in namespace ``ns``: :meth:`send` writes frames."""

    def __init__(self, lab: Lab, ns: str, ifname: str) -> None:
        self.lab = lab
        self.process = lab.popen(
            ns, [sys.executable, "-c", INJECTOR, ifname], stdin=subprocess.PIPE
        )
        _ready(self.process, f"injector in {ns}")

    def send(self, frames: Iterable[bytes], timeout: float = 30.0) -> int:
        """Write ``frames`` (bytes each); returns how many the kernel took."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(" ".join(f.hex() for f in frames) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise LabError("injector did not answer")
        return int(self.process.stdout.readline())

    def close(self) -> None:
        self.lab.stop(self.process)


class Sniffer:
    """Counts marked frames on ``ifname`` in ``ns`` from :meth:`__init__` to :meth:`stop`."""

    def __init__(self, lab: Lab, ns: str, ifname: str) -> None:
        self.lab = lab
        self.where = f"{ns}:{ifname}"
        self.process = lab.popen(
            ns,
            [sys.executable, "-c", SNIFFER, ifname, MARKER.decode()],
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


def deadline_loop(timeout: float, interval: float = 0.05) -> Iterable[None]:
    """Yield until ``timeout`` seconds have passed (bounded polling)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        yield None
        time.sleep(interval)
