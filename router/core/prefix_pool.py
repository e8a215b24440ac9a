"""The DLMAP's IPv6 home network prefixes (RFC 5213 section 5.2): one /64 per MS from a pool.

An NAI keeps its prefix while its binding lives: a re-registration or a handover that asks with
``::/0`` gets the same one back, and the binding row carries it across a restart (the DLMAP's
:meth:`~router.core.dlmap.DLMAP.restore` hands it back with :meth:`PrefixPool.restore`). When
the binding goes the prefix is free again. Memory grows with the prefixes in use, not with the
pool: untouched prefixes come from a cursor, released ones from a free list (either skips
what a restore took).
"""

from __future__ import annotations

from collections import deque
from ipaddress import IPv6Address, IPv6Network

from router.core.counters import Counters, Names
from router.core.defaults import HOME_PREFIX_LENGTH
from router.core.pbu import PBURequest, Reject
from router.wire.constants import Status
from router.wire.mh_options import HomeNetworkPrefix, MobilityOption


class PrefixCounter(Names):
    """What the DLMAP counts of its prefixes (``core`` group)."""

    PREFIX_EXHAUSTED = "prefix.exhausted"  # a PBA 130: no /64 left


class PrefixPool:
    def __init__(self, network: IPv6Network, length: int = HOME_PREFIX_LENGTH) -> None:
        if network.prefixlen > length:
            raise ValueError(f"{network} is longer than /{length}")
        self.network = network
        self.length = length
        self.size = 1 << (length - network.prefixlen)
        self._base = int(network.network_address)
        self._shift = 128 - length
        self._cursor = 0
        self._free: deque[int] = deque()
        self._by_nai: dict[str, int] = {}
        self._owner: dict[int, str] = {}

    def _prefix(self, index: int) -> IPv6Network:
        return IPv6Network((self._base + (index << self._shift), self.length))

    def _index(self, prefix: IPv6Network) -> int | None:
        if prefix.prefixlen != self.length or not prefix.subnet_of(self.network):
            return None
        return (int(prefix.network_address) - self._base) >> self._shift

    def prefix_of(self, nai: str) -> IPv6Network | None:
        index = self._by_nai.get(nai)
        return None if index is None else self._prefix(index)

    def owner(self, prefix: IPv6Network) -> str | None:
        index = self._index(prefix)
        return None if index is None else self._owner.get(index)

    def in_use(self) -> int:
        return len(self._by_nai)

    def allocate(self, nai: str) -> IPv6Network | None:
        """The NAI's prefix, allocating one if it has none; None when the pool is exhausted."""
        index = self._by_nai.get(nai)
        if index is None:
            index = self._next_free()
            if index is None:
                return None
            self._take(nai, index)
        return self._prefix(index)

    def _next_free(self) -> int | None:
        # Free-list entries and cursor positions a restore took meanwhile are skipped.
        while self._free:
            index = self._free.popleft()
            if index not in self._owner:
                return index
        while self._cursor < self.size:
            index = self._cursor
            self._cursor += 1
            if index not in self._owner:
                return index
        return None

    def hold(self, nai: str, prefix: IPv6Network) -> bool:
        """Whether ``prefix`` is the one ``nai`` holds (RFC 5213 5.3.1: else status 155)."""
        index = self._index(prefix)
        return index is not None and self._by_nai.get(nai) == index

    def release(self, nai: str) -> None:
        index = self._by_nai.pop(nai, None)
        if index is not None:
            del self._owner[index]
            self._free.append(index)

    def restore(self, nai: str, prefix: IPv6Network) -> bool:
        """Take ``prefix`` for ``nai`` again (read back from the database); False if it is not
        a prefix of this pool or another NAI holds it."""
        index = self._index(prefix)
        if index is None or self._owner.get(index, nai) != nai:
            return False
        self.release(nai)
        self._take(nai, index)
        return True

    def _take(self, nai: str, index: int) -> None:
        self._by_nai[nai] = index
        self._owner[index] = nai


def wants_allocation(prefix: IPv6Network) -> bool:
    """An HNP of ``::/0`` (RFC 5213 6.9.1.1: ALL_ZERO) asks the LMA to allocate."""
    return prefix.network_address == IPv6Address("::")


def as_network(option: HomeNetworkPrefix) -> IPv6Network | None:
    """The option's prefix, or None when its length or host bits make it no prefix."""
    if option.prefix_length > 128:
        return None
    try:
        return IPv6Network((option.prefix, option.prefix_length))
    except ValueError:
        return None


def home_prefix(
    pool: PrefixPool, req: PBURequest, held: IPv6Network | None, counters: Counters
) -> IPv6Network:
    """The prefix a PBU with an HNP option gets (RFC 5213 5.3.1): ``::/0`` allocates (or finds
    the NAI's; none left: 130); any other must be the NAI's (the binding's ``held`` one is
    another: 159; else 155)."""
    assert req.nai is not None and req.prefix is not None
    asked = as_network(req.prefix)
    if asked is not None and wants_allocation(asked):
        prefix = pool.allocate(req.nai)
        if prefix is None:
            counters[PrefixCounter.PREFIX_EXHAUSTED] += 1
            raise Reject(Status.INSUFFICIENT_RESOURCES, "no home network prefix left")
        return prefix
    if asked is None or not pool.hold(req.nai, asked):
        if held is not None:
            raise Reject(Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH, "not the binding's prefix")
        raise Reject(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, "not a prefix of this NAI")
    return asked


def prefix_options(
    asked: HomeNetworkPrefix | None, granted: IPv6Network | None
) -> list[MobilityOption]:
    """RFC 5213 5.3.5: a PBA carries the prefix granted, else the PBU's HNP option as it was."""
    if asked is None:
        return []
    if granted is not None:
        return [HomeNetworkPrefix(granted.prefixlen, granted.network_address)]
    return [asked]
