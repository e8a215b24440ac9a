"""The user-space tier takes the cores' BindPrefix / UnbindPrefix: a /64 keyed by its top 64
bits in the fastpath's table (both twins)."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest

from router.adapters.datapath import UserSpacePath
from router.core.actions import BindPrefix
from router.wire.ethernet import MacAddress

LOCAL = IPv6Address("2001:db8:2::1")
DMPA = IPv6Address("2001:db8:1::1")
PREFIX = IPv6Network("2001:db8:ff00:17::/64")


@pytest.mark.parametrize("which", ["reference", "compiled"])
def test_bind_and_unbind_a_prefix(which: str) -> None:
    path = UserSpacePath(which, "Dlmap", LOCAL, tunnel_mtu=1460, peers=[DMPA], offload=False)
    mac = MacAddress.parse("02:00:00:00:00:01")
    path.bind_prefix(BindPrefix(PREFIX, DMPA, mac, 3))
    entry = path.table.lookup_prefix(0x20010DB8FF000017)
    assert entry.endpoint == DMPA.packed and entry.mac == mac.packed and entry.link == 3
    path.unbind_prefix(PREFIX)
    assert path.table.lookup_prefix(0x20010DB8FF000017) is None
