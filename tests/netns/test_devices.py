"""The kernel-facing adapters on real devices: access bridge + TAP, TUN + HoA route +
forwarding, the sweep of a crashed run, the MH socket and the tunnel sockets.

Each test makes its namespaces (``tests/netns/netns.py``, always deleted) and runs the code
under test in a child process inside one of them (``run_python``), as the appliance runs; the
child reaches a peer namespace (the MS, the CN, the other node) with setns(2) on one thread,
only to open a socket there. Only documentation prefixes; nothing in the root namespace.
Every wait polls until a deadline.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from router.adapters.devices import sweep
from tests.netns.netns import namespace, run_python

pytestmark = pytest.mark.root

REPO = str(Path(__file__).resolve().parents[2])

# Shared by the children: imports, and a poll helper bounded in time and count.
PRELUDE = f"""
import json, os, select, socket, sys, time
sys.path.insert(0, {REPO!r})
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from tests.fastpath.netlab import netns, ETH_P_ALL

def poll(step, what, deadline=10.0, interval=0.05):
    end = time.monotonic() + deadline
    for _ in range(int(deadline / interval) + 1):
        got = step()
        if got:
            return got
        if time.monotonic() > end:
            break
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {{what}}")

def read_fd(fd):
    try:
        return os.read(fd, 65535)
    except BlockingIOError:
        return b""

def recv(sock):
    try:
        return sock.recvfrom(65535)
    except BlockingIOError:
        return None
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def ip_json(ns: str, *args: str) -> Any:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    return json.loads(out) if out.strip() else []


def link_names(ns: str) -> set[str]:
    return {link["ifname"] for link in ip_json(ns, "link", "show")}


def child(ns: str, body: str, *args: str) -> Any:
    return json.loads(run_python(ns, PRELUDE + body, *args).strip().splitlines()[-1])


# --- DMPA: TAP bridged with an access interface --------------------------------------------

BRIDGE_CHILD = r"""
from router.adapters.devices import Devices, bridge_name, sweep, tap_name
ms_ns = sys.argv[1]
name = "t1"
tap, br = tap_name(name, 0), bridge_name(name, 0)
sweep(name)
dev = Devices(name)
result = {}
try:
    fd = dev.create_tap(tap)
    dev.bridge_access("acc0", tap, br)
    for ifname in (tap, br, "acc0"):
        dev.wait_link_up(ifname, 10.0)
    result["ipv6_off"] = [
        open(f"/proc/sys/net/ipv6/conf/{n}/disable_ipv6").read().strip() for n in (tap, br)
    ]
    with netns(ms_ns):
        ms = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        ms.bind(("ms0", 0))
    ms.setblocking(False)
    ms_mac, pseudo = bytes.fromhex("02aabbccdd01"), bytes.fromhex("020000000001")
    up = b"\xff" * 6 + ms_mac + b"\x88\xb5" + b"uplink".ljust(46, b".")
    down = ms_mac + pseudo + b"\x88\xb5" + b"downlink".ljust(46, b".")

    def tap_got_uplink():
        ms.send(up)
        return any(read_fd(fd) == up for _ in range(16))

    poll(tap_got_uplink, "the MS's frame on the TAP")

    def ms_got_downlink():
        os.write(fd, down)
        return any((got := recv(ms)) and got[0] == down for _ in range(16))

    poll(ms_got_downlink, "the TAP's frame at the MS")
    result["frames"] = "both ways"
finally:
    dev.teardown()
print(json.dumps(result))
"""


def test_tap_bridged_with_access_link(root: None) -> None:
    with namespace("d") as dmpa, namespace("m") as ms:
        ip("-n", dmpa, "link", "add", "acc0", "type", "veth", "peer", "name", "ms0", "netns", ms)
        ip("netns", "exec", ms, "sysctl", "-qw", "net.ipv6.conf.ms0.disable_ipv6=1")
        ip("-n", ms, "link", "set", "ms0", "up")
        result = child(dmpa, BRIDGE_CHILD, ms)
        assert result == {"ipv6_off": ["1", "1"], "frames": "both ways"}
        # teardown removed the TAP and the bridge and released the access interface
        assert link_names(dmpa) == {"lo", "acc0"}
        (acc,) = ip_json(dmpa, "link", "show", "acc0")
        assert "master" not in acc


def test_bridge_forwards_at_once(root: None) -> None:
    code = r"""
from router.adapters.devices import Devices, bridge_name, tap_name
dev = Devices("t5")
dev.create_tap(tap_name("t5", 0))
dev.bridge_access("acc0", tap_name("t5", 0), bridge_name("t5", 0))
data = os.popen("ip -d -j link show " + bridge_name("t5", 0)).read()
info = json.loads(data)[0]["linkinfo"]["info_data"]
dev.teardown()
print(json.dumps({"stp": info["stp_state"], "delay": info["forward_delay"]}))
"""
    with namespace("d") as dmpa:
        ip("-n", dmpa, "link", "add", "acc0", "type", "veth", "peer", "name", "acc0p")
        assert child(dmpa, code) == {"stp": 0, "delay": 0}


# --- DLMAP: TUN, gateway, HoA route, forwarding ---------------------------------------------

TUN_CHILD = r"""
from router.adapters.devices import Devices, enable_ipv4_forwarding, tun_name
from router.adapters.devices import ROUTE_PROTO
cn_ns = sys.argv[1]
tests_pkts = __import__("tests.fastpath.packets", fromlist=["ipv4", "udp"])
a4 = lambda t: int(IPv4Address(t))
dev = Devices("t2")
tun = tun_name("t2")
result = {}
try:
    fd = dev.create_tun(tun, mtu=1460)
    dev.route_hoa_network(tun, IPv4Address("192.0.2.1"), IPv4Network("192.0.2.0/24"))
    enable_ipv4_forwarding()
    dev.wait_link_up(tun, 10.0)
    result["ip_forward"] = open("/proc/sys/net/ipv4/ip_forward").read().strip()
    result["routes"] = json.loads(os.popen(f"ip -j route show proto {ROUTE_PROTO}").read())

    # the kernel routes a packet for an address of the HoA network into the TUN
    local = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    def tun_got_local():
        local.sendto(b"to-the-ms", ("192.0.2.10", 9))
        return any(p[16:20] == IPv4Address("192.0.2.10").packed and p.endswith(b"to-the-ms")
                   for p in (read_fd(fd) for _ in range(16)))
    poll(tun_got_local, "a locally sent packet in the TUN")

    # an MS's packet written into the TUN is forwarded to the CN on the uplink...
    with netns(cn_ns):
        cn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cn.bind(("198.51.100.7", 9999))
    cn.setblocking(False)
    uplink = tests_pkts.ipv4(a4("192.0.2.10"), a4("198.51.100.7"),
                             payload=tests_pkts.udp(4000, 9999, b"from-the-ms"))
    def cn_got():
        os.write(fd, uplink)
        got = recv(cn)
        return got and got[0] == b"from-the-ms" and got[1][0] == "192.0.2.10"
    poll(cn_got, "the MS's packet at the CN")

    # ... and the CN's answer is forwarded into the TUN
    def tun_got_forwarded():
        cn.sendto(b"from-the-cn", ("192.0.2.10", 4000))
        return any(p[12:16] == IPv4Address("198.51.100.7").packed and p.endswith(b"from-the-cn")
                   for p in (read_fd(fd) for _ in range(16)))
    poll(tun_got_forwarded, "the CN's packet in the TUN")
    result["forwarded"] = "both ways"
finally:
    dev.teardown()
print(json.dumps(result))
"""


def test_tun_gateway_route_and_forwarding(root: None) -> None:
    with namespace("l") as dlmap, namespace("c") as cn:
        ip("-n", dlmap, "link", "add", "up0", "type", "veth", "peer", "name", "cn0", "netns", cn)
        ip("-n", dlmap, "addr", "add", "198.51.100.1/24", "dev", "up0")
        ip("-n", dlmap, "link", "set", "up0", "up")
        ip("-n", cn, "addr", "add", "198.51.100.7/24", "dev", "cn0")
        ip("-n", cn, "link", "set", "cn0", "up")
        ip("-n", cn, "route", "add", "192.0.2.0/24", "via", "198.51.100.1")
        result = child(dlmap, TUN_CHILD, cn)
        assert result["ip_forward"] == "1"
        assert [(r["dst"], r["dev"]) for r in result["routes"]] == [("192.0.2.0/24", "nlt2tun")]
        assert result["forwarded"] == "both ways"
        assert "nlt2tun" not in link_names(dlmap)
        assert ip_json(dlmap, "route", "show", "proto", "78") == []


# --- sweep: a crashed run's leftovers ----------------------------------------------------------

CRASH_CHILD = r"""
from router.adapters.devices import Devices, bridge_name, tap_name, tun_name
dev = Devices("t3")
dev.create_tap(tap_name("t3", 0))
dev.bridge_access("acc0", tap_name("t3", 0), bridge_name("t3", 0))
dev.create_tun(tun_name("t3"))
dev.route_hoa_network(tun_name("t3"), IPv4Address("192.0.2.1"), IPv4Network("192.0.2.0/24"))
print(json.dumps("created"), flush=True)
os._exit(0)  # a crash: no teardown
"""

SWEEP_CHILD = r"""
from router.adapters.devices import sweep
swept = sweep("t3")
print(json.dumps({"links": sorted(swept.links), "routes": sorted(swept.routes)}))
"""


def test_sweep_removes_a_crashed_runs_leftovers(root: None) -> None:
    with namespace("s") as ns:
        ip("-n", ns, "link", "add", "acc0", "type", "veth", "peer", "name", "acc0p")
        ip("-n", ns, "link", "set", "acc0p", "up")
        ip("-n", ns, "link", "set", "acc0", "up")
        assert child(ns, CRASH_CHILD) == "created"
        # what the kernel keeps of it: the bridge (the TAP and TUN died with their fds)
        assert "nlt3br0" in link_names(ns)
        # more leftovers, and things that are not ours and must stay
        for ifname in ("nlt3br1", "nlt3x", "nlt3at0"):  # ours / not a suffix / node "t3a"
            ip("-n", ns, "link", "add", ifname, "type", "bridge")  # no dummy module here
        ip("-n", ns, "addr", "add", "2001:db8:7::1/64", "dev", "acc0", "nodad")
        ip("-n", ns, "route", "add", "203.0.113.0/25", "dev", "acc0", "proto", "78")
        ip("-n", ns, "route", "add", "203.0.113.0/26", "dev", "acc0", "proto", "78", "table", "7")
        ip("-n", ns, "-6", "route", "add", "2001:db8:77::/64", "dev", "acc0", "proto", "78")
        ip("-n", ns, "route", "add", "203.0.113.128/25", "dev", "acc0", "proto", "static")
        result = child(ns, SWEEP_CHILD)
        assert result["links"] == ["nlt3br0", "nlt3br1"]
        assert result["routes"] == [
            "2001:db8:77::/64 table 254",
            "203.0.113.0/25 table 254",
            "203.0.113.0/26 table 7",
        ]
        assert link_names(ns) == {"lo", "acc0", "acc0p", "nlt3x", "nlt3at0"}
        (acc,) = ip_json(ns, "link", "show", "acc0")
        assert "master" not in acc
        assert ip_json(ns, "route", "show", "table", "all", "proto", "78") == []
        assert ip_json(ns, "-6", "route", "show", "table", "all", "proto", "78") == []
        assert [r["dst"] for r in ip_json(ns, "route", "show", "proto", "static")] == [
            "203.0.113.128/25"
        ]


# --- sockets: MH signaling and the tunnel, across a veth between two namespaces -----------

A_ADDR, B_ADDR = "2001:db8:1::a", "2001:db8:1::b"


@pytest.fixture
def pair(root: None) -> Any:
    """Two namespaces joined by a veth, ``A_ADDR`` in the first and ``B_ADDR`` in the second."""
    with namespace("a") as a, namespace("b") as b:
        ip("-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b)
        for ns, dev, addr in ((a, "va", A_ADDR), (b, "vb", B_ADDR)):
            ip("-n", ns, "addr", "add", f"{addr}/64", "dev", dev)  # with DAD: wait_address
            ip("-n", ns, "link", "set", dev, "up")
        yield a, b


MH_CHILD = r"""
import asyncio
from router.adapters.devices import wait_address
from router.adapters.sockets import IPV6_CHECKSUM, MHEndpoint, open_mh_socket
from router.wire.mh import BindingError, decode_message
b_ns, a_addr, b_addr = sys.argv[1], IPv6Address(sys.argv[2]), IPv6Address(sys.argv[3])
wait_address(a_addr, 10.0)
sa = open_mh_socket(a_addr)
with netns(b_ns):
    wait_address(b_addr, 10.0)
    sb = open_mh_socket(b_addr)
result = {"checksum_offset": sa.getsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM)}

async def main():
    got_a, got_b = [], []
    a = MHEndpoint(sa, lambda data, src: got_a.append((data, src)))
    b = MHEndpoint(sb, lambda data, src: got_b.append((data, src)))
    a.start()
    b.start()
    request = BindingError(2, a_addr).encode()  # no checksum: the kernel fills it
    for _ in range(200):  # poll until a deadline (10 s): the veth needs a moment
        if got_b:
            break
        a.send(request, b_addr)
        await asyncio.sleep(0.05)
    data, src = got_b[0]
    message = decode_message(data, src=src, dst=b_addr)  # checksum verified too
    b.send(BindingError(1).encode(), src)
    for _ in range(200):
        if got_a:
            break
        await asyncio.sleep(0.05)
    result["b_got"] = [type(message).__name__, message.status, str(src)]
    result["a_got"] = [decode_message(got_a[0][0]).status, str(got_a[0][1])]
    # a send that fails is counted, not raised
    result["unreachable"] = a.send(request, IPv6Address("2001:db8:ffff::1"))
    result["counters"] = dict(a.counters)
    a.close()
    b.close()

asyncio.run(main())
print(json.dumps(result))
"""


def test_mh_socket_between_two_addresses(pair: tuple[str, str]) -> None:
    a, b = pair
    result = child(a, MH_CHILD, b, A_ADDR, B_ADDR)
    assert result["checksum_offset"] == 4
    assert result["b_got"] == ["BindingError", 2, A_ADDR]
    assert result["a_got"] == [1, B_ADDR]
    assert result["unreachable"] is False
    assert result["counters"]["tx.error.ENETUNREACH"] == 1
    assert result["counters"]["rx"] == 1


TUNNEL_CHILD = r"""
from router.adapters.devices import wait_address
from router.adapters.sockets import open_raw_tx, open_tunnel_rx, send_ipv6
from tests.fastpath.packets import ipv4, udp
b_ns, a_addr, b_addr = sys.argv[1], IPv6Address(sys.argv[2]), IPv6Address(sys.argv[3])
wait_address(a_addr, 10.0)
tx = open_raw_tx()
with netns(b_ns):
    wait_address(b_addr, 10.0)
    rx = open_tunnel_rx(b_addr, rcvbuf=1 << 20)
inner = ipv4(int(IPv4Address("192.0.2.10")), int(IPv4Address("198.51.100.7")),
             payload=udp(4000, 53, b"in-the-tunnel"))

def arrived():
    send_ipv6(tx, a_addr, b_addr, 4, inner)
    got = recv(rx)
    return got if got and got[0] == inner else None

data, addr = poll(arrived, "the tunnel packet")
print(json.dumps({"inner": data.hex(), "outer_src": addr[0]}))
"""


def test_raw_tx_and_tunnel_rx_across_a_veth(pair: tuple[str, str]) -> None:
    a, b = pair
    result = child(a, TUNNEL_CHILD, b, A_ADDR, B_ADDR)
    assert result["outer_src"] == A_ADDR
    assert bytes.fromhex(result["inner"]).endswith(b"in-the-tunnel")


def test_netlink_calls_refuse_the_running_loop() -> None:
    """pyroute2's synchronous IPRoute cannot run on a thread whose loop runs: say so at once."""

    async def main() -> None:
        with pytest.raises(RuntimeError, match="executor"):
            sweep("t4")

    asyncio.run(main())
