"""The lab: network namespaces, the processes started in them, and their teardown.

:class:`Lab` is the one test bed of the project. By default it builds the NETLMM domain
(namespace short names; the real names are ``<prefix>-<short>``, ``prefix`` = ``nl<pid>`` or
``nl<pid>.<n>`` for the n-th lab of one process)::

    cn  cn0 198.51.100.2/24 --- up0 198.51.100.1/24  lm                 (IPv4 side, MTU 1500)
                                tr0 2001:db8:100::1/64 --- [tr br0]     (IPv6 transport, MTU 1600)
    m1  tr0 2001:db8:100::11/64 ----------------------- [tr br0]
    m2  tr0 2001:db8:100::12/64 ----------------------- [tr br0]
    m1  acc0 --- dmpa [b1 br0] ms --- ms0  ms           (access link, "radio cell", MTU 1500)
    m2  acc0 --- dmpa [b2 br0]

The MS's peer end (``ms`` in ``b1``) moves to ``b2`` on :meth:`Lab.handover`. Interface names
are fixed and short: each lives in a namespace the lab made, so nothing collides with the host.
Only documentation prefixes are used; the root namespace's links and routes are never touched.

Other shapes (the throughput chain, the transport probe's pair, the I/O tests' two namespaces)
are subclasses that override :meth:`Lab.build` and :meth:`Lab.wait_ready` with the same
building blocks (:meth:`Lab.add_namespace`, :meth:`Lab.veth`, :meth:`Lab.bridge`, ...).

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

from netlmm_lab import netns
from netlmm_lab.errors import LabError
from netlmm_lab.netns import NETNS_ETC, NETNS_RUN
from netlmm_lab.poll import wait_until

__all__ = ["NETNS_ETC", "NETNS_RUN", "HandoverResult", "Lab", "LabError"]

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

RUN_DIR = Path("/run/netlmm-lab")
_KEPT = "kept"
# No DAD: the transport addresses must be usable before the appliance starts.
NO_DAD = (
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.conf.all.dad_transmits=0",
    "net.ipv6.conf.default.dad_transmits=0",
)
NO_IPV6 = ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")


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


class Lab:
    """A test bed in network namespaces; ``with Lab() as lab:`` builds it (the NETLMM domain
    unless a subclass builds another shape) and always tears it down."""

    def __init__(
        self, *, mobiles: int = 1, sweep: bool = True, transport_mtu: int = TRANSPORT_MTU
    ) -> None:
        if not 1 <= mobiles <= 10:
            raise ValueError("mobiles must be 1..10")
        self.prefix = netns.new_prefix()
        self.mobiles = ["ms"] + [f"ms{i}" for i in range(2, mobiles + 1)]
        self.workdir = RUN_DIR / self.prefix
        #: MTU of the IPv6 transport: 1600 fits a full-size IPv4 packet in the tunnel; 1500
        #: shows what happens where an operator cannot raise it (tunnel MTU 1460).
        self.transport_mtu = transport_mtu
        self._sweep = sweep
        self._namespaces: list[str] = []
        self._procs: dict[int, subprocess.Popen[Any]] = {}
        self._procs_lock = threading.Lock()
        self._attached: dict[str, int] = {}
        self._closed = False
        self._started = False
        self._old_handlers: dict[int, Any] = {}

    # --- names ---------------------------------------------------------------------------

    def ns(self, short: str) -> str:
        """The real namespace name of ``cn``, ``lm``, ``tr``, ``m1``, ``m2``, ``b1``, ``b2``,
        ``ms`` (and ``ms2``... with more mobiles), or of a subclass's own short names."""
        return f"{self.prefix}-{short}"

    @property
    def namespaces(self) -> list[str]:
        """The namespaces this lab made and will delete."""
        return list(self._namespaces)

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
        """Build the bed and wait until every link passes frames (:meth:`wait_ready`)."""
        if self._started:
            raise LabError("a Lab starts once")
        self._started = True
        self._install_handlers()
        atexit.register(self.close)
        try:
            if self._sweep:
                self.sweep()
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.build()
            self.wait_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def build(self) -> None:
        """Make the namespaces, links and addresses: the NETLMM domain (see the module)."""
        for short in ["cn", "lm", "tr", "m1", "m2", "b1", "b2", *self.mobiles]:
            self.add_namespace(short)
            self.sysctl(short, *NO_DAD)
            if short not in ("lm", "m1", "m2"):
                # IPv4-only hosts and layer-2 boxes: no IPv6 chatter on their links.
                self.sysctl(short, *NO_IPV6)
        for short in self.mobiles:
            netns.etc(self.ns(short))
            self.resolv_conf(short).write_text("# netlmm lab: written by the MS's DHCP client\n")

        # IPv4 side: cn <-> lm.
        self.veth("cn", CN_IF, "lm", UPLINK_IF, ACCESS_MTU)
        self.addr("cn", f"{CN_ADDRESS}/24", CN_IF)
        self.addr("lm", f"{DLMAP_UPLINK_ADDRESS}/24", UPLINK_IF)
        self.ip("cn", "route", "add", str(HOA_NETWORK), "via", str(DLMAP_UPLINK_ADDRESS))

        # IPv6 transport: a bridge in tr with lm, m1, m2.
        self.bridge("tr", self.transport_mtu)
        for short, address in (
            ("lm", DLMAP_ADDRESS),
            ("m1", DMPA_ADDRESSES[1]),
            ("m2", DMPA_ADDRESSES[2]),
        ):
            self.veth(short, TRANSPORT_IF, "tr", short, self.transport_mtu)
            self.link("tr", "set", short, "master", BRIDGE, "up")
            self.addr(short, f"{address}/64", TRANSPORT_IF, "nodad")

        self.build_access()

    def build_access(self) -> None:
        """Access: each DMPA's acc0 into its base station's bridge; the mobiles into b1."""
        for index in (1, 2):
            bs = f"b{index}"
            self.bridge(bs, ACCESS_MTU)
            self.veth(f"m{index}", ACCESS_IF, bs, BS_DMPA_PORT, ACCESS_MTU)
            self.link(bs, "set", BS_DMPA_PORT, "master", BRIDGE, "up")
            # acc0 is layer 2 only (the appliance bridges it with its TAP): no address at all.
            self.sysctl(f"m{index}", f"net.ipv6.conf.{ACCESS_IF}.disable_ipv6=1")
        for short in self.mobiles:
            self.veth(short, MS_IF, "b1", self.bs_port(short), ACCESS_MTU)
            self.link(short, "set", MS_IF, "address", self.ms_mac(short))
            self.link("b1", "set", self.bs_port(short), "master", BRIDGE, "up")
            self._attached[short] = 1

    # --- building blocks (for build) --------------------------------------------------------

    def add_namespace(self, short: str) -> str:
        """Make namespace ``<prefix>-<short>`` (loopback up); :meth:`close` deletes it."""
        name = self.ns(short)
        self._namespaces.append(name)  # first: a half-made namespace is deleted too
        netns.create(name)
        return name

    def ip(self, short: str, *args: str) -> str:
        """``ip -n <namespace> args``."""
        return netns.ip("-n", self.ns(short), *args)

    def sysctl(self, short: str, *settings: str) -> None:
        self.exec(short, ["sysctl", "-q", "-w", *settings])

    def link(self, short: str, *args: str) -> None:
        self.ip(short, "link", *args)

    def addr(self, short: str, cidr: str, dev: str, *flags: str) -> None:
        self.ip(short, "addr", "add", cidr, "dev", dev, *flags)

    def veth(self, a: str, a_if: str, b: str, b_if: str, mtu: int) -> None:
        """A veth pair made inside ``a`` with its peer sent to ``b``; both ends up."""
        self.ip(
            a, "link", "add", a_if, "mtu", str(mtu),
            "type", "veth", "peer", "name", b_if, "mtu", str(mtu), "netns", self.ns(b),
        )  # fmt: skip
        self.link(a, "set", a_if, "up")
        self.link(b, "set", b_if, "up")

    def bridge(self, short: str, mtu: int) -> None:
        """Bridge ``br0`` in ``short``, up; no STP and no forward delay: a port forwards as
        soon as it is up."""
        self.ip(
            short, "link", "add", BRIDGE, "mtu", str(mtu), "type", "bridge",
            "stp_state", "0", "forward_delay", "0",
        )  # fmt: skip
        self.link(short, "set", BRIDGE, "up")

    def enter(self, short: str) -> contextlib.AbstractContextManager[None]:
        """This thread in the lab's namespace ``short`` for the body (sockets made there)."""
        return netns.enter(self.ns(short))

    # --- teardown ------------------------------------------------------------------------

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
                netns.end(proc, min(deadline, time.monotonic() + 3.0))
            for name in self._namespaces:
                netns.kill_all_in(name, deadline)
            for name in self._namespaces:
                try:
                    netns.delete(name, deadline)
                except LabError as exc:
                    log.warning("netns delete failed ns=%s err=%s", name, exc)
            self._namespaces.clear()
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
        self._namespaces = []
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
        return cls._remove(lambda _p, pid: not netns.pid_alive(pid), kept_too=False)

    @classmethod
    def _remove(cls, select: Callable[[str, int], bool], *, kept_too: bool) -> list[str]:
        found: dict[str, list[str]] = {}
        owners: dict[str, int] = {}
        for root in (NETNS_RUN, NETNS_ETC):
            with contextlib.suppress(FileNotFoundError):
                for entry in root.iterdir():
                    match = netns.NAME.match(entry.name)
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
                with contextlib.suppress(LabError):
                    netns.delete(name, deadline)
                removed.append(name)
            with contextlib.suppress(FileNotFoundError):
                for etc in NETNS_ETC.iterdir():
                    if etc.name.startswith(prefix + "-") and netns.NAME.match(etc.name):
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

    def _name(self, ns: str) -> str:
        if self._closed or self.ns(ns) not in self._namespaces:
            raise LabError(f"no namespace {ns!r} in this lab")
        return self.ns(ns)

    def popen(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.PIPE,
        stderr: int | None = subprocess.PIPE,
        text: bool = True,
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` in namespace ``ns``; the lab ends it by PID on close."""
        proc = netns.popen(
            self._name(ns),
            argv,
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=text,
        )
        with self._procs_lock:
            self._procs[proc.pid] = proc
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 5.0) -> int | None:
        """End one process started by :meth:`popen` (SIGTERM, then SIGKILL); its exit code."""
        netns.end(proc, time.monotonic() + timeout)
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
        cwd: str | Path | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in namespace ``ns`` to completion (killed at ``timeout``)."""
        proc = self.popen(
            ns,
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        )
        try:
            return netns.finish(
                proc, argv, ns, timeout=timeout, check=check, input=input, stop=self.stop
            )
        finally:
            self.forget(proc)

    # --- readiness -----------------------------------------------------------------------

    def links(self, ns: str) -> list[dict[str, Any]]:
        """``ip -j link`` of namespace ``ns``."""
        result: list[dict[str, Any]] = json.loads(self.ip(ns, "-j", "link", "show"))
        return result

    def _links_up(self, ns: str) -> bool:
        for link in self.links(ns):
            if link["ifname"] == "lo":
                continue
            if link.get("operstate") != "UP":
                return False
        tentative = json.loads(self.ip(ns, "-j", "-6", "addr", "show", "tentative"))
        if any(entry.get("addr_info") for entry in tentative):
            return False
        ports = json.loads(self.ip(ns, "-j", "link", "show", "type", "bridge_slave"))
        for port in ports:
            master = port.get("master")
            if master and _port_state(self.ns(ns), port["ifname"]) != "forwarding":
                return False
        return True

    def up(self, ns: str, timeout: float = 10.0) -> float:
        """Wait until every link of ``ns`` is up with carrier, no address is tentative and
        every bridge port forwards; returns the seconds waited."""
        began = time.monotonic()
        wait_until(lambda: self._links_up(ns), timeout, f"links up in {ns}")
        return time.monotonic() - began

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
        """Ping from ``ns`` until ``dst`` answers (at most one probe a second is lost);
        returns the seconds waited."""
        began = time.monotonic()
        wait_until(lambda: self.ping_ok(ns, dst), timeout, f"{dst} answering from {ns}")
        return time.monotonic() - began

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
        links: list[dict[str, Any]] = json.loads(self.ip(ns, "-j", "link", "show", "dev", ifname))
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
        self.link(f"b{old}", "set", port, "netns", self.ns(f"b{to}"))
        self.link(f"b{to}", "set", port, "master", BRIDGE, "up")
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


def _port_state(name: str, port: str) -> str:
    links: list[dict[str, Any]] = json.loads(
        netns.ip("-n", name, "-j", "-d", "link", "show", "dev", port)
    )
    if not links:
        return ""
    info = links[0].get("linkinfo", {}).get("info_slave_data", {})
    return str(info.get("state", ""))
