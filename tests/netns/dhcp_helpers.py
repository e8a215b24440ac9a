"""Helpers for the DHCP namespace tests: veths made inside namespaces, daemons ended by PID.
Nothing here touches the root namespace's links or routes; namespaces, commands and polling
are :mod:`netlmm_lab.netns` and :func:`netlmm_lab.poll.wait_until`."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from netlmm_lab import netns
from netlmm_lab.poll import wait_until

REPO = Path(__file__).resolve().parents[2]


def veth(ns_a: str, name_a: str, addr_a: str, ns_b: str, name_b: str, addr_b: str) -> None:
    """A veth pair made inside ``ns_a`` with its peer in ``ns_b``, both up, with addresses
    (``""`` leaves one without)."""
    netns.ip("-n", ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b,
             "netns", ns_b)  # fmt: skip
    for ns, name, addr in ((ns_a, name_a, addr_a), (ns_b, name_b, addr_b)):
        if addr:
            netns.ip("-n", ns, "addr", "add", addr, "dev", name)
        netns.ip("-n", ns, "link", "set", name, "up")
    # Daemons refuse a link without carrier ("not running"): wait for it, bounded.
    wait_until(lambda: _carrier(ns_a, name_a) and _carrier(ns_b, name_b), 10, "veth carrier")


def _carrier(ns: str, name: str) -> bool:
    return "LOWER_UP" in netns.ip("-n", ns, "link", "show", name)


@contextmanager
def process(
    ns: str,
    argv: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` inside ``ns`` (stdout and stderr to ``log``, from the checkout); on exit
    end it by its PID: SIGTERM, then SIGKILL after a bounded wait."""
    with log.open("wb") as out:
        proc = netns.popen(
            ns, argv, env=env, cwd=REPO, stdout=out.fileno(), stderr=subprocess.STDOUT, text=False
        )
        try:
            yield proc
        finally:
            netns.end(proc, time.monotonic() + 5.0)
