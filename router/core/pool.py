"""The DLMAP's IPv4 home-address pool: static addresses per NAI and dynamic ranges.

Rules (seed section 6): an NAI with a static address always gets that one; any
other NAI gets an address from the dynamic ranges and keeps it while its lease lives, so a
re-registration, a handover or a restart gives the same address back. A lease is *held* (no
expiry) while a binding uses it, and runs for ``lease_time`` once the binding is gone. Addresses
handed out by a DHCP server the DLMAP relays to are recorded with :meth:`HoAPool.record`, so the
seed's "must be the address allocated to that NAI" check covers them too.

Memory is proportional to the addresses in use, not to the range size: never-used addresses are
taken from a cursor, released ones from a free list.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from router.core.defaults import LEASE_TIME
from router.core.timers import TimerHeap


@dataclass(slots=True)
class Lease:
    nai: str
    address: IPv4Address
    #: Monotonic time the lease ends; None while a binding holds it (or for a static address).
    expires: float | None
    static: bool = False


class HoAPool:
    def __init__(
        self,
        ranges: Iterable[IPv4Network | tuple[IPv4Address, IPv4Address]],
        static: Mapping[str, IPv4Address] | None = None,
        lease_time: float = LEASE_TIME,
    ) -> None:
        self._ranges: list[tuple[int, int]] = []
        for item in ranges:
            if isinstance(item, IPv4Network):
                # Network and broadcast addresses are not handed out (but /31 and /32 are whole).
                edge = 1 if item.prefixlen < 31 else 0
                first = int(item.network_address) + edge
                last = int(item.broadcast_address) - edge
            else:
                first, last = int(item[0]), int(item[1])
            if first > last:
                raise ValueError(f"empty range {item}")
            self._ranges.append((first, last))
        self._size = sum(last - first + 1 for first, last in self._ranges)
        self._static = dict(static or {})
        self._static_owner = {addr: nai for nai, addr in self._static.items()}
        self.lease_time = lease_time
        self._by_nai: dict[str, Lease] = {}
        self._by_address: dict[IPv4Address, Lease] = {}
        self._free: deque[int] = deque()
        self._cursor_range = 0
        self._cursor = self._ranges[0][0] if self._ranges else 0
        self._expiry: TimerHeap[str] = TimerHeap()

    # --- queries --------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of addresses in the dynamic ranges."""
        return self._size

    def in_ranges(self, address: IPv4Address) -> bool:
        value = int(address)
        return any(first <= value <= last for first, last in self._ranges)

    def dynamic_in_use(self) -> int:
        return sum(1 for lease in self._by_nai.values() if not lease.static)

    def lease_of(self, nai: str) -> Lease | None:
        return self._by_nai.get(nai)

    def owner(self, address: IPv4Address) -> str | None:
        lease = self._by_address.get(address)
        if lease is not None:
            return lease.nai
        return self._static_owner.get(address)

    def allocated_to(self, nai: str) -> IPv4Address | None:
        """The address that NAI is entitled to now: static, or its live lease."""
        if nai in self._static:
            return self._static[nai]
        lease = self._by_nai.get(nai)
        return lease.address if lease else None

    def leases(self) -> Iterator[Lease]:
        return iter(list(self._by_nai.values()))

    def free_addresses(self) -> set[IPv4Address]:
        """What the allocator would still hand out: released addresses and the untouched rest
        of the ranges (for tests and metrics; O(range size))."""
        in_use = self._by_address
        free = {IPv4Address(v) for v in self._free if IPv4Address(v) not in in_use}
        for index in range(self._cursor_range, len(self._ranges)):
            first, last = self._ranges[index]
            start = self._cursor if index == self._cursor_range else first
            free.update(IPv4Address(v) for v in range(start, last + 1))
        return {a for a in free if a not in in_use and a not in self._static_owner}

    def next_expiry(self) -> float | None:
        return self._expiry.next_deadline()

    # --- changes --------------------------------------------------------------------------

    def allocate(self, nai: str) -> IPv4Address | None:
        """The NAI's address, allocating one if it has none; None when the pool is exhausted.

        The returned lease is held (no expiry) until :meth:`release`.
        """
        existing = self._by_nai.get(nai)
        if existing is not None:
            self._hold(existing)
            return existing.address
        if nai in self._static:
            return self._take(nai, self._static[nai], static=True)
        value = self._next_free()
        if value is None:
            return None
        return self._take(nai, IPv4Address(value), static=False)

    def hold(self, nai: str, address: IPv4Address) -> bool:
        """Hold ``address`` for ``nai`` if it is entitled to it (its static or leased address)."""
        if self.allocated_to(nai) != address:
            return False
        self.allocate(nai)
        return True

    def record(self, nai: str, address: IPv4Address, expires: float) -> bool:
        """Record an address a DHCP server gave ``nai``; False if another NAI holds it."""
        owner = self.owner(address)
        if owner is not None and owner != nai:
            return False
        current = self._by_nai.get(nai)
        if current is not None and current.address != address:
            self._drop(current)
        lease = self._by_nai.get(nai)
        if lease is None:
            self._take(nai, address, static=nai in self._static)
            lease = self._by_nai[nai]
            lease.expires = expires
        elif lease.expires is not None:  # not held by a binding: the DHCP lease may extend it
            lease.expires = max(lease.expires, expires)
        if lease.expires is not None:
            self._expiry.schedule(nai, lease.expires)
        return True

    def release(self, nai: str, now: float) -> None:
        """The binding is gone: the lease runs for ``lease_time`` more, then the address is free."""
        lease = self._by_nai.get(nai)
        if lease is None:
            return
        lease.expires = now + self.lease_time
        self._expiry.schedule(nai, lease.expires)

    def expire(self, now: float) -> list[Lease]:
        """Free every lease that ended at or before ``now``; returns them."""
        ended = []
        for nai in self._expiry.pop_due(now):
            lease = self._by_nai.get(nai)
            if lease is not None and lease.expires is not None and lease.expires <= now:
                self._drop(lease)
                ended.append(lease)
        return ended

    def forget(self, nai: str) -> None:
        """Drop the NAI's lease at once (a conflicting row found at restore)."""
        lease = self._by_nai.get(nai)
        if lease is not None:
            self._drop(lease)

    def restore(self, nai: str, address: IPv4Address, expires: float | None) -> None:
        """Re-create a lease read back from the database (a later row for the NAI wins)."""
        current = self._by_nai.get(nai)
        if current is not None:
            self._drop(current)
        self._take(nai, address, static=nai in self._static)
        lease = self._by_nai[nai]
        lease.expires = expires
        if expires is not None:
            self._expiry.schedule(nai, expires)

    # --- internals ------------------------------------------------------------------------

    def _take(self, nai: str, address: IPv4Address, *, static: bool) -> IPv4Address:
        lease = Lease(nai, address, None, static)
        self._by_nai[nai] = lease
        self._by_address[address] = lease
        return address

    def _hold(self, lease: Lease) -> None:
        lease.expires = None
        self._expiry.cancel(lease.nai)

    def _drop(self, lease: Lease) -> None:
        self._by_nai.pop(lease.nai, None)
        self._by_address.pop(lease.address, None)
        self._expiry.cancel(lease.nai)
        if not lease.static and self.in_ranges(lease.address):
            self._free.append(int(lease.address))

    def _next_free(self) -> int | None:
        while self._free:
            value = self._free.popleft()
            if IPv4Address(value) not in self._by_address:
                return value
        while self._cursor_range < len(self._ranges):
            last = self._ranges[self._cursor_range][1]
            while self._cursor <= last:
                value = self._cursor
                self._cursor += 1
                address = IPv4Address(value)
                if address not in self._by_address and address not in self._static_owner:
                    return value
            self._cursor_range += 1
            if self._cursor_range < len(self._ranges):
                self._cursor = self._ranges[self._cursor_range][0]
        return None


def usable_unicast(address: IPv4Address) -> bool:
    """Whether a PBU may claim ``address`` as a home address (seed 6: else 143)."""
    return not (
        address.is_multicast
        or address.is_unspecified
        or address.is_loopback
        or address.is_reserved
        or address == IPv4Address("255.255.255.255")
    )
