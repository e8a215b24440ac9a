"""Helpers for the DHCP namespace tests: veths made inside namespaces, processes ended by PID,
polling until a deadline. Nothing here touches the root namespace's links or routes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


def ip(ns: str, *args: str) -> str:
    """``ip -n ns args``; raise with stderr on failure."""
    result = subprocess.run(
        ["ip", "-n", ns, *args], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"ip -n {ns} {' '.join(args)}: {result.stderr}")
    return result.stdout


def veth(ns_a: str, name_a: str, addr_a: str, ns_b: str, name_b: str, addr_b: str) -> None:
    """A veth pair made inside ``ns_a`` with its peer in ``ns_b``, both up, with addresses
    (``""`` leaves one without)."""
    ip(ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)
    for ns, name, addr in ((ns_a, name_a, addr_a), (ns_b, name_b, addr_b)):
        if addr:
            ip(ns, "addr", "add", addr, "dev", name)
        ip(ns, "link", "set", name, "up")
    # Daemons refuse a link without carrier ("not running"): wait for it, bounded.
    wait_for(lambda: _carrier(ns_a, name_a) and _carrier(ns_b, name_b), 10, "veth carrier")


def _carrier(ns: str, name: str) -> bool:
    return "LOWER_UP" in ip(ns, "link", "show", name)


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something truthy, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


@contextmanager
def process(
    ns: str,
    argv: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` inside ``ns`` (stdout and stderr to ``log``); on exit end it by its PID:
    SIGTERM, then SIGKILL after a bounded wait."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=REPO,
        )
        try:
            yield proc
        finally:
            end(proc)


def end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # ``ip netns exec`` execs the command, so this PID is the daemon itself.
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def udp_listening(ns: str, port: int) -> bool:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ss", "-Hlun"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout
    return any(line.split()[3].endswith(f":{port}") for line in out.splitlines() if line.strip())


@contextmanager
def netns_etc(ns: str) -> Iterator[Path]:
    """``/etc/netns/<ns>/`` for the namespace's own resolv.conf; removed on exit."""
    base = Path("/etc/netns") / ns
    base.mkdir(parents=True, exist_ok=False)
    try:
        yield base
    finally:
        for child in base.iterdir():
            child.unlink()
        base.rmdir()
