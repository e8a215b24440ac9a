"""Forged packets into a running lab, and sniffers that say whether any came out.

The test process builds the frames with scapy; a small :class:`Injector` in the sending
namespace writes them on a packet socket (no scapy start-up per batch), a :class:`Sniffer`
in each namespace that must see nothing counts the frames carrying a forged packet's marker,
and a :class:`Capture` records them whole (their processes: ``tests/netns/children/injector.py``,
``marker_sniffer.py`` and ``marker_capture.py``). :func:`exchange_both_ways` sends a domain's
sequences up and down and says what arrived and what the nodes counted (the kernel tier's
equivalence tests, IPv4 and IPv6).
Every process runs through :meth:`Lab.popen`, so the lab ends it by PID, and every wait has a
deadline.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from netlmm_lab.domain import Domain
from netlmm_lab.errors import LabError
from netlmm_lab.poll import read_line, wait_until
from netlmm_lab.topology import Lab
from tests.netns.children import REPO, child_argv

MARKER = b"NLFORGE:"
#: The DMPA's pseudo-MAC: the MS's frames go to it.
PSEUDO = "02:00:5e:00:00:01"


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


def counter_delta(
    before: Mapping[str, Counter[str]], after: Mapping[str, Counter[str]]
) -> Counter[str]:
    """``role/name -> change`` for every flat counter that changed between two readings."""
    delta: Counter[str] = Counter()
    for role, values in after.items():
        for name, value in values.items():
            if value - before[role][name]:
                delta[f"{role}/{name}"] = value - before[role][name]
    return delta


class Capture:
    """Every marked frame arriving on ``ifname`` in ``ns`` (children/marker_capture.py)."""

    def __init__(self, lab: Lab, ns: str, ifname: str) -> None:
        self.lab = lab
        self.process = lab.popen(
            ns,
            child_argv("marker_capture", ifname, MARKER.decode()),
            cwd=REPO,
            stdin=subprocess.PIPE,
        )
        if read_line(self.process, 15.0, f"capture in {ns}") != "ready":
            raise LabError(f"capture in {ns} did not start")

    def count(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(read_line(self.process, 10.0, "the capture's count"))

    def stop(self) -> list[tuple[str, bytes]]:
        try:
            out, _ = self.process.communicate("stop\n", timeout=10.0)
        finally:
            self.lab.stop(self.process)
        return [(word, bytes.fromhex(frame)) for word, frame in json.loads(out.splitlines()[-1])]


Where = tuple[str, str]


def exchange(
    lab: Lab, near: Where, far: Where, sequence: list[bytes]
) -> dict[Where, list[tuple[str, bytes]]]:
    """Send ``sequence`` from ``near`` (ns, ifname); what the captures at both ends recorded
    once settled (nothing new for one poll interval, within 15 s)."""
    captures = {where: Capture(lab, *where) for where in (far, near)}
    injector = Injector(lab, *near)
    try:
        assert injector.send(sequence) == len(sequence)
        wait_until(lambda: captures[far].count() >= 1, 10.0, "the first frames")
        last = [-1]

        def quiet() -> bool:  # nothing new for one poll interval: all answers are in
            now = sum(c.count() for c in captures.values())
            done, last[0] = now == last[0], now
            return done

        wait_until(quiet, 15.0, "the captures settled", interval=0.5)
    finally:
        injector.close()
        seen = {where: c.stop() for where, c in captures.items()}
    return seen


@dataclass(frozen=True)
class Leg:
    """One direction of an exchange: ``sequence`` sent by ``sender`` from ``near`` to ``far``."""

    near: Where
    far: Where
    sequence: list[bytes]
    sender: str


def exchange_both_ways(
    lab: Lab,
    domain: Domain,
    legs: Mapping[str, Leg],
    normal: Callable[[bytes, str], bytes],
    roles: tuple[str, ...] = ("dlmap", "dmpa1"),
) -> tuple[dict[str, list[bytes]], Counter[str]]:
    """Each leg in turn (:func:`exchange`): the frames seen, ``normal(frame, sender)`` each,
    by ``ns:marker word`` (sorted), and the change of ``roles``' counters over all of it."""
    frames: dict[str, list[bytes]] = {}
    before = {r: flat(domain.ask(r, "counters")) for r in roles}
    for leg in legs.values():
        seen = exchange(lab, leg.near, leg.far, leg.sequence)
        for where, got in seen.items():
            for word, frame in got:
                frames.setdefault(f"{where[0]}:{word}", []).append(normal(frame, leg.sender))
    after = {r: flat(domain.ask(r, "counters")) for r in roles}
    return {k: sorted(v) for k, v in frames.items()}, counter_delta(before, after)
