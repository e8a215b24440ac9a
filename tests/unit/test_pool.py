"""The HoA pool: allocation, leases that outlive bindings, reuse, static addresses, DHCP records."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from router.core.pool import HoAPool

A, B, C = (IPv4Address(f"192.0.2.{i}") for i in (2, 3, 4))
STATIC = IPv4Address("192.0.2.50")


def pool(lease_time: float = 10.0) -> HoAPool:
    return HoAPool([(A, C)], {"static@x": STATIC}, lease_time)


def test_allocates_in_order_and_exhausts() -> None:
    p = pool()
    assert [p.allocate(n) for n in ("a", "b", "c", "d")] == [A, B, C, None]
    assert p.free_addresses() == set()


def test_the_same_nai_gets_the_same_address_while_its_lease_lives() -> None:
    p = pool()
    assert p.allocate("a") == A
    p.release("a", now=0.0)
    assert p.allocate("b") == B  # A is still a's
    assert p.allocate("a") == A  # and a gets it back, held again
    assert p.expire(now=100.0) == []  # held: nothing runs out


def test_an_expired_lease_frees_the_address_for_reuse() -> None:
    p = pool()
    for nai in ("a", "b", "c"):
        p.allocate(nai)
    p.release("b", now=0.0)
    assert p.allocate("d") is None
    assert [lease.nai for lease in p.expire(now=10.0)] == ["b"]
    assert p.free_addresses() == {B}
    assert p.allocate("d") == B


def test_static_addresses_are_outside_the_dynamic_accounting() -> None:
    p = pool()
    assert p.allocate("static@x") == STATIC
    assert p.allocated_to("static@x") == STATIC
    assert p.owner(STATIC) == "static@x"
    assert p.dynamic_in_use() == 0 and p.free_addresses() == {A, B, C}


def test_hold_only_the_address_the_nai_is_entitled_to() -> None:
    p = pool()
    p.allocate("a")
    assert p.hold("a", A) and not p.hold("a", B) and not p.hold("b", A)


def test_dhcp_records_count_as_allocations_and_conflicts_are_refused() -> None:
    p = pool()
    assert p.record("a", B, expires=50.0)
    assert p.allocated_to("a") == B and p.free_addresses() == {A, C}
    assert not p.record("b", B, expires=50.0)  # held by a
    assert p.record("a", C, expires=60.0)  # a moved to another address: B is free again
    assert p.owner(B) is None and B in p.free_addresses()
    assert [lease.address for lease in p.expire(now=60.0)] == [C]


def test_network_and_broadcast_addresses_are_not_handed_out() -> None:
    p = HoAPool([IPv4Network("198.51.100.0/30")])
    assert p.size == 2
    assert [p.allocate(n) for n in ("a", "b", "c")] == [
        IPv4Address("198.51.100.1"),
        IPv4Address("198.51.100.2"),
        None,
    ]


def test_restore_and_forget() -> None:
    p = pool()
    p.restore("a", B, expires=5.0)
    p.restore("b", A, expires=None)
    assert p.allocated_to("a") == B and p.owner(A) == "b"
    assert p.allocate("c") == C  # the cursor skips restored addresses
    p.forget("b")
    assert p.owner(A) is None and p.allocate("d") == A
    assert [lease.nai for lease in p.expire(now=5.0)] == ["a"]
