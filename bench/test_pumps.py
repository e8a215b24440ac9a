"""The batched I/O pumps on real devices: time of one pump call that drains 64 packets.

One network namespace (a :class:`netlmm_lab.topology.Lab` of one), always deleted,
documentation prefixes only:
a TAP and a TUN (IPv6 off, no addresses: nothing but our packets on them), the two tunnel
addresses on its loopback, and a veth behind 2001:db8:2::/64 that takes what the pumps send
(a permanent neighbour entry, so no neighbour discovery; its peer is down, so the veth driver
drops each packet at the end of the IPv6 output path: no receiver's work is counted).
Each round first queues 64 packets (not timed), then one pump call drains them:

* ``pump_access`` (DMPA): 64 frames sent out of the TAP by a packet socket, so its fd has them
  to read -> classify, encapsulate -> one sendmmsg on an IPPROTO_RAW socket, out of the veth.
* ``pump_tun`` (DLMAP): the same from the TUN.
* ``pump_tunnel`` (DMPA): 64 IPv4-in-IPv6 packets sent to its address over the loopback -> one
  recvmmsg on a raw protocol-4 socket -> decapsulate -> 64 writes to the TAP (the kernel takes
  each frame in as received on the TAP and drops it: not for its MAC).

The figure is the pump call divided by 64: syscalls and kernel work included (the reads, the
sendmmsg through the IPv6 output path and the veth, the TAP writes), packet building not.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from bench.test_fastpath import SIZES, packet
from fastpath import reference
from netlmm_lab.topology import Lab
from tests.fastpath.packets import MS_MAC, PSEUDO_MAC, eth, ipv6
from tests.fastpath.tuntap import IFF_TAP, IFF_TUN, a4, a6, tun_open

DMPA_ADDR, DLMAP_ADDR = "2001:db8:1::a", "2001:db8:1::b"
SINK = "2001:db8:2::1"  # a tunnel endpoint behind the veth
SINK_MAC = "02:00:00:00:00:99"
HOA, CN, GW = a4("192.0.2.10"), a4("198.51.100.7"), a4("192.0.2.1")
ETH_P_IP = 0x0800
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
ROUNDS = 25
BATCH = 64


class PumpBed(Lab):
    """One namespace ``p`` with the TAP, the TUN, the raw sockets and the sink veth."""

    def __init__(self) -> None:
        super().__init__()
        self.mobiles = []
        self.tap, self.tun, self.veth_name = "tap0", "tun0", "sink0"
        self.fds: list[int] = []
        self.socks: list[socket.socket] = []

    def sock(self, *args: int) -> socket.socket:
        s = socket.socket(*args)
        s.setblocking(False)
        for opt in (SO_SNDBUFFORCE, SO_RCVBUFFORCE):  # 64 packets of 1.4 kB queue at once
            s.setsockopt(socket.SOL_SOCKET, opt, 1 << 22)
        self.socks.append(s)
        return s

    def build(self) -> None:
        self.add_namespace("p")
        for addr in (DMPA_ADDR, DLMAP_ADDR):
            self.addr("p", f"{addr}/128", "lo", "nodad")
        veth, peer = self.veth_name, f"{self.veth_name}p"
        self.link("p", "add", veth, "type", "veth", "peer", "name", peer)
        self.link("p", "set", veth, "up")  # the peer stays down
        self.ip("p", "-6", "route", "add", "2001:db8:2::/64", "dev", veth)
        self.ip(
            "p", "-6", "neigh", "add", SINK, "lladdr", SINK_MAC, "dev", veth, "nud", "permanent"
        )
        with self.enter("p"):
            self.tap_fd = tun_open(self.tap, IFF_TAP)
            self.tun_fd = tun_open(self.tun, IFF_TUN)
            self.fds += [self.tap_fd, self.tun_fd]
            self.tx = self.sock(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.rx4 = self.sock(socket.AF_INET6, socket.SOCK_RAW, 4)
            self.feed6 = self.sock(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            # protocol 0: these packet sockets only send, they receive nothing
            self.feed_tap = self.sock(socket.AF_PACKET, socket.SOCK_RAW, 0)
            self.feed_tun = self.sock(socket.AF_PACKET, socket.SOCK_RAW, 0)
        for dev in (self.tap, self.tun):
            self.sysctl("p", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            self.link("p", "set", dev, "up")

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Nothing to wait for: the pumps read and write their fds directly, and the veth's
        peer stays down on purpose (it drops what is sent)."""

    def close(self) -> None:
        for s in self.socks:
            s.close()
        for fd in self.fds:
            os.close(fd)
        self.socks, self.fds = [], []
        super().close()


@pytest.fixture(scope="module")
def lab() -> Iterator[PumpBed]:
    if os.geteuid() != 0:
        pytest.skip("the pump benchmarks need root (a network namespace, TAP/TUN, raw sockets)")
    with PumpBed() as bed:
        names = bed.namespaces
        yield bed
    assert not any(os.path.exists(f"/run/netns/{name}") for name in names)


def run(benchmark: Any, feed: Callable[[], None], pump: Callable[[], Any]) -> Any:
    benchmark.extra_info["per"] = BATCH
    return benchmark.pedantic(pump, setup=feed, rounds=ROUNDS, warmup_rounds=2, iterations=1)


def table(fp: ModuleType, endpoint: str) -> Any:
    t = fp.HoaTable()
    t.bind(HOA, a6(endpoint), MS_MAC, link=0)
    return t


@pytest.mark.parametrize("size", SIZES)
def test_pump_access(benchmark: Any, lab: PumpBed, fp: ModuleType, size: int) -> None:
    dm = fp.Dmpa(table(fp, SINK), a6(DMPA_ADDR), PSEUDO_MAC, GW)
    frame = eth(packet(size, HOA, CN))

    def feed() -> None:
        for _ in range(BATCH):
            lab.feed_tap.sendto(frame, (lab.tap, ETH_P_IP))

    assert run(benchmark, feed, lambda: dm.pump_access(lab.tap_fd, 0, lab.tx.fileno())) == (
        BATCH,
        BATCH,
        [],
    )
    assert dm.counters()["uplink.tx_errors"] == 0


@pytest.mark.parametrize("size", SIZES)
def test_pump_tun(benchmark: Any, lab: PumpBed, fp: ModuleType, size: int) -> None:
    dl = fp.Dlmap(table(fp, SINK), a6(DLMAP_ADDR))
    pkt = packet(size, CN, HOA)

    def feed() -> None:
        for _ in range(BATCH):
            lab.feed_tun.sendto(pkt, (lab.tun, ETH_P_IP))

    assert run(benchmark, feed, lambda: dl.pump_tun(lab.tun_fd, lab.tx.fileno())) == (
        BATCH,
        BATCH,
        [],
    )
    assert dl.counters()["downlink.tx_errors"] == 0


@pytest.mark.parametrize("size", SIZES)
def test_pump_tunnel(benchmark: Any, lab: PumpBed, fp: ModuleType, size: int) -> None:
    dm = fp.Dmpa(table(fp, DLMAP_ADDR), a6(DMPA_ADDR), PSEUDO_MAC, GW, peers=[a6(DLMAP_ADDR)])
    pkt = ipv6(packet(size, CN, HOA), src=a6(DLMAP_ADDR), dst=a6(DMPA_ADDR))

    def feed() -> None:
        for _ in range(BATCH):  # the loopback delivers each one before sendto returns
            lab.feed6.sendto(pkt, (DMPA_ADDR, 0))

    assert run(benchmark, feed, lambda: dm.pump_tunnel(lab.rx4.fileno(), [lab.tap_fd])) == (
        BATCH,
        BATCH,
        [],
    )
    assert dm.counters()["downlink.tx_errors"] == 0


@pytest.mark.parametrize("syscall", ["read_tap", "write_tap", "sendto_raw"])
def test_pump_floor(benchmark: Any, lab: PumpBed, syscall: str) -> None:
    """The kernel's share, without the fastpath: the pumps' per-packet syscalls made one by one
    from Python (64-byte packets; Python adds a little): read() from the TAP, write() of a frame
    to the TAP, sendto() of an encapsulated packet on the IPPROTO_RAW socket (what sendmmsg
    does 64 times in one call)."""
    frame = eth(packet(64, HOA, CN))
    dm = reference.Dmpa(table(reference, SINK), a6(DMPA_ADDR), PSEUDO_MAC, GW)
    out = bytearray(2048)
    encapsulated = bytes(out[: dm.from_access(frame, 0, out)[2]])
    feed: Callable[[], None] | None = None
    if syscall == "read_tap":

        def feed() -> None:
            for _ in range(BATCH):
                lab.feed_tap.sendto(frame, (lab.tap, ETH_P_IP))

        def work() -> int:
            return sum(len(os.read(lab.tap_fd, 65536)) for _ in range(BATCH))

        want = BATCH * len(frame)
    elif syscall == "write_tap":

        def work() -> int:
            return sum(os.write(lab.tap_fd, frame) for _ in range(BATCH))

        want = BATCH * len(frame)
    else:

        def work() -> int:
            return sum(lab.tx.sendto(encapsulated, (SINK, 0)) for _ in range(BATCH))

        want = BATCH * len(encapsulated)
    benchmark.extra_info["per"] = BATCH
    assert benchmark.pedantic(work, setup=feed, rounds=ROUNDS, warmup_rounds=2) == want
