"""What a node checks before it touches the kernel, and the one line a start failure prints.

A start that cannot succeed stops with one log line per cause, naming the ini key, the
problem and what to do, and exit status 2 (systemd's ``RestartPreventExitStatus=2``: a restart
would fail the same way)::

    start_failed key=node.state_dir problem="dmpa1 already running (pid 4242)" fix="..."

Order (:func:`prepare`): the state directory (created 0700), the node lock (a second
``netlmm run`` of the same node refuses here, before its start-up sweep could delete the
running node's devices), the control socket (its directory, and no live process behind it),
the privileges (``CAP_NET_ADMIN``, ``CAP_NET_RAW``), the DMPA's access interfaces. Then
:func:`wait_address` (node.address on an interface of this namespace, DAD done).

:func:`interface_problems` is shared with ``netlmm check-config``, which reports what it can
know on the machine it runs on.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path

from router.adapters import control, host
from router.app.logs import kv
from router.app.settings import DMPASettings, Settings

log = logging.getLogger("netlmm")

#: Exit status of a start refused for a cause a restart would not fix.
EXIT_START_FAILED = 2
#: Seconds ``netlmm run`` waits for node.address to appear and finish DAD.
ADDRESS_WAIT = 10.0
_CAP_NET_ADMIN, _CAP_NET_RAW = 12, 13


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    problem: str
    fix: str

    def line(self) -> str:
        return kv({"key": self.key, "problem": self.problem, "fix": self.fix})


class StartError(Exception):
    """The start cannot go on: each problem becomes one ``start_failed`` line, exit 2."""

    def __init__(self, problems: Iterable[Problem], exit_status: int = EXIT_START_FAILED) -> None:
        self.problems = tuple(problems)
        self.exit_status = exit_status
        super().__init__("; ".join(p.problem for p in self.problems))

    def log(self) -> None:
        for p in self.problems:
            log.error(
                "start_failed %s",
                p.line(),
                extra={"fields": {"key": p.key, "problem": p.problem, "fix": p.fix}},
            )


def _state_dir(path: Path) -> Problem | None:
    fix = "create it (a directory the node may write) or set node.state_dir to one"
    if path.exists() and not path.is_dir():
        return Problem("node.state_dir", f"{path} exists and is not a directory", fix)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_uid == os.geteuid():
            os.chmod(path, 0o700)  # the bindings are nobody else's business
    except OSError as exc:
        return Problem("node.state_dir", f"cannot create {path}: {exc.strerror or exc}", fix)
    return None


def _capabilities() -> set[int]:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return set()
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            bits = int(line.split()[1], 16)
            return {cap for cap in (_CAP_NET_ADMIN, _CAP_NET_RAW) if bits >> cap & 1}
    return set()


def _privileges() -> list[Problem]:
    have = _capabilities()
    missing = [
        name
        for cap, name in ((_CAP_NET_ADMIN, "CAP_NET_ADMIN"), (_CAP_NET_RAW, "CAP_NET_RAW"))
        if cap not in have
    ]
    if _CAP_NET_RAW in have and not host.raw_allowed():
        missing.append("CAP_NET_RAW")
    if not missing:
        return []
    return [
        Problem(
            "-",
            f"no {' and no '.join(missing)}: the node cannot create its devices and sockets",
            "run it as root, or with both capabilities (etc/systemd/netlmm@.service does)",
        )
    ]


def interface_problems(settings: Settings, *, missing_is_error: bool) -> list[Problem]:
    """The DMPA's access interfaces, as this namespace has them: missing (an error at run
    time; ``check-config`` may run on another machine), the transport interface (it carries
    node.address), or carrying an IPv4 address (bridging it would cut that address off)."""
    if not isinstance(settings, DMPASettings):
        return []
    out = []
    transport = {h.ifname for h in host.ipv6_holders(settings.node.address)}
    for ifname in settings.access:
        if host.interface_index(ifname) is None:
            if missing_is_error:
                out.append(
                    Problem(
                        "dmpa.access",
                        f"no interface {ifname} in this network namespace",
                        f"create {ifname}, or name an existing access interface in dmpa.access",
                    )
                )
            continue
        if ifname in transport:
            out.append(
                Problem(
                    "dmpa.access",
                    f"{ifname} is the transport interface (it carries node.address "
                    f"{settings.node.address})",
                    "give the access link an interface of its own",
                )
            )
            continue
        v4 = host.ipv4_address(ifname)
        if v4 is not None:
            out.append(
                Problem(
                    "dmpa.access",
                    f"{ifname} carries the IPv4 address {v4}: the node bridges it and serves "
                    "the MSs on it, the address would be cut off",
                    f"remove the address (ip -4 addr flush dev {ifname}) or use another interface",
                )
            )
    return out


def check_host(settings: Settings) -> tuple[list[str], list[str]]:
    """``netlmm check-config``'s look at this machine: (errors, warnings) as
    ``section.key: message`` lines. A missing access interface is a warning there (the file
    may be checked on another machine); ``netlmm run`` refuses it."""
    errors = [
        f"{p.key}: {p.problem}; {p.fix}"
        for p in interface_problems(settings, missing_is_error=False)
    ]
    warnings = [
        f"{p.key}: {p.problem} (netlmm run refuses to start without it)"
        for p in interface_problems(settings, missing_is_error=True)
        if p.problem.startswith("no interface")
    ]
    return errors, warnings


def prepare(settings: Settings) -> host.NodeLock:
    """The checks before the kernel is touched (module docstring); the node lock, held."""
    node = settings.node
    problem = _state_dir(node.state_dir)
    if problem is not None:
        raise StartError([problem])
    lock = host.NodeLock(node.state_dir)
    try:
        lock.acquire()
    except host.AlreadyRunning as exc:
        pid = f"pid {exc.pid}" if exc.pid else "pid unknown"
        raise StartError(
            [
                Problem(
                    "node.name",
                    f"{node.name} already running ({pid})",
                    f"stop it first, or give this node another node.name and node.state_dir "
                    f"(lock file {exc.path})",
                )
            ]
        ) from None
    except OSError as exc:
        raise StartError(
            [
                Problem(
                    "node.state_dir",
                    f"cannot write {node.state_dir / host.LOCK_NAME}: {exc.strerror or exc}",
                    "make node.state_dir writable by the node",
                )
            ]
        ) from None
    try:
        problems = _control_socket(node.control_socket) + _privileges()
        problems += interface_problems(settings, missing_is_error=True)
        if problems:
            raise StartError(problems)
    except BaseException:
        lock.release()
        raise
    return lock


def _control_socket(path: Path) -> list[Problem]:
    try:
        control.prepare_path(path)
    except control.ControlError as exc:
        return [Problem("node.control_socket", str(exc), "stop that process or change the path")]
    except OSError as exc:
        where = exc.filename or path.parent
        why = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError):
            why = "it exists and is not a directory"
        return [
            Problem(
                "node.control_socket",
                f"cannot create {where}: {why}",
                "set node.control_socket in a directory the node may write (default "
                "/run/netlmm/NAME.sock)",
            )
        ]
    return []


def wait_address(address: IPv6Address, timeout: float = ADDRESS_WAIT) -> None:
    """Until node.address is usable on an interface of this namespace (DAD done); says at
    once when it waits, and fails with one line (:class:`StartError`)."""
    holders = host.ipv6_holders(address)
    key = "node.address"
    fix = f"add it to the transport interface (ip -6 addr add {address}/64 dev IFACE)"
    fix += " or correct node.address"
    if not holders:
        log.warning("address_wait %s", kv({"key": key, "address": address, "up_to_s": timeout}))
    deadline = time.monotonic() + timeout
    while True:
        holders = host.ipv6_holders(address)
        if any(h.dad_failed for h in holders):
            raise StartError(
                [
                    Problem(
                        key,
                        f"{address} failed duplicate address detection (another host has it)",
                        "give this node an address of its own",
                    )
                ]
            )
        if any(not h.tentative for h in holders):
            return
        if time.monotonic() >= deadline:
            what = (
                "still tentative (DAD)"
                if holders
                else "not configured on any interface of this network namespace"
            )
            raise StartError([Problem(key, f"{address} {what} after {timeout:g} s", fix)])
        time.sleep(0.05)
