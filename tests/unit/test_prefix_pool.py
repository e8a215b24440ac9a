"""The IPv6 home network prefix pool (RFC 5213 5.2): one /64 per NAI."""

from __future__ import annotations

from ipaddress import IPv6Network

import pytest

from router.core.prefix_pool import PrefixPool, wants_allocation

POOL = IPv6Network("2001:db8:ff00::/62")


def test_allocation_is_per_nai_and_sticky_until_released() -> None:
    pool = PrefixPool(POOL)
    a = pool.allocate("a")
    assert a == IPv6Network("2001:db8:ff00::/64")
    assert pool.allocate("a") == a and pool.hold("a", a) and not pool.hold("b", a)
    assert pool.owner(a) == "a"
    pool.release("a")
    assert pool.owner(a) is None and pool.prefix_of("a") is None


def test_exhaustion_then_a_released_prefix_is_reused() -> None:
    pool = PrefixPool(POOL)
    got = [pool.allocate(str(i)) for i in range(4)]
    assert len(set(got)) == 4 and all(p is not None and p.subnet_of(POOL) for p in got)
    assert pool.allocate("late") is None
    pool.release("2")
    assert pool.allocate("late") == got[2]


def test_restore_takes_the_prefix_and_the_cursor_skips_it() -> None:
    pool = PrefixPool(POOL)
    third = IPv6Network("2001:db8:ff00:2::/64")
    assert pool.restore("x", third)
    assert not pool.restore("y", third)  # another NAI's
    assert not pool.restore("y", IPv6Network("2001:db8:aa::/64"))  # not in the pool
    assert not pool.restore("y", IPv6Network("2001:db8:ff00::/63"))  # not a /64
    got = {pool.allocate(n) for n in "abc"}
    assert third not in got and None not in got
    assert pool.allocate("d") is None


def test_a_pool_shorter_than_its_prefixes_is_refused() -> None:
    with pytest.raises(ValueError):
        PrefixPool(IPv6Network("2001:db8::1/128"))


def test_all_zero_asks_for_allocation() -> None:
    assert wants_allocation(IPv6Network("::/0"))
    assert not wants_allocation(IPv6Network("2001:db8::/64"))
