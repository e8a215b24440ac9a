"""The kernel-facing adapters on real devices: access bridge + TAP, TUN + HoA route +
forwarding, the sweep of a crashed run, the MH socket and the tunnel sockets.

Each test makes its namespaces (:func:`netlmm_lab.netns.namespace`, always deleted) and runs the
code under test in a child process inside one of them (``tests/netns/children/devices.py``), as
the appliance runs; the child reaches a peer namespace (the MS, the CN, the other node) with
setns(2) on one thread, only to open a socket there. Only documentation prefixes; nothing in the
root namespace. Every wait polls until a deadline.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from netlmm_lab.netns import ip, namespace
from router.adapters.devices import sweep
from tests.netns.children import run_child

pytestmark = pytest.mark.root


def ip_json(ns: str, *args: str) -> Any:
    out = ip("-n", ns, "-j", *args)
    return json.loads(out) if out.strip() else []


def link_names(ns: str) -> set[str]:
    return {link["ifname"] for link in ip_json(ns, "link", "show")}


def child(ns: str, case: str, *args: str) -> Any:
    return json.loads(run_child(ns, "devices", case, *args).strip().splitlines()[-1])


# --- DMPA: TAP bridged with an access interface --------------------------------------------


def test_tap_bridged_with_access_link(root: None) -> None:
    with namespace("d") as dmpa, namespace("m") as ms:
        ip("-n", dmpa, "link", "add", "acc0", "type", "veth", "peer", "name", "ms0", "netns", ms)
        ip("netns", "exec", ms, "sysctl", "-qw", "net.ipv6.conf.ms0.disable_ipv6=1")
        ip("-n", ms, "link", "set", "ms0", "up")
        result = child(dmpa, "bridge", ms)
        assert result == {"ipv6_off": ["1", "1"], "frames": "both ways"}
        # teardown removed the TAP and the bridge and released the access interface
        assert link_names(dmpa) == {"lo", "acc0"}
        (acc,) = ip_json(dmpa, "link", "show", "acc0")
        assert "master" not in acc


def test_bridge_forwards_at_once(root: None) -> None:
    with namespace("d") as dmpa:
        ip("-n", dmpa, "link", "add", "acc0", "type", "veth", "peer", "name", "acc0p")
        assert child(dmpa, "bridge-stp") == {"stp": 0, "delay": 0}


# --- DLMAP: TUN, gateway, HoA route, forwarding ---------------------------------------------


def test_tun_gateway_route_and_forwarding(root: None) -> None:
    with namespace("l") as dlmap, namespace("c") as cn:
        ip("-n", dlmap, "link", "add", "up0", "type", "veth", "peer", "name", "cn0", "netns", cn)
        ip("-n", dlmap, "addr", "add", "198.51.100.1/24", "dev", "up0")
        ip("-n", dlmap, "link", "set", "up0", "up")
        ip("-n", cn, "addr", "add", "198.51.100.7/24", "dev", "cn0")
        ip("-n", cn, "link", "set", "cn0", "up")
        ip("-n", cn, "route", "add", "192.0.2.0/24", "via", "198.51.100.1")
        result = child(dlmap, "tun", cn)
        assert result["ip_forward"] == "1"
        assert [(r["dst"], r["dev"]) for r in result["routes"]] == [("192.0.2.0/24", "nlt2tun")]
        assert result["forwarded"] == "both ways"
        assert "nlt2tun" not in link_names(dlmap)
        assert ip_json(dlmap, "route", "show", "proto", "78") == []


# --- sweep: a crashed run's leftovers ----------------------------------------------------------


def test_sweep_removes_a_crashed_runs_leftovers(root: None) -> None:
    with namespace("s") as ns:
        ip("-n", ns, "link", "add", "acc0", "type", "veth", "peer", "name", "acc0p")
        ip("-n", ns, "link", "set", "acc0p", "up")
        ip("-n", ns, "link", "set", "acc0", "up")
        assert child(ns, "crash") == "created"
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
        result = child(ns, "sweep")
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


@pytest.mark.parametrize("io", ["compiled", "reference"])
def test_mh_socket_between_two_addresses(pair: tuple[str, str], io: str) -> None:
    a, b = pair
    result = child(a, "mh", b, A_ADDR, B_ADDR, io)
    assert result["checksum_offset"] == 4
    assert result["b_got"] == ["BindingError", 2, A_ADDR]
    assert result["a_got"] == [1, B_ADDR]
    assert result["batch_statuses"] == list(range(150))  # all of them, in order
    assert result["b_sources_are_the_peer_object"]  # lookups by identity at the node
    assert result["counters"]["tx.error"] == result["counters"]["tx.error.ENETUNREACH"] == 1
    assert result["counters"]["rx"] == 1
    assert result["b_counters"]["rx.too_long"] == 1
    assert result["b_batch_rx"] == 151  # and the one the handler raised on:
    assert result["b_counters"]["rx.handler_error"] == 1
    assert result["b_errors"] == ['RuntimeError("a handler\'s bug")']


def test_raw_tx_and_tunnel_rx_across_a_veth(pair: tuple[str, str]) -> None:
    a, b = pair
    result = child(a, "tunnel", b, A_ADDR, B_ADDR)
    assert result["outer_src"] == A_ADDR
    assert bytes.fromhex(result["inner"]).endswith(b"in-the-tunnel")


def test_netlink_calls_refuse_the_running_loop() -> None:
    """pyroute2's synchronous IPRoute cannot run on a thread whose loop runs: say so at once."""

    async def main() -> None:
        with pytest.raises(RuntimeError, match="executor"):
            sweep("t4")

    asyncio.run(main())
