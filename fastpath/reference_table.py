"""The HoA table of the reference twin (the compiled twin's ``table.pxi``)."""

from __future__ import annotations

import mmap
from collections.abc import Iterator

from fastpath.common import (
    MAX_ENDPOINTS,
    MAX_ENTRIES,
    REHASH_PER_BATCH,
    REHASH_PER_UPDATE,
    Binding,
)

# the compiled table's layout, which memory_bytes() models: 8-byte slots (key + index) and
# 32-byte entries in mappings of whole pages; an entry's 16-bit endpoint index names a tunnel
# endpoint (16 bytes) with the MS's gateway (4), interned together, and a 4-byte reference count
PAGE = mmap.PAGESIZE
SLOT_BYTES = 8
ENTRY_BYTES = 32
ENDPOINT_BYTES = 24
# the compiled prefix table (prefix.pxi): 16-byte slots (a 64-bit key + index) and 48-byte
# entries, plain heap blocks starting at 16 of each
PREFIX_SLOT_BYTES = 16
PREFIX_ENTRY_BYTES = 48
PREFIX_MIN = 16
# the growth schedule (the compiled twin exports the same tuple)
REHASH_STEPS = (REHASH_PER_UPDATE, REHASH_PER_BATCH)


def pages(n: int) -> int:
    return -(-n // PAGE) * PAGE


class HoaTable:
    """HoA -> binding. Iteration order is the compiled table's: insertion order, except that
    unbinding moves the last entry into the hole (the dense array of the C table).

    The compiled table is open addressing over 8-byte slots (load at most 3/4) and a dense array
    of entries; this one is a dict, but it models the compiled allocation exactly so that
    ``memory_bytes()`` and ``rehash_pending`` agree. Growth is incremental: the bind that would
    cross 3/4 doubles the slot array and the old one is moved over ``REHASH_PER_UPDATE`` slots
    per bind/unbind (and ``REHASH_PER_BATCH`` per batch call of an engine), so no single call
    rehashes the whole table. ``reserve()`` rehashes at once: it is for start-up."""

    def __init__(self, capacity: int = 1024) -> None:
        self._index: dict[int, int] = {}
        self._entries: list[list[int | bytes]] = []
        # the model of the compiled allocation
        self._slots = 16  # slots of the current array
        self._old = 0  # slots of the array being migrated, 0 when none
        self._cursor = 0  # old slots already moved
        self._dense = 16  # entries allocated
        #: interned (endpoint, gateway) pairs and their reference counts
        self._eprefs: dict[tuple[bytes, int], int] = {}
        self._neps = 0  # endpoint indices handed out since clear() (live or free)
        self._epcap = 16
        #: IPv6 home network prefixes (RFC 5213): the /64's top 64 bits -> entry. The compiled
        #: twin's is a hash table of its own (open addressing, load at most 3/4, rehashed at
        #: once when it grows); modelled here by its two array sizes
        self._prefixes: dict[int, list[int | bytes]] = {}
        self._pslots = PREFIX_MIN
        self._pcap = PREFIX_MIN
        self.reserve(max(0, capacity))

    def bind(
        self,
        hoa: int,
        endpoint: bytes,
        mac: bytes = bytes(6),
        link: int = 0,
        flags: int = 0,
        gateway: int = 0,
    ) -> None:
        """Add or replace the binding of ``hoa``; counters survive a replacement (handover).
        ``gateway``: the MS's own default gateway (0: the engine's only)."""
        if not 0 <= hoa <= 0xFFFFFFFF:
            raise ValueError("hoa must be an unsigned 32-bit integer")
        if len(endpoint) != 16 or len(mac) != 6:
            raise ValueError("endpoint must be 16 bytes and mac 6 bytes")
        if not 0 <= link <= 0xFFFF or not 0 <= flags <= 0xFF:
            raise ValueError("link must fit 16 bits and flags 8 bits")
        if not 0 <= gateway <= 0xFFFFFFFF:
            raise ValueError("gateway must be an unsigned 32-bit integer")
        endpoint = bytes(endpoint)
        pair = (endpoint, gateway)
        self._migrate(REHASH_PER_UPDATE)
        i = self._index.get(hoa)
        if i is None:
            self._grow(len(self._entries) + 1, incremental=True)
            self._ep_acquire(pair)
            self._index[hoa] = len(self._entries)
            self._entries.append([hoa, endpoint, bytes(mac), link, flags, 0, 0, gateway])
        else:
            e = self._entries[i]
            self._ep_acquire(pair)
            self._ep_release((bytes(e[1]), int(e[7])))
            e[1:5] = [endpoint, bytes(mac), link, flags]
            e[7] = gateway

    def unbind(self, hoa: int) -> bool:
        if not 0 <= hoa <= 0xFFFFFFFF:
            return False
        self._migrate(REHASH_PER_UPDATE)
        i = self._index.pop(hoa, None)
        if i is None:
            return False
        self._ep_release((bytes(self._entries[i][1]), int(self._entries[i][7])))
        last = self._entries.pop()
        if i < len(self._entries):
            self._entries[i] = last
            self._index[int(last[0])] = i
        return True

    def lookup(self, hoa: int) -> Binding | None:
        i = self._index.get(hoa)
        return None if i is None else Binding(*self._entries[i])  # type: ignore[arg-type]

    def clear(self) -> None:
        self._prefixes.clear()
        """Forget every binding; the allocation stays (a growth in progress is abandoned)."""
        self._index.clear()
        self._entries.clear()
        self._eprefs.clear()
        self._neps = 0
        self._old = self._cursor = 0

    def reserve(self, want: int) -> None:
        """Grow to hold ``want`` entries without further allocation, rehashing at once."""
        if want > 0:
            self._grow(want, incremental=False)

    @property
    def rehash_pending(self) -> int:
        """Old slots not yet moved to the grown array (0: no growth in progress)."""
        return self._old - self._cursor

    def memory_bytes(self) -> int:
        """Bytes the compiled table has allocated in the same state: slot arrays and entries
        (whole pages; the old slot array counted whole until its migration ends), endpoints, the
        prefix table's slots and entries."""
        return (
            pages(self._slots * SLOT_BYTES)
            + (pages(self._old * SLOT_BYTES) if self._old else 0)
            + pages(self._dense * ENTRY_BYTES)
            + self._epcap * ENDPOINT_BYTES
            + self._pslots * PREFIX_SLOT_BYTES
            + self._pcap * PREFIX_ENTRY_BYTES
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, hoa: object) -> bool:
        return hoa in self._index

    def __iter__(self) -> Iterator[Binding]:
        return iter([Binding(*e) for e in self._entries])  # type: ignore[arg-type]

    # the allocation model
    def _grow(self, want: int, incremental: bool) -> None:
        if want > MAX_ENTRIES:
            raise OverflowError("too many entries")
        while self._dense < want:
            self._dense *= 2
        slots = self._slots
        while slots * 3 < want * 4:
            slots *= 2
        if slots != self._slots:
            # a growth still in progress ends first; then the current array becomes the old one
            self._old, self._cursor, self._slots = self._slots, 0, slots
            if not incremental:
                self._old = 0

    def _migrate(self, k: int) -> None:
        """Move the next ``k`` old slots (the compiled table walks them in slot order)."""
        if self._old:
            self._cursor += k
            if self._cursor >= self._old:
                self._old = self._cursor = 0

    def _ep_acquire(self, endpoint: tuple[bytes, int]) -> None:
        refs = self._eprefs.get(endpoint)
        if refs is None:
            if len(self._eprefs) == self._neps:  # no free index to reuse: a new one
                if self._neps == MAX_ENDPOINTS:
                    raise OverflowError("at most 65535 distinct tunnel endpoints and gateways")
                if self._neps == self._epcap:
                    self._epcap *= 2
                self._neps += 1
            refs = 0
        self._eprefs[endpoint] = refs + 1

    def _ep_release(self, endpoint: tuple[bytes, int]) -> None:
        refs = self._eprefs[endpoint] - 1
        if refs:
            self._eprefs[endpoint] = refs
        else:
            del self._eprefs[endpoint]

    # for the engines
    # IPv6 home network prefixes
    def bind_prefix(
        self, prefix: int, endpoint: bytes, mac: bytes = bytes(6), link: int = 0
    ) -> None:
        """Add or replace the /64 whose top 64 bits are ``prefix``; counters survive."""
        if not 0 <= prefix <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError("prefix must be the top 64 bits of a /64")
        if len(endpoint) != 16 or len(mac) != 6:
            raise ValueError("endpoint must be 16 bytes and mac 6")
        if not 0 <= link <= 0xFFFF:
            raise ValueError("link must be 0..65535")
        e = self._prefixes.get(prefix)
        if e is None:
            want = len(self._prefixes) + 1
            if want > MAX_ENTRIES:
                raise OverflowError("too many prefixes")
            if want > self._pcap:
                self._pcap *= 2
            while self._pslots * 3 < want * 4:
                self._pslots *= 2
            self._prefixes[prefix] = [prefix, bytes(endpoint), bytes(mac), link, 0, 0, 0]
        else:
            e[1:4] = [bytes(endpoint), bytes(mac), link]

    def unbind_prefix(self, prefix: int) -> bool:
        return self._prefixes.pop(prefix, None) is not None

    def lookup_prefix(self, prefix: int) -> Binding | None:
        e = self._prefixes.get(prefix)
        return None if e is None else Binding(*e)  # type: ignore[arg-type]

    @property
    def prefixes(self) -> int:
        """How many prefixes are bound."""
        return len(self._prefixes)

    def _prefix_entry(self, prefix: int) -> list[int | bytes] | None:
        return self._prefixes.get(prefix)

    def _entry(self, hoa: int) -> list[int | bytes] | None:
        i = self._index.get(hoa)
        return None if i is None else self._entries[i]


def count_binding(e: list[int | bytes], octets: int) -> None:
    """One packet of ``octets`` forwarded through the entry ``e`` (``HoaTable._entry``)."""
    e[5] = int(e[5]) + 1
    e[6] = int(e[6]) + octets
