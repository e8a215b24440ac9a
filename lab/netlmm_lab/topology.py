"""The lab domain in network namespaces: CN, DLMAP, IPv6 transport, two DMPAs, base stations, MS.

Layout (namespace short names; the real names are ``<prefix>-<short>``, ``prefix`` =
``nl<pid>`` or ``nl<pid>.<n>`` for the n-th lab of one process)::

    cn  cn0 198.51.100.2/24 --- up0 198.51.100.1/24  lm                 (IPv4 side, MTU 1500)
                                tr0 2001:db8:100::1/64 --- [tr br0]     (IPv6 transport, MTU 1600)
    m1  tr0 2001:db8:100::11/64 ----------------------- [tr br0]
    m2  tr0 2001:db8:100::12/64 ----------------------- [tr br0]
    m1  acc0 --- dmpa [b1 br0] ms --- ms0  ms           (access link, "radio cell", MTU 1500)
    m2  acc0 --- dmpa [b2 br0]

The MS's peer end (``ms`` in ``b1``) moves to ``b2`` on :meth:`Lab.handover`. Interface names
are fixed and short: each lives in a namespace the lab made, so nothing collides with the host.
Only documentation prefixes are used; the root namespace's links and routes are never touched.

Every process started through :meth:`Lab.exec` / :meth:`Lab.popen` is tracked and ended by PID
in :meth:`Lab.close`, which also kills anything left inside the lab's namespaces, deletes them
and the ``/etc/netns/<ns>`` directories it made. SIGINT/SIGTERM unwind into ``close`` (and an
``atexit`` hook covers a lab left open); :meth:`Lab.sweep` removes leftovers of crashed runs,
recognised by the owner PID in the prefix.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger(__name__)

# --- the domain's addresses (documentation prefixes only) ------------------------------------

HOA_NETWORK = IPv4Network("192.0.2.0/24")
UPLINK_NETWORK = IPv4Network("198.51.100.0/24")
CN_ADDRESS = IPv4Address("198.51.100.2")
DLMAP_UPLINK_ADDRESS = IPv4Address("198.51.100.1")
TRANSPORT_NETWORK = IPv6Network("2001:db8:100::/64")
DLMAP_ADDRESS = IPv6Address("2001:db8:100::1")
DMPA_ADDRESSES = {1: IPv6Address("2001:db8:100::11"), 2: IPv6Address("2001:db8:100::12")}
ACCESS_MTU = 1500
TRANSPORT_MTU = 1600

# Interface names, per namespace.
CN_IF = "cn0"  # cn
UPLINK_IF = "up0"  # lm, towards cn
TRANSPORT_IF = "tr0"  # lm, m1, m2
ACCESS_IF = "acc0"  # m1, m2: the DMPA bridges its TAP with this
BRIDGE = "br0"  # tr, b1, b2
BS_DMPA_PORT = "dmpa"  # b1, b2: peer of the DMPA's acc0
MS_IF = "ms0"  # ms, ms2, ...

NETNS_RUN = Path("/run/netns")
NETNS_ETC = Path("/etc/netns")
RUN_DIR = Path("/run/netlmm-lab")
_NAME = re.compile(r"^(nl(\d+)(?:\.\d+)?)-[a-z0-9]+$")
_KEPT = "kept"
_counter = 0
_counter_lock = threading.Lock()


class LabError(RuntimeError):
    """The lab could not be built, a command in it failed, or a wait timed out."""


def _ip(*args: str, timeout: float = 15.0) -> str:
    """Run ``ip`` (in the root namespace's mount view; ``-n NS`` selects the network)."""
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_pids(name: str) -> list[int]:
    result = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10, check=False
    )
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def _kill_all_in(name: str, deadline: float) -> None:
    """SIGKILL every process left in namespace ``name`` (all were started for the lab)."""
    for _ in range(50):
        pids = [pid for pid in _netns_pids(name) if pid != os.getpid()]
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(pids, min(deadline, time.monotonic() + 1.0))


def _running(pid: int) -> bool:
    """Alive and not a zombie (orphans wait for PID 1 to reap them, which may be slow)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False


def _wait_gone(pids: Sequence[int], deadline: float) -> None:
    while time.monotonic() < deadline:
        if not any(_running(pid) for pid in pids):
            return
        time.sleep(0.01)


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll ``predicate`` until it holds; return the seconds it took, raise LabError at the
    deadline (the message says ``what`` was awaited)."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True, slots=True)
class HandoverResult:
    """One move of an MS's link between base stations."""

    ms: str
    from_bs: int
    to_bs: int
    move_ms: float  # moving the veth end and re-enslaving it (the "radio" switch itself)
    carrier_ms: float  # until the MS's interface reports carrier again

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Lease:
    """What udhcpc's script saw on its last ``bound``/``renew`` event."""

    serial: int  # events seen so far (grows with every script call)
    event: str
    interface: str
    address: IPv4Address
    prefix_len: int
    router: IPv4Address | None
    dns: tuple[IPv4Address, ...]
    domain: str
    lease_time: int
    server_id: IPv4Address | None
    mtu: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "event": self.event,
            "interface": self.interface,
            "address": str(self.address),
            "prefix_len": self.prefix_len,
            "router": None if self.router is None else str(self.router),
            "dns": [str(a) for a in self.dns],
            "domain": self.domain,
            "lease_time": self.lease_time,
            "server_id": None if self.server_id is None else str(self.server_id),
            "mtu": self.mtu,
        }

    @classmethod
    def parse(cls, text: str) -> Lease:
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

        def opt4(key: str) -> IPv4Address | None:
            words = fields.get(key, "").split()
            return IPv4Address(words[0]) if words else None

        mtu = fields.get("mtu", "")
        return cls(
            serial=int(fields.get("serial", "0") or 0),
            event=fields.get("event", ""),
            interface=fields.get("interface", ""),
            address=IPv4Address(fields["ip"]),
            prefix_len=int(fields.get("mask", "32") or 32),
            router=opt4("router"),
            dns=tuple(IPv4Address(w) for w in fields.get("dns", "").split()),
            domain=fields.get("domain", ""),
            lease_time=int(fields.get("lease", "0") or 0),
            server_id=opt4("serverid"),
            mtu=int(mtu) if mtu.isdigit() else None,
        )


class Lab:
    """The lab domain; ``with Lab() as lab:`` builds it and always tears it down."""

    def __init__(
        self, *, mobiles: int = 1, sweep: bool = True, transport_mtu: int = TRANSPORT_MTU
    ) -> None:
        if not 1 <= mobiles <= 9:
            raise ValueError("mobiles must be 1..9")
        global _counter
        with _counter_lock:
            n, _counter = _counter, _counter + 1
        self.prefix = f"nl{os.getpid()}" if n == 0 else f"nl{os.getpid()}.{n}"
        self.mobiles = ["ms"] + [f"ms{i}" for i in range(2, mobiles + 1)]
        self.workdir = RUN_DIR / self.prefix
        #: MTU of the IPv6 transport: 1600 fits a full-size IPv4 packet in the tunnel; 1500
        #: shows what happens where an operator cannot raise it (tunnel MTU 1460).
        self.transport_mtu = transport_mtu
        self._sweep = sweep
        self._namespaces: list[str] = []
        self._etc_dirs: list[Path] = []
        self._procs: dict[int, subprocess.Popen[Any]] = {}
        self._procs_lock = threading.Lock()
        self._attached: dict[str, int] = {}
        self._closed = False
        self._started = False
        self._old_handlers: dict[int, Any] = {}

    # --- names ---------------------------------------------------------------------------

    def ns(self, short: str) -> str:
        """The real namespace name of ``cn``, ``lm``, ``tr``, ``m1``, ``m2``, ``b1``, ``b2``,
        ``ms`` (and ``ms2``... with more mobiles)."""
        return f"{self.prefix}-{short}"

    @staticmethod
    def ms_mac(ms: str = "ms") -> str:
        """The fixed, locally administered MAC of ``ms0`` in mobile ``ms`` (``ms2``...)."""
        index = 1 if ms == "ms" else int(ms[2:])
        return f"02:4e:4c:00:00:{index:02x}"

    def bs_port(self, ms: str = "ms") -> str:
        """The name of mobile ``ms``'s peer end in its base station's bridge."""
        return ms

    def attached(self, ms: str = "ms") -> int:
        """The base station (1 or 2) mobile ``ms`` is plugged into."""
        return self._attached[ms]

    def resolv_conf(self, ms: str = "ms") -> Path:
        """The mobile's own resolv.conf (``ip netns exec`` shows it as ``/etc/resolv.conf``)."""
        return NETNS_ETC / self.ns(ms) / "resolv.conf"

    # --- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, timeout: float = 20.0) -> Lab:
        """Build the domain and wait until every link passes frames (ping across each)."""
        if self._started:
            raise LabError("a Lab starts once")
        self._started = True
        self._install_handlers()
        atexit.register(self.close)
        try:
            if self._sweep:
                self.sweep()
            self._build()
            self.wait_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        shorts = ["cn", "lm", "tr", "m1", "m2", "b1", "b2", *self.mobiles]
        self.workdir.mkdir(parents=True, exist_ok=True)
        for short in shorts:
            name = self.ns(short)
            self._namespaces.append(name)
            _ip("netns", "add", name)
            # No DAD: the transport addresses must be usable before the appliance starts.
            self.exec(
                short,
                [
                    "sysctl", "-q", "-w",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.all.dad_transmits=0",
                    "net.ipv6.conf.default.dad_transmits=0",
                ],
            )  # fmt: skip
            if short not in ("lm", "m1", "m2"):
                # IPv4-only hosts and layer-2 boxes: no IPv6 chatter on their links.
                self.exec(
                    short,
                    [
                        "sysctl", "-q", "-w",
                        "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1",
                    ],
                )  # fmt: skip
            self._link(short, "set", "lo", "up")
        for short in self.mobiles:
            etc = NETNS_ETC / self.ns(short)
            etc.mkdir(parents=True, exist_ok=True)
            self._etc_dirs.append(etc)
            self.resolv_conf(short).write_text("# netlmm lab: written by the MS's DHCP client\n")

        # IPv4 side: cn <-> lm.
        self._veth("cn", CN_IF, "lm", UPLINK_IF, ACCESS_MTU)
        self._addr("cn", f"{CN_ADDRESS}/24", CN_IF)
        self._addr("lm", f"{DLMAP_UPLINK_ADDRESS}/24", UPLINK_IF)
        _ip("-n", self.ns("cn"), "route", "add", str(HOA_NETWORK), "via", str(DLMAP_UPLINK_ADDRESS))

        # IPv6 transport: a bridge in tr with lm, m1, m2.
        self._bridge("tr", self.transport_mtu)
        for short, address in (
            ("lm", DLMAP_ADDRESS),
            ("m1", DMPA_ADDRESSES[1]),
            ("m2", DMPA_ADDRESSES[2]),
        ):
            self._veth(short, TRANSPORT_IF, "tr", short, self.transport_mtu)
            self._link("tr", "set", short, "master", BRIDGE, "up")
            self._addr(short, f"{address}/64", TRANSPORT_IF, "nodad")

        # Access: each DMPA's acc0 into its base station's bridge; the mobiles into b1.
        for index in (1, 2):
            bs = f"b{index}"
            self._bridge(bs, ACCESS_MTU)
            self._veth(f"m{index}", ACCESS_IF, bs, BS_DMPA_PORT, ACCESS_MTU)
            self._link(bs, "set", BS_DMPA_PORT, "master", BRIDGE, "up")
            # acc0 is layer 2 only (the appliance bridges it with its TAP): no address at all.
            self.exec(
                f"m{index}", ["sysctl", "-q", "-w", f"net.ipv6.conf.{ACCESS_IF}.disable_ipv6=1"]
            )
        for short in self.mobiles:
            self._veth(short, MS_IF, "b1", self.bs_port(short), ACCESS_MTU)
            self._link(short, "set", MS_IF, "address", self.ms_mac(short))
            self._link("b1", "set", self.bs_port(short), "master", BRIDGE, "up")
            self._attached[short] = 1

    def _link(self, short: str, *args: str) -> None:
        _ip("-n", self.ns(short), "link", *args)

    def _addr(self, short: str, cidr: str, dev: str, *flags: str) -> None:
        _ip("-n", self.ns(short), "addr", "add", cidr, "dev", dev, *flags)

    def _veth(self, a: str, a_if: str, b: str, b_if: str, mtu: int) -> None:
        """A veth pair made inside ``a`` with its peer sent to ``b``; both ends up."""
        _ip(
            "-n", self.ns(a), "link", "add", a_if, "mtu", str(mtu),
            "type", "veth", "peer", "name", b_if, "mtu", str(mtu), "netns", self.ns(b),
        )  # fmt: skip
        self._link(a, "set", a_if, "up")
        self._link(b, "set", b_if, "up")

    def _bridge(self, short: str, mtu: int) -> None:
        # No STP and no forward delay: a port forwards as soon as it is up.
        _ip(
            "-n", self.ns(short), "link", "add", BRIDGE, "mtu", str(mtu), "type", "bridge",
            "stp_state", "0", "forward_delay", "0",
        )  # fmt: skip
        self._link(short, "set", BRIDGE, "up")

    def close(self) -> None:
        """End every process by PID, delete every namespace and /etc/netns dir; idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._signals_deferred():
            deadline = time.monotonic() + 10.0
            with self._procs_lock:
                procs = list(self._procs.values())
                self._procs.clear()
            for proc in procs:
                _end(proc, min(deadline, time.monotonic() + 3.0))
            for name in self._namespaces:
                _kill_all_in(name, deadline)
            for name in self._namespaces:
                result = subprocess.run(
                    ["ip", "netns", "delete", name],
                    capture_output=True,
                    text=True,
                    timeout=15,
                    check=False,
                )
                if result.returncode != 0 and (NETNS_RUN / name).exists():
                    log.warning("netns delete failed ns=%s err=%s", name, result.stderr.strip())
            self._namespaces.clear()
            for etc in self._etc_dirs:
                shutil.rmtree(etc, ignore_errors=True)
            self._etc_dirs.clear()
            shutil.rmtree(self.workdir, ignore_errors=True)
            with contextlib.suppress(Exception):
                atexit.unregister(self.close)
        self._restore_handlers()

    def detach(self) -> str:
        """Leave the domain running (``netlmm lab up``): :meth:`sweep` spares it, and
        :meth:`down` with the returned prefix removes it later. The lab object forgets it."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / _KEPT).write_text(json.dumps({"namespaces": self._namespaces}))
        with self._procs_lock:
            self._procs.clear()
        self._namespaces, self._etc_dirs = [], []
        self._closed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        self._restore_handlers()
        return self.prefix

    @classmethod
    def down(cls, prefix: str | None = None) -> list[str]:
        """Remove a detached domain (``prefix``), or every detached one; returns the
        namespaces deleted."""
        if prefix is not None:
            return cls._remove(lambda p, _pid: p == prefix, kept_too=True)
        # Without a prefix only detached domains go: a lab another process is running (a test,
        # a demo) is not ours to remove.
        return cls._remove(lambda p, _pid: (RUN_DIR / p / _KEPT).exists(), kept_too=True)

    @classmethod
    def sweep(cls) -> list[str]:
        """Remove what crashed runs left (namespaces, their processes, /etc/netns dirs and work
        dirs whose owner PID is dead; detached domains are spared). Returns the namespaces."""
        return cls._remove(lambda _p, pid: not _pid_alive(pid), kept_too=False)

    @classmethod
    def _remove(cls, select: Callable[[str, int], bool], *, kept_too: bool) -> list[str]:
        found: dict[str, list[str]] = {}
        owners: dict[str, int] = {}
        for root in (NETNS_RUN, NETNS_ETC):
            with contextlib.suppress(FileNotFoundError):
                for entry in root.iterdir():
                    match = _NAME.match(entry.name)
                    if match:
                        found.setdefault(match.group(1), [])
                        owners[match.group(1)] = int(match.group(2))
                        if root == NETNS_RUN:
                            found[match.group(1)].append(entry.name)
        with contextlib.suppress(FileNotFoundError):
            for entry in RUN_DIR.iterdir():
                match = re.match(r"^nl(\d+)(?:\.\d+)?$", entry.name)
                if match:
                    found.setdefault(entry.name, [])
                    owners[entry.name] = int(match.group(1))
        removed: list[str] = []
        deadline = time.monotonic() + 30.0
        for prefix, names in sorted(found.items()):
            kept = (RUN_DIR / prefix / _KEPT).exists()
            if (kept and not kept_too) or not select(prefix, owners[prefix]):
                continue
            for name in names:
                _kill_all_in(name, deadline)
                subprocess.run(
                    ["ip", "netns", "delete", name], capture_output=True, timeout=15, check=False
                )
                removed.append(name)
            with contextlib.suppress(FileNotFoundError):
                for etc in NETNS_ETC.iterdir():
                    if etc.name.startswith(prefix + "-") and _NAME.match(etc.name):
                        shutil.rmtree(etc, ignore_errors=True)
            shutil.rmtree(RUN_DIR / prefix, ignore_errors=True)
            if names:
                log.info("lab leftovers removed prefix=%s namespaces=%d", prefix, len(names))
        return removed

    # --- signals -------------------------------------------------------------------------

    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._old_handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler)
        self._old_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        old = self._old_handlers.get(signum)
        self.close()  # also restores the previous handlers
        if callable(old) and old not in (signal.default_int_handler, self._on_signal):
            old(signum, frame)
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    @contextlib.contextmanager
    def _signals_deferred(self) -> Iterator[None]:
        """A second Ctrl-C while closing must not leave half a lab: hold signals meanwhile."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        held = {signal.SIGINT, signal.SIGTERM}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    # --- processes -----------------------------------------------------------------------

    def _argv(self, ns: str, argv: Sequence[str]) -> list[str]:
        if self._closed or self.ns(ns) not in self._namespaces:
            raise LabError(f"no namespace {ns!r} in this lab")
        # ip netns exec execs the command: the PID we track is the command's own.
        return ["ip", "netns", "exec", self.ns(ns), *argv]

    def popen(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.PIPE,
        stderr: int | None = subprocess.PIPE,
        text: bool = True,
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` in namespace ``ns``; the lab ends it by PID on close."""
        full_env = None if env is None else {**os.environ, **env}
        proc = subprocess.Popen(
            self._argv(ns, argv),
            env=full_env,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=text,
            start_new_session=True,  # a Ctrl-C on the terminal reaches us, we end them
        )
        with self._procs_lock:
            self._procs[proc.pid] = proc
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 5.0) -> int | None:
        """End one process started by :meth:`popen` (SIGTERM, then SIGKILL); its exit code."""
        _end(proc, time.monotonic() + timeout)
        with self._procs_lock:
            self._procs.pop(proc.pid, None)
        return proc.returncode

    def forget(self, proc: subprocess.Popen[Any]) -> None:
        """Stop tracking a process that has exited (after ``wait``/``communicate``)."""
        if proc.poll() is not None:
            with self._procs_lock:
                self._procs.pop(proc.pid, None)

    def exec(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in namespace ``ns`` to completion (killed at ``timeout``)."""
        proc = self.popen(
            ns, argv, env=env, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.stop(proc)
            raise LabError(f"in {ns}: {' '.join(argv)} timed out after {timeout}s") from exc
        finally:
            if proc.poll() is None:
                self.stop(proc)
            self.forget(proc)
        result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise LabError(f"in {ns}: {' '.join(argv)}: exit {proc.returncode}: {err.strip()}")
        return result

    # --- readiness -----------------------------------------------------------------------

    def links(self, ns: str) -> list[dict[str, Any]]:
        """``ip -j link`` of namespace ``ns``."""
        result: list[dict[str, Any]] = json.loads(_ip("-n", self.ns(ns), "-j", "link", "show"))
        return result

    def _links_up(self, ns: str) -> bool:
        for link in self.links(ns):
            if link["ifname"] == "lo":
                continue
            if link.get("operstate") != "UP":
                return False
        tentative = json.loads(_ip("-n", self.ns(ns), "-j", "-6", "addr", "show", "tentative"))
        if any(entry.get("addr_info") for entry in tentative):
            return False
        ports = json.loads(_ip("-n", self.ns(ns), "-j", "link", "show", "type", "bridge_slave"))
        for port in ports:
            master = port.get("master")
            if master and _port_state(self.ns(ns), port["ifname"]) != "forwarding":
                return False
        return True

    def up(self, ns: str, timeout: float = 10.0) -> float:
        """Wait until every link of ``ns`` is up with carrier, no address is tentative and
        every bridge port forwards; returns the seconds waited."""
        return wait_until(lambda: self._links_up(ns), timeout, f"links up in {ns}")

    def ping_ok(self, ns: str, dst: str, *, size: int | None = None, df: bool = False) -> bool:
        """One echo from ``ns`` to ``dst`` answered within a second."""
        argv = ["ping", "-c", "1", "-W", "1", "-n", "-q"]
        if ":" in dst:
            argv.append("-6")
        if size is not None:
            argv += ["-s", str(size)]
        if df:
            argv += ["-M", "do"]
        return self.exec(ns, [*argv, dst], timeout=5, check=False).returncode == 0

    def wait_ping(self, ns: str, dst: str, timeout: float = 10.0) -> float:
        """Ping from ``ns`` until ``dst`` answers (at most one probe a second is lost)."""
        return wait_until(lambda: self.ping_ok(ns, dst), timeout, f"{dst} answering from {ns}")

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Every namespace's links up, then IPv4 and IPv6 reachability across cn/lm/tr."""
        deadline = time.monotonic() + timeout
        for short in ["cn", "lm", "tr", "m1", "m2", "b1", "b2", *self.mobiles]:
            self.up(short, max(0.1, deadline - time.monotonic()))
        self.wait_ping("cn", str(DLMAP_UPLINK_ADDRESS), max(0.1, deadline - time.monotonic()))
        for index in (1, 2):
            self.wait_ping(f"m{index}", str(DLMAP_ADDRESS), max(0.1, deadline - time.monotonic()))
        self.wait_ping("m1", str(DMPA_ADDRESSES[2]), max(0.1, deadline - time.monotonic()))

    def carrier(self, ns: str, ifname: str) -> bool:
        out = _ip("-n", self.ns(ns), "-j", "link", "show", "dev", ifname)
        links: list[dict[str, Any]] = json.loads(out)
        return bool(links) and links[0].get("operstate") == "UP"

    # --- handover ------------------------------------------------------------------------

    def handover(self, to: int, ms: str = "ms", timeout: float = 10.0) -> HandoverResult:
        """Move mobile ``ms``'s link to base station ``to`` (1 or 2): its peer end leaves the
        old bridge and namespace, joins the new bridge and comes up. The MS sees its carrier
        drop and come back; waits for that (and the port forwarding) before returning."""
        if to not in (1, 2):
            raise ValueError("base station is 1 or 2")
        old = self._attached[ms]
        if old == to:
            raise LabError(f"{ms} is already on b{to}")
        port = self.bs_port(ms)
        start = time.monotonic()
        _ip("-n", self.ns(f"b{old}"), "link", "set", port, "netns", self.ns(f"b{to}"))
        _ip("-n", self.ns(f"b{to}"), "link", "set", port, "master", BRIDGE, "up")
        moved = time.monotonic()
        self._attached[ms] = to
        wait_until(
            lambda: (
                self.carrier(ms, MS_IF) and _port_state(self.ns(f"b{to}"), port) == "forwarding"
            ),
            timeout,
            f"carrier on {ms}'s {MS_IF} after handover to b{to}",
            interval=0.005,
        )
        done = time.monotonic()
        return HandoverResult(
            ms, old, to, round((moved - start) * 1000, 3), round((done - start) * 1000, 3)
        )


def _port_state(netns: str, port: str) -> str:
    out = _ip("-n", netns, "-j", "-d", "link", "show", "dev", port)
    links: list[dict[str, Any]] = json.loads(out)
    if not links:
        return ""
    info = links[0].get("linkinfo", {}).get("info_slave_data", {})
    return str(info.get("state", ""))


def _end(proc: subprocess.Popen[Any], deadline: float) -> None:
    """SIGTERM, wait until the deadline, then SIGKILL; always reaps."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.05, deadline - time.monotonic()))
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()


# --- the MS's DHCP client --------------------------------------------------------------------

# busybox ships no default udhcpc script here; this one configures the MS from the lease, writes
# its DNS servers to the namespace's own resolv.conf (never the host's), and leaves the lease in
# NETLMM_LEASE_FILE (key=value) and one line per event in NETLMM_EVENT_LOG.
UDHCPC_SCRIPT = r"""#!/bin/sh
echo "$1 ip=$ip mask=$mask router=$router lease=$lease serverid=$serverid" >> "$NETLMM_EVENT_LOG"
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set dev "$interface" up
    ;;
  bound|renew)
    if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/${mask:-32} "; then
      ip -4 addr flush dev "$interface"
      ip addr add "$ip/${mask:-32}" dev "$interface"
    fi
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    for r in $router; do
      ip route replace default via "$r" dev "$interface" onlink
      break
    done
    tmp="$NETLMM_RESOLV.tmp"
    echo "# from DHCP ($interface)" > "$tmp"
    [ -n "$domain" ] && echo "search $domain" >> "$tmp"
    for d in $dns; do echo "nameserver $d" >> "$tmp"; done
    mv "$tmp" "$NETLMM_RESOLV"
    serial=$(wc -l < "$NETLMM_EVENT_LOG")
    {
      echo "serial=$serial"; echo "event=$1"; echo "interface=$interface"
      echo "ip=$ip"; echo "mask=$mask"; echo "router=$router"; echo "dns=$dns"
      echo "domain=$domain"; echo "lease=$lease"; echo "serverid=$serverid"; echo "mtu=$mtu"
    } > "$NETLMM_LEASE_FILE.tmp"
    mv "$NETLMM_LEASE_FILE.tmp" "$NETLMM_LEASE_FILE"
    ;;
esac
exit 0
"""


class DhcpClient:
    """busybox ``udhcpc`` on a mobile's ``ms0`` with the lab's own script.

    :meth:`once` gets one lease and exits (``-f -q -n``); :meth:`start` keeps a client running
    (``-f``: it renews at T1 and re-acquires on its own, :meth:`renew` forces a renewal), and
    :meth:`wait_lease` polls for the lease it reports."""

    def __init__(self, lab: Lab, ms: str = "ms", *, extra_args: Sequence[str] = ()) -> None:
        self.lab = lab
        self.ms = ms
        self.extra_args = list(extra_args)
        lab.workdir.mkdir(parents=True, exist_ok=True)
        self.script = lab.workdir / f"udhcpc-{ms}.sh"
        self.lease_file = lab.workdir / f"lease-{ms}.env"
        self.event_log = lab.workdir / f"events-{ms}.log"
        self.script.write_text(UDHCPC_SCRIPT)
        self.script.chmod(0o755)
        self.event_log.touch()
        self.proc: subprocess.Popen[Any] | None = None

    def _env(self) -> dict[str, str]:
        return {
            "NETLMM_LEASE_FILE": str(self.lease_file),
            "NETLMM_EVENT_LOG": str(self.event_log),
            "NETLMM_RESOLV": str(self.lab.resolv_conf(self.ms)),
        }

    def _argv(self, *mode: str) -> list[str]:
        return [
            "udhcpc", "-i", MS_IF, "-s", str(self.script), "-f", "-T", "1", "-A", "1",
            "-O", "mtu", *mode, *self.extra_args,
        ]  # fmt: skip

    def once(self, tries: int = 5, timeout: float = 30.0) -> Lease:
        """Send up to ``tries`` discovers (one a second), take the lease, exit."""
        before = self.serial()
        result = self.lab.exec(
            self.ms,
            self._argv("-q", "-n", "-t", str(tries)),
            env=self._env(),
            timeout=timeout,
            check=False,
        )
        lease = self.lease()
        if result.returncode != 0 or lease is None or lease.serial <= before:
            raise LabError(
                f"udhcpc in {self.ms} got no lease (exit {result.returncode}): "
                f"{result.stderr.strip()[-500:]}"
            )
        return lease

    def start(self, tries: int = 5) -> None:
        """Run udhcpc in the foreground until :meth:`stop` (or the lab closes)."""
        if self.proc is not None and self.proc.poll() is None:
            raise LabError("udhcpc already running")
        self.proc = self.lab.popen(
            self.ms,
            self._argv("-t", str(tries)),
            env=self._env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def renew(self) -> None:
        """Ask the running client to renew now (SIGUSR1)."""
        if self.proc is None or self.proc.poll() is not None:
            raise LabError("udhcpc is not running")
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = self.lab.stop(self.proc)
        self.proc = None
        return code

    def serial(self) -> int:
        """Script calls so far."""
        try:
            return len(self.event_log.read_text().splitlines())
        except FileNotFoundError:
            return 0

    def events(self) -> list[str]:
        """One line per script call: ``<event> ip=... mask=... router=... lease=...``."""
        try:
            return self.event_log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def lease(self) -> Lease | None:
        try:
            return Lease.parse(self.lease_file.read_text())
        except (FileNotFoundError, KeyError, ValueError):
            return None

    def wait_lease(self, timeout: float = 15.0, after: int = 0) -> Lease:
        """Poll until a lease newer than event ``after`` (a :meth:`serial`) is reported."""
        found: list[Lease] = []

        def newer() -> bool:
            lease = self.lease()
            if lease is not None and lease.serial > after:
                found.append(lease)
                return True
            return False

        wait_until(newer, timeout, f"a DHCP lease in {self.ms}")
        return found[-1]
