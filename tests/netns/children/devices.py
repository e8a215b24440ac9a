"""The kernel-facing adapters on real devices, run inside a namespace of
``tests/netns/test_devices.py``: ``python -m tests.netns.children.devices CASE ARGS...``.

Each case drives :mod:`router.adapters.devices` or :mod:`router.adapters.sockets` as the
appliance does, reaches a peer namespace (the MS, the CN, the other node) with setns(2) only
to open a socket there, and prints one JSON line with what it saw. Every wait polls until a
deadline (:func:`netlmm_lab.poll.wait_until`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path
from typing import Any

from netlmm_lab.netns import enter, ip
from netlmm_lab.poll import wait_until
from router.adapters.devices import (
    ROUTE_PROTO,
    Devices,
    bridge_name,
    enable_ipv4_forwarding,
    sweep,
    tap_name,
    tun_name,
    wait_address,
)
from router.adapters.sockets import (
    IPV6_CHECKSUM,
    MHEndpoint,
    open_mh_socket,
    open_raw_tx,
    open_tunnel_rx,
    send_ipv6,
)
from router.wire.mh import BindingError, decode_message
from tests.fastpath.packets import ipv4, udp
from tests.fastpath.tuntap import ETH_P_ALL

DEADLINE = 10.0


def read_fd(fd: int) -> bytes:
    try:
        return os.read(fd, 65535)
    except BlockingIOError:
        return b""


def recv(sock: socket.socket) -> tuple[bytes, Any] | None:
    try:
        return sock.recvfrom(65535)
    except BlockingIOError:
        return None


def bridge(ms_ns: str) -> dict[str, Any]:
    """DMPA: a TAP bridged with the access interface ``acc0``; frames both ways with the MS."""
    name = "t1"
    tap, br = tap_name(name, 0), bridge_name(name, 0)
    sweep(name)
    dev = Devices(name)
    result: dict[str, Any] = {}
    try:
        fd = dev.create_tap(tap)
        dev.bridge_access("acc0", tap, br)
        for ifname in (tap, br, "acc0"):
            dev.wait_link_up(ifname, 10.0)
        result["ipv6_off"] = [
            Path(f"/proc/sys/net/ipv6/conf/{n}/disable_ipv6").read_text().strip() for n in (tap, br)
        ]
        with enter(ms_ns):
            ms = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            ms.bind(("ms0", 0))
        ms.setblocking(False)
        ms_mac, pseudo = bytes.fromhex("02aabbccdd01"), bytes.fromhex("020000000001")
        up = b"\xff" * 6 + ms_mac + b"\x88\xb5" + b"uplink".ljust(46, b".")
        down = ms_mac + pseudo + b"\x88\xb5" + b"downlink".ljust(46, b".")

        def tap_got_uplink() -> bool:
            ms.send(up)
            return any(read_fd(fd) == up for _ in range(16))

        wait_until(tap_got_uplink, DEADLINE, "the MS's frame on the TAP")

        def ms_got_downlink() -> bool:
            os.write(fd, down)
            return any((got := recv(ms)) is not None and got[0] == down for _ in range(16))

        wait_until(ms_got_downlink, DEADLINE, "the TAP's frame at the MS")
        result["frames"] = "both ways"
    finally:
        dev.teardown()
    return result


def bridge_stp() -> dict[str, Any]:
    """The access bridge forwards at once: no STP, no forward delay."""
    dev = Devices("t5")
    dev.create_tap(tap_name("t5", 0))
    dev.bridge_access("acc0", tap_name("t5", 0), bridge_name("t5", 0))
    data = ip("-d", "-j", "link", "show", bridge_name("t5", 0))
    info = json.loads(data)[0]["linkinfo"]["info_data"]
    dev.teardown()
    return {"stp": info["stp_state"], "delay": info["forward_delay"]}


def tun(cn_ns: str) -> dict[str, Any]:
    """DLMAP: TUN, gateway, HoA route and forwarding between the TUN and the CN's uplink."""
    dev = Devices("t2")
    name = tun_name("t2")
    result: dict[str, Any] = {}
    try:
        fd = dev.create_tun(name, mtu=1460)
        dev.route_hoa_network(name, IPv4Address("192.0.2.1"), IPv4Network("192.0.2.0/24"))
        enable_ipv4_forwarding()
        dev.wait_link_up(name, 10.0)
        result["ip_forward"] = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        result["routes"] = json.loads(ip("-j", "route", "show", "proto", str(ROUTE_PROTO)))

        def in_tun(at: slice, address: str, payload: bytes) -> Callable[[bytes], bool]:
            """A packet read from the TUN with ``address`` at ``at`` and ending in ``payload``."""
            return lambda p: p[at] == IPv4Address(address).packed and p.endswith(payload)

        # the kernel routes a packet for an address of the HoA network into the TUN
        local = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        is_local = in_tun(slice(16, 20), "192.0.2.10", b"to-the-ms")

        def tun_got_local() -> bool:
            local.sendto(b"to-the-ms", ("192.0.2.10", 9))
            return any(is_local(read_fd(fd)) for _ in range(16))

        wait_until(tun_got_local, DEADLINE, "a locally sent packet in the TUN")

        # an MS's packet written into the TUN is forwarded to the CN on the uplink...
        with enter(cn_ns):
            cn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            cn.bind(("198.51.100.7", 9999))
        cn.setblocking(False)
        hoa, cn_address = int(IPv4Address("192.0.2.10")), int(IPv4Address("198.51.100.7"))
        uplink = ipv4(hoa, cn_address, payload=udp(4000, 9999, b"from-the-ms"))

        def cn_got() -> bool:
            os.write(fd, uplink)
            got = recv(cn)
            return got is not None and got[0] == b"from-the-ms" and got[1][0] == "192.0.2.10"

        wait_until(cn_got, DEADLINE, "the MS's packet at the CN")

        # ... and the CN's answer is forwarded into the TUN
        is_forwarded = in_tun(slice(12, 16), "198.51.100.7", b"from-the-cn")

        def tun_got_forwarded() -> bool:
            cn.sendto(b"from-the-cn", ("192.0.2.10", 4000))
            return any(is_forwarded(read_fd(fd)) for _ in range(16))

        wait_until(tun_got_forwarded, DEADLINE, "the CN's packet in the TUN")
        result["forwarded"] = "both ways"
    finally:
        dev.teardown()
    return result


def crash() -> None:
    """Make a DMPA's and a DLMAP's devices and routes, then die without a teardown."""
    dev = Devices("t3")
    dev.create_tap(tap_name("t3", 0))
    dev.bridge_access("acc0", tap_name("t3", 0), bridge_name("t3", 0))
    dev.create_tun(tun_name("t3"))
    dev.route_hoa_network(tun_name("t3"), IPv4Address("192.0.2.1"), IPv4Network("192.0.2.0/24"))
    print(json.dumps("created"), flush=True)
    os._exit(0)  # a crash: no teardown


def sweep_t3() -> dict[str, Any]:
    swept = sweep("t3")
    return {"links": sorted(swept.links), "routes": sorted(swept.routes)}


def mh(b_ns: str, a_addr: IPv6Address, b_addr: IPv6Address, io: str) -> dict[str, Any]:
    """Two MH endpoints on the loop, one per namespace, doing their system calls with the
    ``io`` twin of the fastpath: a Binding Error each way, then 150 sent in one flush (three
    sendmmsg batches with the compiled twin) and read back in order, with among them a send
    that fails (counted, the others in its flush still go) and a message b's handler raises on
    (counted, handed to ``on_error``, the rest still read); then a datagram longer than any MH
    (counted, dropped)."""
    wait_address(a_addr, 10.0)
    sa = open_mh_socket(a_addr)
    with enter(b_ns):
        wait_address(b_addr, 10.0)
        sb = open_mh_socket(b_addr)
    result: dict[str, Any] = {"checksum_offset": sa.getsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM)}
    loop = asyncio.new_event_loop()
    got_a: list[tuple[bytes, IPv6Address]] = []
    got_b: list[tuple[bytes, IPv6Address]] = []
    poison = BindingError(255, a_addr).encode()  # b's handler raises on it (a bug of ours)
    errors: list[str] = []

    def on_b(data: bytes, src: IPv6Address) -> None:
        message = decode_message(data)  # the kernel filled the checksum: not ``poison``'s
        if isinstance(message, BindingError) and message.status == 255:
            raise RuntimeError("a handler's bug")
        got_b.append((data, src))

    a = MHEndpoint(sa, lambda data, src: got_a.append((data, src)), io=io)
    a_peer = IPv6Address(str(a_addr))  # b's configured peer: handed over as this very object
    b = MHEndpoint(
        sb, on_b, io=io, on_error=lambda: errors.append(repr(sys.exc_info()[1])), peers=[a_peer]
    )
    a.start(loop)
    b.start(loop)
    request = BindingError(2, a_addr).encode()  # no checksum: the kernel fills it

    def turn() -> None:
        """Let the loop read for a moment (its readers fill got_a and got_b)."""
        loop.run_until_complete(asyncio.sleep(0.02))

    def b_received() -> bool:
        a.send(request, b_addr)  # the veth needs a moment: send until it arrives
        turn()
        return bool(got_b)

    try:
        wait_until(b_received, DEADLINE, "the Binding Error at b")
        data, src = got_b[0]
        message = decode_message(data, src=src, dst=b_addr)  # checksum verified too
        assert isinstance(message, BindingError)
        b.send(BindingError(1).encode(), src)

        def a_received() -> bool:
            turn()
            return bool(got_a)

        wait_until(a_received, DEADLINE, "the Binding Error back at a")
        result["b_got"] = [type(message).__name__, message.status, str(src)]
        answer = decode_message(got_a[0][0])
        assert isinstance(answer, BindingError)
        result["a_got"] = [answer.status, str(got_a[0][1])]
        # many in one flush, in order; a failed send among them is counted, not raised
        got_b.clear()
        rx_before = b.counters["rx"]
        for status in range(150):
            a.send(BindingError(status, a_addr).encode(), b_addr)
            if status == 70:
                a.send(request, IPv6Address("2001:db8:ffff::1"))
            if status == 100:
                a.send(poison, b_addr)
        a.flush()
        # a datagram longer than any MH (its header says 2048 bytes, the most there can be)
        sa.sendto(bytes([59, 255, 7, 0]) + bytes(2096), (str(b_addr), 0))

        def all_received() -> bool:
            turn()
            return len(got_b) >= 150 and b.counters["rx.too_long"] >= 1

        wait_until(all_received, DEADLINE, "150 Binding Errors and the long datagram at b")
        statuses = []
        for data, src in got_b:
            message = decode_message(data)
            assert isinstance(message, BindingError) and src == a_addr, (message, src)
            statuses.append(message.status)
        result["batch_statuses"] = statuses
        result["b_sources_are_the_peer_object"] = all(src is a_peer for _, src in got_b)
        result["counters"] = dict(a.counters)
        result["b_counters"] = dict(b.counters)
        result["b_batch_rx"] = b.counters["rx"] - rx_before
        result["b_errors"] = errors
    finally:
        a.close()
        b.close()
        loop.close()
    return result


def tunnel(b_ns: str, a_addr: IPv6Address, b_addr: IPv6Address) -> dict[str, Any]:
    """An IPv4-in-IPv6 packet from a raw sender in one namespace to the tunnel socket in
    the other."""
    wait_address(a_addr, 10.0)
    tx = open_raw_tx()
    with enter(b_ns):
        wait_address(b_addr, 10.0)
        rx = open_tunnel_rx(b_addr, rcvbuf=1 << 20)
    hoa, cn = int(IPv4Address("192.0.2.10")), int(IPv4Address("198.51.100.7"))
    inner = ipv4(hoa, cn, payload=udp(4000, 53, b"in-the-tunnel"))

    def arrived() -> tuple[bytes, Any] | None:
        send_ipv6(tx, a_addr, b_addr, 4, inner)
        got = recv(rx)
        return got if got is not None and got[0] == inner else None

    data, addr = wait_until(arrived, DEADLINE, "the tunnel packet")
    return {"inner": data.hex(), "outer_src": addr[0]}


def main(argv: list[str]) -> None:
    case, args = argv[0], argv[1:]
    result: object
    if case == "bridge":
        result = bridge(args[0])
    elif case == "bridge-stp":
        result = bridge_stp()
    elif case == "tun":
        result = tun(args[0])
    elif case == "crash":
        crash()
        return
    elif case == "sweep":
        result = sweep_t3()
    elif case == "mh":
        result = mh(args[0], IPv6Address(args[1]), IPv6Address(args[2]), args[3])
    elif case == "tunnel":
        result = tunnel(args[0], IPv6Address(args[1]), IPv6Address(args[2]))
    else:
        raise SystemExit(f"unknown case {case!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
