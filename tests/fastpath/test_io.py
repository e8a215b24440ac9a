"""The batched I/O on real fds: a TAP in one network namespace (DMPA), a TUN in another (DLMAP),
raw sockets across a veth between them; real packets in both directions, both twins.

The namespaces are a :class:`netlmm_lab.topology.Lab` of two (``a`` and ``b``), always deleted;
only documentation prefixes are used; nothing in the root namespace is touched (the test process
enters a namespace with setns(2) only to create its fds there, then comes back).
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from fastpath.common import Reason
from netlmm_lab.poll import wait_until
from netlmm_lab.topology import Lab
from tests.fastpath.packets import (
    BROADCAST,
    MS_MAC,
    PSEUDO_MAC,
    eth,
    ipv4,
    udp,
)
from tests.fastpath.tuntap import (
    ETH_P_ALL,
    IFF_TAP,
    IFF_TUN,
    PACKET_OUTGOING,
    a4,
    a6,
    tun_open,
)

DEADLINE = 10.0

A_ADDR, B_ADDR = "2001:db8:1::a", "2001:db8:1::b"
HOA = "192.0.2.10"
CN = "198.51.100.7"  # DLMAP's TUN address, the "Internet" side in this test
GW = "192.0.2.1"


class IoBed(Lab):
    """Two namespaces joined by a veth: a = DMPA (tap, raw sockets), b = DLMAP (tun, raw
    sockets); the fds are opened inside them and closed with the lab."""

    def __init__(self) -> None:
        super().__init__()
        self.mobiles = []
        self.tap, self.tun = "tap0", "tun0"
        self.fds: list[int] = []
        self.socks: list[socket.socket] = []

    def sock(self, *args: int) -> socket.socket:
        s = socket.socket(*args)
        s.setblocking(False)
        self.socks.append(s)
        return s

    def build(self) -> None:
        self.add_namespace("a")
        self.add_namespace("b")
        self.ip(
            "a", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", self.ns("b")
        )
        for ns, dev, addr in (("a", "va", A_ADDR), ("b", "vb", B_ADDR)):
            self.addr(ns, f"{addr}/64", dev, "nodad")
            self.link(ns, "set", dev, "up")
        with self.enter("a"):
            self.tap_fd = tun_open(self.tap, IFF_TAP)
            self.fds.append(self.tap_fd)
            self.a_rx = self.sock(socket.AF_INET6, socket.SOCK_RAW, 4)
            self.a_tx = self.sock(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.a_pkt = self.sock(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        with self.enter("b"):
            self.tun_fd = tun_open(self.tun, IFF_TUN)
            self.fds.append(self.tun_fd)
            self.b_rx = self.sock(socket.AF_INET6, socket.SOCK_RAW, 4)
            self.b_tx = self.sock(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.b_pkt = self.sock(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.b_udp = self.sock(socket.AF_INET, socket.SOCK_DGRAM)
        for ns, dev in (("a", self.tap), ("b", self.tun)):
            self.sysctl(ns, f"net.ipv6.conf.{dev}.disable_ipv6=1")
            self.link(ns, "set", dev, "up")
        self.addr("b", f"{CN}/32", self.tun)
        self.ip("b", "route", "add", "192.0.2.0/24", "dev", self.tun)
        with self.enter("b"):  # the "server" the MS talks to, behind the DLMAP's TUN
            self.b_sink = self.sock(socket.AF_INET, socket.SOCK_DGRAM)
            self.b_sink.bind((CN, 53))
        self.a_pkt.bind((self.tap, 0))
        self.b_pkt.bind((self.tun, 0))

    def wait_ready(self, timeout: float = DEADLINE) -> None:
        """The veth passes IPv6: poll with a probe datagram, never a fixed sleep."""
        with self.enter("a"):
            probe_tx = self.sock(socket.AF_INET6, socket.SOCK_DGRAM)
        with self.enter("b"):
            probe_rx = self.sock(socket.AF_INET6, socket.SOCK_DGRAM)
            probe_rx.bind((B_ADDR, 50000))

        def ready() -> bool:
            probe_tx.sendto(b"ready?", (B_ADDR, 50000))
            return bool(select.select([probe_rx], [], [], 0.2)[0])

        wait_until(ready, timeout, "the veth to pass IPv6")

    def close(self) -> None:
        for s in self.socks:
            s.close()
        for fd in self.fds:
            os.close(fd)
        self.socks, self.fds = [], []
        super().close()


@pytest.fixture(scope="module")
def lab() -> Iterator[IoBed]:
    if os.geteuid() != 0:
        yield None  # type: ignore[misc]  # the root fixture skips (or fails in CI) first
        return
    with IoBed() as bed:
        names = bed.namespaces
        yield bed
    assert not any(os.path.exists(f"/run/netns/{name}") for name in names)


def engines(fp: ModuleType) -> tuple[Any, Any]:
    ta = fp.HoaTable()
    ta.bind(a4(HOA), a6(B_ADDR), MS_MAC, link=0)
    dmpa = fp.Dmpa(ta, a6(A_ADDR), PSEUDO_MAC, a4(GW), peers=[a6(B_ADDR)])
    tb = fp.HoaTable()
    tb.bind(a4(HOA), a6(A_ADDR))
    dlmap = fp.Dlmap(tb, a6(B_ADDR), peers=[a6(A_ADDR)])
    return dmpa, dlmap


def drain(sock: socket.socket, keep: Callable[[bytes, Any], bool]) -> list[bytes]:
    got = []
    while True:
        try:
            data, addr = sock.recvfrom(65535)
        except BlockingIOError:
            return got
        if keep(data, addr):
            got.append(data)


def pump_until(pump: Callable[[], tuple[int, int, list[Any]]], fd: int, want: int) -> list[Any]:
    """Call a pump whenever ``fd`` is readable until it has received ``want`` packets."""
    totals: list[Any] = [0, 0, []]

    def received() -> list[Any] | None:
        select.select([fd], [], [], 0.1)
        rx, sent, punts = pump()
        totals[0] += rx
        totals[1] += sent
        totals[2] += punts
        return totals if totals[0] >= want else None

    wait_until(received, DEADLINE, f"the pump to receive {want} packets", interval=0.001)
    return totals


def test_uplink_and_downlink_on_real_fds(root: None, lab: IoBed, fp: ModuleType) -> None:
    dmpa, dlmap = engines(fp)
    inner = ipv4(a4(HOA), a4(CN), payload=udp(4000, 53, b"uplink"), ttl=64)
    drain(lab.b_pkt, lambda d, a: False)

    # MS -> DMPA tap: one forwarded frame, one ARP and one from an unknown MS (punted)
    lab.a_pkt.send(eth(inner))
    lab.a_pkt.send(eth(b"\x00" * 28, dst=BROADCAST, ethertype=0x0806))
    lab.a_pkt.send(eth(ipv4(a4("192.0.2.99"), a4(CN)), src=bytes.fromhex("02aabbccdd99")))
    rx, sent, punts = pump_until(
        lambda: dmpa.pump_access(lab.tap_fd, 0, lab.a_tx.fileno()), lab.tap_fd, 3
    )
    assert (rx, sent) == (3, 1)
    assert sorted((p.reason, p.link, p.source) for p in punts) == [
        (Reason.ARP, 0, MS_MAC),
        (Reason.UNKNOWN_MS, 0, bytes.fromhex("02aabbccdd99")),
    ]

    # across the veth, DLMAP raw socket -> its TUN: the MS's packet with the DMPA's TTL - 1
    rx, sent, punts = pump_until(
        lambda: dlmap.pump_tunnel(lab.b_rx.fileno(), lab.tun_fd), lab.b_rx.fileno(), 1
    )
    assert (rx, sent, punts) == (1, 1, [])
    seen: list[bytes] = []
    wait_until(
        lambda: bool(seen.extend(drain(lab.b_pkt, lambda d, a: d[9] == 17)) or seen),
        DEADLINE,
        "the packet on the TUN",
    )
    assert seen[0][:8] == inner[:8] and seen[0][8] == 63 and seen[0][20:] == inner[20:]
    wait_until(
        lambda: bool(select.select([lab.b_sink], [], [], 0.1)[0]), DEADLINE, "the server socket"
    )
    assert lab.b_sink.recvfrom(100) == (b"uplink", (HOA, 4000))  # the kernel took it

    # downlink: a datagram routed into the TUN -> encapsulated -> DMPA -> Ethernet on the tap
    drain(lab.a_pkt, lambda d, a: False)
    lab.b_udp.sendto(b"downlink", (HOA, 9999))
    rx, sent, punts = pump_until(
        lambda: dlmap.pump_tun(lab.tun_fd, lab.b_tx.fileno()), lab.tun_fd, 1
    )
    assert (rx, sent, punts) == (1, 1, [])
    rx, sent, punts = pump_until(
        lambda: dmpa.pump_tunnel(lab.a_rx.fileno(), [lab.tap_fd]), lab.a_rx.fileno(), 1
    )
    assert (rx, sent, punts) == (1, 1, [])
    frames: list[bytes] = []
    wait_until(
        lambda: bool(
            frames.extend(
                drain(lab.a_pkt, lambda d, a: a[2] != PACKET_OUTGOING and d[:6] == MS_MAC)
            )
            or frames
        ),
        DEADLINE,
        "the frame on the tap",
    )
    f = frames[0]
    assert f[6:14] == PSEUDO_MAC + b"\x08\x00"
    assert f[14 + 12 : 14 + 20] == socket.inet_aton(CN) + socket.inet_aton(HOA)
    assert f[14 + 8] == 63 and f.endswith(b"downlink")
    c_a, c_b = dmpa.counters(), dlmap.counters()
    assert (c_a["uplink.forwarded"], c_a["downlink.forwarded"]) == (1, 1)
    assert (c_b["uplink.forwarded"], c_b["downlink.forwarded"]) == (1, 1)
    assert c_a["uplink.tx_errors"] == c_b["downlink.tx_errors"] == 0


def test_budget_bounds_one_call(root: None, lab: IoBed, fp: ModuleType) -> None:
    dmpa, _ = engines(fp)
    frame = eth(ipv4(a4(HOA), a4(CN), payload=udp(1, 2, b"b")))
    for _ in range(10):
        lab.a_pkt.send(frame)
    wait_until(
        lambda: bool(select.select([lab.tap_fd], [], [], 0)[0]), DEADLINE, "frames on the tap"
    )
    time.sleep(0)  # the ten frames are queued synchronously by the sends above
    rx, sent, _ = dmpa.pump_access(lab.tap_fd, 0, lab.a_tx.fileno(), budget=4)
    assert (rx, sent) == (4, 4)
    rx, sent, _ = dmpa.pump_access(lab.tap_fd, 0, lab.a_tx.fileno(), budget=64)
    assert (rx, sent) == (6, 6)
    assert dmpa.pump_access(lab.tap_fd, 0, lab.a_tx.fileno()) == (0, 0, [])
    # the DLMAP side receives them (drain its socket for the next test)
    drain(lab.b_rx, lambda d, a: False)
