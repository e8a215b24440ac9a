"""The pure-Python fastpath: the executable specification of ``fastpath._fastpath``.

Same classes, same methods, same results, byte for byte; any difference is a bug in one of the
two (the tests in ``tests/fastpath`` run both and compare). Written for clarity, not speed.

Data paths (see ``shared/docs/architecture.md``):

* DMPA uplink, ``Dmpa.from_access``: an Ethernet frame from an access TAP -> classify -> outer
  IPv6 (next header 4) towards the DLMAP, TTL decremented (RFC 2473 3.1(b): the DMPA is the MS's
  first-hop router and the tunnel entry point).
* DMPA downlink, ``Dmpa.from_tunnel``: inner IPv4 from the raw protocol-4 socket -> Ethernet
  header (pseudo-MAC -> MS MAC), TTL decremented (the exit point forwards it as a router).
* DLMAP uplink, ``Dlmap.from_tunnel``: inner IPv4 -> the TUN, TTL unchanged (the kernel forwards
  it from the TUN and decrements it then).
* DLMAP downlink, ``Dlmap.from_tun``: IPv4 from the TUN (the kernel already decremented the TTL
  when it routed it into the TUN) -> outer IPv6 towards the serving DMPA.

``from_tunnel_ipv6`` takes whole IPv6 packets (TUN on the IPv6 side, packet rings) and checks the
outer header itself; ``from_tunnel`` takes what a raw protocol-4 socket delivers: the outer source
address and the inner packet.

Nothing here raises on packet content: every packet ends with one :class:`Reason`.
"""

from __future__ import annotations

import errno
import mmap
import os
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence

from fastpath.common import (
    ETH_BROADCAST,
    MAX_STRIDE,
    VERDICT_OF,
    Binding,
    Direction,
    Punt,
    Reason,
    Result,
    Verdict,
    counter_names,
)

__all__ = ["Batch", "Dlmap", "Dmpa", "HoaTable", "coalesce", "segment"]

Buf = bytes | bytearray | memoryview  # what the packet arguments accept

ETH_LEN = 14
IP6_LEN = 40
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
NH_IPV4 = 4
NH_DSTOPTS = 60
OPT_PAD1 = 0
OPT_PADN = 1
OPT_TUNNEL_ENCAP_LIMIT = 4  # RFC 2473 4.1.1: ignored at the exit point
PROTO_ICMP = 1
PROTO_UDP = 17
DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
ECN_CE = 3
N_REASONS = len(Reason)
N_EXTRA = 2  # bytes, tx_errors
ROW = N_REASONS + N_EXTRA
IO_BUF = 2048  # per-packet buffer of the batched I/O
READ_MAX = 65536  # one read() from a TAP/TUN
# TAP/TUN offload (IFF_VNET_HDR): every read and write starts with a struct virtio_net_hdr, in
# host byte order (linux/virtio_net.h; legacy, no TUNSETVNETLE)
VNET_HDR_LEN = 10
VNET_READ_MAX = 65536 + 64  # a TCP super-packet: 64 KiB of IPv4 + Ethernet + the header
VNET_F_NEEDS_CSUM = 1
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_ECN = 0x80
TCP_FIN = 0x01
TCP_PSH = 0x08
TCP_CWR = 0x80
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_URG = 0x20
PROTO_TCP = 6
COALESCE_MAX = 65535  # the IPv4 total length of a coalesced super-packet, at most
_VNET = struct.Struct("=BBHHHH")

# the compiled table's layout and growth schedule, which memory_bytes() and rehash_pending model:
# 8-byte slots (key + index) and 32-byte entries in mappings of whole pages, endpoints of 16
# bytes + a 4-byte reference count
PAGE = mmap.PAGESIZE
SLOT_BYTES = 8
ENTRY_BYTES = 32
ENDPOINT_BYTES = 20
MAX_ENTRIES = 0x40000000
MAX_ENDPOINTS = 0xFFFF
# growth: old slots moved to the doubled array per bind/unbind and per batch call
REHASH_PER_UPDATE = 8
REHASH_PER_BATCH = 64
REHASH_STEPS = (REHASH_PER_UPDATE, REHASH_PER_BATCH)


def _pages(n: int) -> int:
    return -(-n // PAGE) * PAGE


def _be16(b: Buf, i: int) -> int:
    return (b[i] << 8) | b[i + 1]


def _be32(b: Buf, i: int) -> int:
    return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]


def _fold(s: int) -> int:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _sum16(b: Buf) -> int:
    """The one's complement sum of ``b`` as big-endian 16-bit words (an odd last byte padded
    with zero), folded to 16 bits: 0 only when every byte is 0."""
    v = int.from_bytes(bytes(b) + b"\0" * (len(b) & 1), "big")
    return 0 if v == 0 else (v % 0xFFFF or 0xFFFF)


def segment(buf: Buf, l2len: int) -> tuple[int, list[bytes]]:
    """What a TAP/TUN with ``IFF_VNET_HDR`` and ``TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4)`` gave
    (``buf``: the virtio-net header, then the frame or packet), as the packets the kernel would
    have given without offloads: (``FORWARDED``, packets) or (``BAD_GSO``, []).

    ``l2len`` is the link header before IPv4: 14 on a TAP, 0 on a TUN. Without GSO, a
    partial checksum (``NEEDS_CSUM``: the field holds the pseudo-header sum) is completed over
    ``[csum_start, end)`` (0 becomes 0xFFFF, as ``skb_checksum_help`` does). A TCP/IPv4
    super-packet is split as ``tcp_gso_segment`` and ``inet_gso_segment`` do: ``gso_size``
    bytes of payload per segment, the headers copied, total length set, the IPv4 ID + i, the
    sequence number + i * gso_size, FIN and PSH on the last segment only, CWR on the first only,
    both checksums computed whole. Any other GSO type, or headers that are not IPv4 + TCP, is
    ``BAD_GSO`` (only TSO4 is offered, so the kernel does not send them).
    """
    n = len(buf)
    if n < VNET_HDR_LEN:
        return Reason.BAD_GSO, []
    flags, gso_type, _, gso_size, csum_start, csum_offset = _VNET.unpack_from(buf, 0)
    p = bytearray(buf[VNET_HDR_LEN:])
    m = len(p)
    if gso_type == GSO_NONE:
        if flags & VNET_F_NEEDS_CSUM:
            at = csum_start + csum_offset
            if at + 2 > m:
                return Reason.BAD_GSO, []
            c = ~_sum16(p[csum_start:]) & 0xFFFF or 0xFFFF
            p[at : at + 2] = c.to_bytes(2, "big")
        return Reason.FORWARDED, [bytes(p)]
    if gso_type & ~GSO_ECN != GSO_TCPV4 or gso_size == 0:
        return Reason.BAD_GSO, []
    ip = l2len
    if m < ip + 20 or (ip and _be16(p, 12) != ETH_P_IP) or p[ip] >> 4 != 4:
        return Reason.BAD_GSO, []
    ihl = (p[ip] & 0x0F) * 4
    t = ip + ihl
    if ihl < 20 or p[ip + 9] != PROTO_TCP or m < t + 20:
        return Reason.BAD_GSO, []
    hdrs = t + (p[t + 12] >> 4) * 4
    if hdrs < t + 20 or m < hdrs:
        return Reason.BAD_GSO, []
    count = max(1, -(-(m - hdrs) // gso_size))
    ip_id, seq = _be16(p, ip + 4), _be32(p, t + 4)
    pseudo = _sum16(p[ip + 12 : ip + 20]) + PROTO_TCP
    out = []
    for i in range(count):
        lo = hdrs + i * gso_size
        seg = p[:hdrs] + p[lo : min(m, lo + gso_size)]
        seg[ip + 2 : ip + 6] = struct.pack("!HH", len(seg) - ip, (ip_id + i) & 0xFFFF)
        seg[ip + 10 : ip + 12] = b"\0\0"
        seg[ip + 10 : ip + 12] = (~_sum16(seg[ip:t]) & 0xFFFF).to_bytes(2, "big")
        seg[t + 4 : t + 8] = ((seq + i * gso_size) & 0xFFFFFFFF).to_bytes(4, "big")
        if i < count - 1:
            seg[t + 13] &= ~(TCP_FIN | TCP_PSH) & 0xFF
        if i > 0:
            seg[t + 13] &= ~TCP_CWR & 0xFF
        seg[t + 16 : t + 18] = b"\0\0"
        s = _fold(pseudo + len(seg) - t + _sum16(seg[t:]))
        seg[t + 16 : t + 18] = (~s & 0xFFFF).to_bytes(2, "big")
        out.append(bytes(seg))
    return Reason.FORWARDED, out


def _mergeable(p: Buf, l2: int) -> tuple[int, int] | None:
    """(TCP header offset, payload offset) of a packet the coalescer may merge, else None:
    IPv4 (after ``l2`` bytes of Ethernet) whose total length is the packet's, not a fragment,
    TCP with a payload and none of SYN, RST, URG, CWR, both checksums valid (a merged packet's
    checksum is computed afresh, so a bad one must not be hidden in it)."""
    n, ip = len(p), l2
    if n < ip + 20 or (l2 and _be16(p, 12) != ETH_P_IP) or p[ip] >> 4 != 4:
        return None
    ihl = (p[ip] & 0x0F) * 4
    t = ip + ihl
    if ihl < 20 or p[ip + 9] != PROTO_TCP or _be16(p, ip + 6) & 0x3FFF or n < t + 20:
        return None
    hdrs = t + (p[t + 12] >> 4) * 4
    if _be16(p, ip + 2) != n - ip or hdrs < t + 20 or hdrs >= n:
        return None
    if p[t + 13] & (TCP_SYN | TCP_RST | TCP_URG | TCP_CWR) or not _checksum_ok(p, ip, ihl):
        return None
    if _fold(_sum16(p[ip + 12 : ip + 20]) + PROTO_TCP + n - t + _sum16(p[t:])) != 0xFFFF:
        return None
    return t, hdrs


class _Coalescer:
    """Write-side coalescing for a TAP/TUN with ``IFF_VNET_HDR``: consecutive in-order TCP
    segments of one flow, each ``mss`` bytes of payload but the last, become one super-packet
    (the inverse of :func:`segment`, which gives the segments back byte for byte).

    The super-packet is the first segment's headers with the payload of all: IPv4 total
    length and header checksum for the whole, FIN and PSH of the last segment, the TCP
    checksum field holding the folded pseudo-header sum over the whole TCP length (the
    kernel's ``CHECKSUM_PARTIAL`` convention), and a virtio-net header ``NEEDS_CSUM`` +
    ``GSO_TCPV4``, ``gso_size`` = mss, ``csum_start`` = the TCP header, ``csum_offset`` = 16.
    A segment merges when every header byte equals the first's except the IPv4 total length,
    ID (first + count), checksum, the TCP sequence number (the next byte expected), checksum,
    and FIN/PSH. The super-packet is written when a segment does not merge (before it), when it
    closes (a short segment, FIN or PSH, no room for one more) and at the end of a pump call.
    A lone segment is written as it came (virtio-net header all zero), so is anything else.

    ``add`` returns the writes to do, in order: (fd, virtio-net header + packet, packets)."""

    def __init__(self, l2: int) -> None:
        self.l2 = l2
        self.fd = -1
        self.buf = bytearray()
        self.count = 0
        self.t = self.hdrs = self.mss = self.seq_next = self.id_next = 0

    def add(self, fd: int, p: Buf) -> list[tuple[int, bytes, int]]:
        out = []
        m = _mergeable(p, self.l2)
        if self.count and not (m is not None and self._fits(fd, p, *m)):
            out.append(self.finish())
        if m is None:
            out.append((fd, bytes(VNET_HDR_LEN) + bytes(p), 1))
            return out
        t, hdrs = m
        k, flags = len(p) - hdrs, p[t + 13]
        if self.count:
            self.buf += p[hdrs:]
            self.buf[t + 13] |= flags & (TCP_FIN | TCP_PSH)
            self.count += 1
            closed = k < self.mss
        else:
            self.fd, self.buf, self.count = fd, bytearray(p), 1
            self.t, self.hdrs, self.mss = t, hdrs, k
            self.seq_next, self.id_next = _be32(p, t + 4), _be16(p, self.l2 + 4)
            closed = False
        self.seq_next = (self.seq_next + k) & 0xFFFFFFFF
        self.id_next = (self.id_next + 1) & 0xFFFF
        if (
            closed
            or flags & (TCP_FIN | TCP_PSH)
            or len(self.buf) + self.mss > self.l2 + COALESCE_MAX
        ):
            out.append(self.finish())
        return out

    def _fits(self, fd: int, p: Buf, t: int, hdrs: int) -> bool:
        b, ip = self.buf, self.l2
        return (
            fd == self.fd
            and t == self.t
            and hdrs == self.hdrs
            and len(p) - hdrs <= self.mss
            and p[: ip + 2] == b[: ip + 2]
            and _be16(p, ip + 4) == self.id_next
            and p[ip + 6 : ip + 10] == b[ip + 6 : ip + 10]
            and p[ip + 12 : t + 4] == b[ip + 12 : t + 4]
            and _be32(p, t + 4) == self.seq_next
            and p[t + 8 : t + 13] == b[t + 8 : t + 13]
            and p[t + 13] & ~(TCP_FIN | TCP_PSH) == b[t + 13]
            and p[t + 14 : t + 16] == b[t + 14 : t + 16]
            and p[t + 18 : hdrs] == b[t + 18 : hdrs]
        )

    def finish(self) -> tuple[int, bytes, int]:
        """The pending super-packet (or lone segment) as one write; nothing pending after."""
        b, ip, t, count = self.buf, self.l2, self.t, self.count
        self.count = 0
        if count == 1:
            return self.fd, bytes(VNET_HDR_LEN) + bytes(b), 1
        b[ip + 2 : ip + 4] = (len(b) - ip).to_bytes(2, "big")
        b[ip + 10 : ip + 12] = b"\0\0"
        b[ip + 10 : ip + 12] = (~_sum16(b[ip:t]) & 0xFFFF).to_bytes(2, "big")
        pseudo = _fold(_sum16(b[ip + 12 : ip + 20]) + PROTO_TCP + len(b) - t)
        b[t + 16 : t + 18] = pseudo.to_bytes(2, "big")
        hdr = _VNET.pack(VNET_F_NEEDS_CSUM, GSO_TCPV4, self.hdrs, self.mss, t, 16)
        return self.fd, hdr + bytes(b), count


def coalesce(packets: Iterable[Buf], l2len: int) -> list[bytes]:
    """What the pumps write to a TAP (``l2len`` 14) or TUN (0) with ``IFF_VNET_HDR`` for these
    packets, in order (see :class:`_Coalescer`): each item is one write, virtio-net header
    first. ``segment(item, l2len)`` gives the packets back."""
    co = _Coalescer(l2len)
    out = [data for p in packets for _, data, _ in co.add(0, p)]
    if co.count:
        out.append(co.finish()[1])
    return out


def _checksum_ok(b: Buf, off: int, hlen: int) -> bool:
    s = sum(_be16(b, off + i) for i in range(0, hlen, 2))
    return _fold(s) == 0xFFFF


def _incremental(cs: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')."""
    return ~_fold((~cs & 0xFFFF) + (~old & 0xFFFF) + new) & 0xFFFF


def _rewrite_word(out: bytearray, p: int, word_at: int, new_hi: int, new_lo: int) -> None:
    """Replace the 16-bit word at ``p + word_at`` and update the IPv4 checksum at ``p + 10``."""
    old = _be16(out, p + word_at)
    new = (new_hi << 8) | new_lo
    cs = _incremental(_be16(out, p + 10), old, new)
    out[p + word_at] = new_hi
    out[p + word_at + 1] = new_lo
    out[p + 10] = cs >> 8
    out[p + 11] = cs & 0xFF


def _decrement_ttl(out: bytearray, p: int) -> None:
    _rewrite_word(out, p, 8, out[p + 8] - 1, out[p + 9])


def _mark_ce(out: bytearray, p: int) -> None:
    """RFC 6040 normal mode decapsulation: outer CE over inner ECT(0)/ECT(1) becomes inner CE."""
    _rewrite_word(out, p, 0, out[p], out[p + 1] | ECN_CE)


def _ipv4(b: Buf, off: int, avail: int, exact: bool) -> tuple[int, int]:
    """Check an IPv4 header: (reason, total length). ``exact``: no trailing bytes allowed."""
    if avail < 20:
        return Reason.TRUNCATED, 0
    if b[off] >> 4 != 4:
        return Reason.BAD_VERSION, 0
    ihl = (b[off] & 0x0F) * 4
    if ihl < 20:
        return Reason.BAD_IHL, 0
    tot = _be16(b, off + 2)
    if tot < ihl:
        return Reason.BAD_LENGTH, 0
    if tot > avail:
        return Reason.TRUNCATED, 0
    if exact and tot != avail:
        return Reason.BAD_LENGTH, 0
    if not _checksum_ok(b, off, ihl):
        return Reason.BAD_CHECKSUM, 0
    return Reason.FORWARDED, tot


def _udp_dport(b: Buf, off: int, tot: int) -> int:
    """UDP destination port of a first fragment, else -1."""
    ihl = (b[off] & 0x0F) * 4
    if b[off + 9] != PROTO_UDP or _be16(b, off + 6) & 0x1FFF or ihl + 4 > tot:
        return -1
    return _be16(b, off + ihl + 2)


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
        self._eprefs: dict[bytes, int] = {}  # interned endpoints and their reference counts
        self._neps = 0  # endpoint indices handed out since clear() (live or free)
        self._epcap = 16
        self.reserve(max(0, capacity))

    def bind(
        self, hoa: int, endpoint: bytes, mac: bytes = bytes(6), link: int = 0, flags: int = 0
    ) -> None:
        """Add or replace the binding of ``hoa``; counters survive a replacement (handover)."""
        if not 0 <= hoa <= 0xFFFFFFFF:
            raise ValueError("hoa must be an unsigned 32-bit integer")
        if len(endpoint) != 16 or len(mac) != 6:
            raise ValueError("endpoint must be 16 bytes and mac 6 bytes")
        if not 0 <= link <= 0xFFFF or not 0 <= flags <= 0xFF:
            raise ValueError("link must fit 16 bits and flags 8 bits")
        endpoint = bytes(endpoint)
        self._migrate(REHASH_PER_UPDATE)
        i = self._index.get(hoa)
        if i is None:
            self._grow(len(self._entries) + 1, incremental=True)
            self._ep_acquire(endpoint)
            self._index[hoa] = len(self._entries)
            self._entries.append([hoa, endpoint, bytes(mac), link, flags, 0, 0])
        else:
            e = self._entries[i]
            self._ep_acquire(endpoint)
            self._ep_release(bytes(e[1]))
            e[1:5] = [endpoint, bytes(mac), link, flags]

    def unbind(self, hoa: int) -> bool:
        if not 0 <= hoa <= 0xFFFFFFFF:
            return False
        self._migrate(REHASH_PER_UPDATE)
        i = self._index.pop(hoa, None)
        if i is None:
            return False
        self._ep_release(bytes(self._entries[i][1]))
        last = self._entries.pop()
        if i < len(self._entries):
            self._entries[i] = last
            self._index[int(last[0])] = i
        return True

    def lookup(self, hoa: int) -> Binding | None:
        i = self._index.get(hoa)
        return None if i is None else Binding(*self._entries[i])  # type: ignore[arg-type]

    def clear(self) -> None:
        """Forget every binding; the allocation stays (a growth in progress is abandoned)."""
        self._index.clear()
        self._entries.clear()
        self._eprefs.clear()
        self._neps = 0
        self._old = self._cursor = 0

    def reserve(self, n: int) -> None:
        """Grow to hold ``n`` entries without further allocation, rehashing at once."""
        if n > 0:
            self._grow(n, incremental=False)

    @property
    def rehash_pending(self) -> int:
        """Old slots not yet moved to the grown array (0: no growth in progress)."""
        return self._old - self._cursor

    def memory_bytes(self) -> int:
        """Bytes the compiled table has allocated in the same state: slot arrays and entries
        (whole pages; the old slot array counted whole until its migration ends), endpoints."""
        return (
            _pages(self._slots * SLOT_BYTES)
            + (_pages(self._old * SLOT_BYTES) if self._old else 0)
            + _pages(self._dense * ENTRY_BYTES)
            + self._epcap * ENDPOINT_BYTES
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

    def _ep_acquire(self, endpoint: bytes) -> None:
        refs = self._eprefs.get(endpoint)
        if refs is None:
            if len(self._eprefs) == self._neps:  # no free index to reuse: a new one
                if self._neps == MAX_ENDPOINTS:
                    raise OverflowError("at most 65535 distinct tunnel endpoints")
                if self._neps == self._epcap:
                    self._epcap *= 2
                self._neps += 1
            refs = 0
        self._eprefs[endpoint] = refs + 1

    def _ep_release(self, endpoint: bytes) -> None:
        refs = self._eprefs[endpoint] - 1
        if refs:
            self._eprefs[endpoint] = refs
        else:
            del self._eprefs[endpoint]

    # for the engines
    def _entry(self, hoa: int) -> list[int | bytes] | None:
        i = self._index.get(hoa)
        return None if i is None else self._entries[i]


def _count_binding(e: list[int | bytes], octets: int) -> None:
    e[5] = int(e[5]) + 1
    e[6] = int(e[6]) + octets


class Batch:
    """Up to ``size`` packets in fixed ``stride`` slots, with per-slot address, link and reason.

    An input batch carries what arrived (address = outer IPv6 source for tunnel input); an output
    batch receives, slot for slot, the output bytes, the reason and the link of each input.
    """

    def __init__(self, size: int = 64, stride: int = IO_BUF) -> None:
        if not 0 < size <= 4096 or not 64 <= stride <= MAX_STRIDE:
            raise ValueError("size must be 1..4096 and stride 64..65535")
        self._size = size
        self._stride = stride
        self._data: list[bytes] = [b""] * size
        self._addr: list[bytes] = [bytes(16)] * size
        self._link = [0] * size
        self._reason = [0] * size
        self._count = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def stride(self) -> int:
        return self._stride

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        self._count = 0

    def append(self, data: Buf, addr: Buf = bytes(16), link: int = 0) -> None:
        if self._count >= self._size or len(data) > self._stride or len(addr) != 16:
            raise ValueError("batch full, packet longer than the stride, or addr not 16 bytes")
        i = self._count
        self._data[i] = bytes(data)
        self._addr[i] = bytes(addr)
        self._link[i] = link
        self._reason[i] = 0
        self._count += 1

    def data(self, i: int) -> bytes:
        self._check(i)
        return self._data[i]

    def addr(self, i: int) -> bytes:
        self._check(i)
        return self._addr[i]

    def link(self, i: int) -> int:
        self._check(i)
        return self._link[i]

    def reason(self, i: int) -> int:
        self._check(i)
        return self._reason[i]

    def _check(self, i: int) -> None:
        if not 0 <= i < self._count:
            raise IndexError("batch slot out of range")

    def _set(self, i: int, data: bytes, link: int, reason: int) -> None:
        self._data[i] = data
        self._link[i] = link
        self._reason[i] = reason


class _Engine:
    _up: Direction = Direction.UPLINK  # overridden: direction of tunnel input

    def __init__(
        self,
        table: HoaTable,
        local: bytes,
        *,
        tunnel_mtu: int = 1460,
        hop_limit: int = 64,
        peers: Iterable[bytes] = (),
        vnet_hdr: bool = False,
        coalesce: bool = True,
    ) -> None:
        if len(local) != 16:
            raise ValueError("local must be a 16-byte IPv6 address")
        if not 68 <= tunnel_mtu <= IO_BUF - IP6_LEN - ETH_LEN:
            raise ValueError(f"tunnel_mtu must be 68..{IO_BUF - IP6_LEN - ETH_LEN}")
        if not 1 <= hop_limit <= 255:
            raise ValueError("hop_limit must be 1..255")
        self.table = table
        self._local = bytes(local)
        self._mtu = tunnel_mtu
        self._hop_limit = hop_limit
        self._peers: set[bytes] = set()
        for p in peers:
            self.add_peer(p)
        self._counters = [0] * (ROW * 2)
        # the pumps' TAP/TUN fds carry a virtio-net header (IFF_VNET_HDR + TUNSETOFFLOAD)
        self._vnet = bytes(VNET_HDR_LEN) if vnet_hdr else b""
        # and the tunnel pumps merge TCP segments into super-packets on them (_Coalescer)
        self._coalesce = vnet_hdr and coalesce

    # configuration
    @property
    def tunnel_mtu(self) -> int:
        return self._mtu

    @property
    def vnet_hdr(self) -> bool:
        return bool(self._vnet)

    @property
    def coalesce(self) -> bool:
        """The tunnel pumps merge TCP segments on their TAP/TUN writes (needs ``vnet_hdr``)."""
        return self._coalesce

    def add_peer(self, addr: bytes) -> None:
        """A tunnel peer whose DHCP is accepted before any binding exists."""
        if len(addr) != 16:
            raise ValueError("peer must be a 16-byte IPv6 address")
        self._peers.add(bytes(addr))

    def remove_peer(self, addr: bytes) -> None:
        self._peers.discard(bytes(addr))

    def counters(self) -> dict[str, int]:
        return dict(zip(counter_names(), self._counters, strict=True))

    def reset_counters(self) -> None:
        self._counters = [0] * (ROW * 2)

    # shared steps
    def _end(self, d: Direction, reason: int, n: int = 0, link: int = -1) -> Result:
        self._counters[d * ROW + reason] += 1
        return (int(VERDICT_OF[reason]), int(reason), n, link)

    def _forwarded(self, d: Direction, octets: int, n: int, link: int) -> Result:
        self._counters[d * ROW + N_REASONS] += octets
        return self._end(d, Reason.FORWARDED, n, link)

    def _too_big(self, d: Direction, b: Buf, off: int, tot: int) -> Result | None:
        if tot <= self._mtu:
            return None
        df = b[off + 6] & 0x40
        return self._end(d, Reason.FRAG_NEEDED if df else Reason.FRAGMENT)

    def _encapsulate(self, b: Buf, off: int, tot: int, endpoint: bytes, out: bytearray) -> None:
        """RFC 2473 5: the outer header; traffic class copied from the inner TOS (RFC 6040
        normal mode), flow label 0, hop limit from configuration."""
        tos = b[off + 1]
        out[0:4] = (0x60000000 | (tos << 20)).to_bytes(4, "big")
        out[4:6] = tot.to_bytes(2, "big")
        out[6] = NH_IPV4
        out[7] = self._hop_limit
        out[8:24] = self._local
        out[24:40] = endpoint
        out[40 : 40 + tot] = b[off : off + tot]

    def _outer(self, pkt: Buf) -> tuple[int, int, bytes, bool]:
        """Whole IPv6 packet: (reason, inner offset, outer source, outer CE)."""
        n = len(pkt)
        if n < IP6_LEN:
            return Reason.TRUNCATED, 0, b"", False
        if pkt[0] >> 4 != 6:
            return Reason.BAD_VERSION, 0, b"", False
        plen = _be16(pkt, 4)
        if IP6_LEN + plen > n:
            return Reason.TRUNCATED, 0, b"", False
        if IP6_LEN + plen != n:
            return Reason.BAD_LENGTH, 0, b"", False
        if pkt[24:40] != self._local:
            return Reason.NOT_FOR_US, 0, b"", False
        nh = pkt[6]
        off = IP6_LEN
        if nh == NH_DSTOPTS:
            # RFC 2473 4.1.1 / 6.6: the tunnel encapsulation limit arrives in one of these
            if off + 2 > n:
                return Reason.TRUNCATED, 0, b"", False
            hlen = (pkt[off + 1] + 1) * 8
            if off + hlen > n:
                return Reason.TRUNCATED, 0, b"", False
            if not self._options_ok(pkt, off + 2, off + hlen):
                return Reason.BAD_OPTION, 0, b"", False
            nh = pkt[off]
            off += hlen
        if nh != NH_IPV4:
            return Reason.BAD_NEXT_HEADER, 0, b"", False
        ce = (pkt[1] >> 4) & ECN_CE == ECN_CE
        return Reason.FORWARDED, off, bytes(pkt[8:24]), ce

    @staticmethod
    def _options_ok(pkt: Buf, i: int, end: int) -> bool:
        while i < end:
            t = pkt[i]
            if t == OPT_PAD1:
                i += 1
                continue
            if i + 2 > end or i + 2 + pkt[i + 1] > end:
                return False
            if t == OPT_TUNNEL_ENCAP_LIMIT:
                if pkt[i + 1] != 1:
                    return False
            elif t != OPT_PADN and t >> 6:
                return False  # RFC 8200 4.2: the top two bits say "do not skip"
            i += 2 + pkt[i + 1]
        return True

    def _tunnel_in(
        self, src: bytes, b: Buf, off: int, avail: int, ce: bool, out: bytearray
    ) -> Result:
        raise NotImplementedError

    def from_tunnel(self, src: Buf, packet: Buf, out: bytearray) -> Result:
        """Raw protocol-4 socket input: outer source address and the inner IPv4 packet."""
        if len(src) != 16:
            return self._end(self._up, Reason.BAD_LENGTH)
        return self._tunnel_in(bytes(src), packet, 0, len(packet), False, out)

    def from_tunnel_ipv6(self, packet: Buf, out: bytearray) -> Result:
        """A whole IPv6 packet: the outer header is checked here, then as ``from_tunnel``."""
        reason, off, src, ce = self._outer(packet)
        if reason:
            return self._end(self._up, reason)
        return self._tunnel_in(src, packet, off, len(packet) - off, ce, out)

    def _ce_drop(self, ce: bool, b: Buf, off: int) -> bool:
        return ce and b[off + 1] & ECN_CE == 0

    def _device_read(self, fd: int, l2len: int, d: Direction) -> list[bytes] | None:
        """One read from a TAP/TUN: the packets it holds (None: nothing to read). With the
        virtio-net header, a super-packet is split by :func:`segment` (a bad one is counted)."""
        got = _read(fd, VNET_READ_MAX if self._vnet else READ_MAX)
        if got is None or not self._vnet:
            return got if got is None else [got]
        reason, packets = segment(got, l2len)
        if reason:
            self._end(d, reason)
        return packets

    def _device_writes(self, writes: list[tuple[int, bytes, int]]) -> int:
        """Do the writes of a :class:`_Coalescer`; packets written (a failed write counts one
        tx error per packet in it)."""
        sent = 0
        for fd, data, k in writes:
            if _write(fd, data):
                sent += k
            else:
                self._counters[self._up * ROW + N_REASONS + 1] += k
        return sent

    def _sent(self, ok: bool, d: Direction) -> int:
        if not ok:
            self._counters[d * ROW + N_REASONS + 1] += 1
        return int(ok)


def _run_batch(table: HoaTable, inp: Batch, out: Batch, step: object) -> int:
    """Run ``step(i, scratch) -> Result`` over an input batch into the output batch."""
    if out.size < len(inp) or out.stride < inp.stride + IP6_LEN:
        raise ValueError("output batch must hold as many slots, each 40 bytes longer")
    table._migrate(REHASH_PER_BATCH)
    scratch = bytearray(out.stride)
    forwarded = 0
    for i in range(len(inp)):
        v, reason, n, link = step(i, scratch)  # type: ignore[operator]
        out._set(i, bytes(scratch[:n]) if v == Verdict.FORWARD else b"", link, reason)
        forwarded += v == Verdict.FORWARD
    out._count = len(inp)
    return forwarded


class Dmpa(_Engine):
    """The MAG side: access links (TAPs) on one side, the tunnel to the DLMAP on the other."""

    _up = Direction.DOWNLINK  # tunnel input on the DMPA goes down to the MS

    def __init__(
        self,
        table: HoaTable,
        local: bytes,
        pseudo_mac: bytes,
        gateway: int,
        *,
        tunnel_mtu: int = 1460,
        hop_limit: int = 64,
        peers: Iterable[bytes] = (),
        vnet_hdr: bool = False,
        coalesce: bool = True,
    ) -> None:
        super().__init__(
            table,
            local,
            tunnel_mtu=tunnel_mtu,
            hop_limit=hop_limit,
            peers=peers,
            vnet_hdr=vnet_hdr,
            coalesce=coalesce,
        )
        if len(pseudo_mac) != 6 or not 0 <= gateway <= 0xFFFFFFFF:
            raise ValueError("pseudo_mac must be 6 bytes and gateway an IPv4 integer")
        self._mac = bytes(pseudo_mac)
        self._gateway = gateway

    def from_access(self, frame: Buf, link: int, out: bytearray) -> Result:
        """Classify a frame from access link ``link``; forward it encapsulated into ``out``."""
        d = Direction.UPLINK
        n = len(frame)
        if n < ETH_LEN:
            return self._end(d, Reason.TRUNCATED)
        dst = frame[0:6]
        broadcast = dst == ETH_BROADCAST
        if dst != self._mac and not broadcast:
            return self._end(d, Reason.NOT_FOR_US)
        ethertype = _be16(frame, 12)
        if ethertype == ETH_P_ARP:
            return self._end(d, Reason.ARP)
        if ethertype != ETH_P_IP:
            return self._end(d, Reason.BAD_ETHERTYPE)
        reason, tot = _ipv4(frame, ETH_LEN, n - ETH_LEN, False)  # Ethernet may pad
        if reason:
            return self._end(d, reason)
        if _udp_dport(frame, ETH_LEN, tot) == DHCP_SERVER_PORT:
            return self._end(d, Reason.DHCP)  # before any binding: how an MS gets its HoA
        if broadcast:
            return self._end(d, Reason.NOT_FOR_US)
        if frame[ETH_LEN + 9] == PROTO_ICMP and _be32(frame, ETH_LEN + 16) == self._gateway:
            return self._end(d, Reason.ICMP_GATEWAY)
        e = self.table._entry(_be32(frame, ETH_LEN + 12))
        if e is None:
            return self._end(d, Reason.UNKNOWN_MS)
        if e[2] != frame[6:12] or e[3] != link:
            return self._end(d, Reason.SPOOFED_SRC)
        if frame[ETH_LEN + 8] <= 1:
            return self._end(d, Reason.TTL_EXPIRED)
        big = self._too_big(d, frame, ETH_LEN, tot)
        if big is not None:
            return big
        if IP6_LEN + tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        self._encapsulate(frame, ETH_LEN, tot, bytes(e[1]), out)
        _decrement_ttl(out, IP6_LEN)
        _count_binding(e, tot)
        return self._forwarded(d, tot, IP6_LEN + tot, -1)

    def _tunnel_in(
        self, src: bytes, b: Buf, off: int, avail: int, ce: bool, out: bytearray
    ) -> Result:
        d = Direction.DOWNLINK
        reason, tot = _ipv4(b, off, avail, True)
        if reason:
            return self._end(d, reason)
        if src in self._peers and _udp_dport(b, off, tot) == DHCP_CLIENT_PORT:
            return self._end(d, Reason.DHCP)  # the DLMAP's answer to an MS not yet bound
        e = self.table._entry(_be32(b, off + 16))
        if e is None:
            return self._end(d, Reason.NO_BINDING)
        if e[1] != src:
            return self._end(d, Reason.SRC_NOT_BOUND)
        if self._ce_drop(ce, b, off):
            return self._end(d, Reason.ECN_NOT_ECT)
        if b[off + 8] <= 1:
            return self._end(d, Reason.TTL_EXPIRED)
        if ETH_LEN + tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        out[0:6] = bytes(e[2])
        out[6:12] = self._mac
        out[12:14] = ETH_P_IP.to_bytes(2, "big")
        out[ETH_LEN : ETH_LEN + tot] = b[off : off + tot]
        _decrement_ttl(out, ETH_LEN)
        if ce:
            _mark_ce(out, ETH_LEN)
        _count_binding(e, tot)
        return self._forwarded(d, tot, ETH_LEN + tot, int(e[3]))

    # batches in memory: one call per batch
    def access_batch(self, inp: Batch, out: Batch) -> int:
        """``from_access`` over every slot (the slot's link is the access link)."""
        return _run_batch(
            self.table, inp, out, lambda i, s: self.from_access(inp._data[i], inp._link[i], s)
        )

    def tunnel_batch(self, inp: Batch, out: Batch) -> int:
        """``from_tunnel`` over every slot (the slot's address is the outer source)."""
        return _run_batch(
            self.table, inp, out, lambda i, s: self.from_tunnel(inp._addr[i], inp._data[i], s)
        )

    # batched I/O
    def pump_access(
        self, tap_fd: int, link: int, tx_fd: int, budget: int = 64
    ) -> tuple[int, int, list[Punt]]:
        """Read frames from a TAP until EAGAIN or ``budget``; send the encapsulated ones on a
        raw IPPROTO_RAW socket. Returns (received, sent, punted); with the virtio-net header
        ``received`` counts reads (a super-packet is one) and ``sent`` the packets after
        :func:`segment` (so does ``pump_tun``)."""
        punts: list[Punt] = []
        self.table._migrate(REHASH_PER_BATCH)
        sent = rx = 0
        out = bytearray(IO_BUF)
        tx = _Sender(tx_fd)
        while rx < budget:
            frames = self._device_read(tap_fd, ETH_LEN, Direction.UPLINK)
            if frames is None:
                break
            rx += 1
            for frame in frames:
                v, reason, n, _ = self.from_access(frame, link, out)
                if v == Verdict.PUNT:
                    punts.append(Punt(reason, link, frame[6:12], frame))
                elif v == Verdict.FORWARD:
                    ok = tx.send(bytes(out[:n]), bytes(out[24:40]))
                    sent += self._sent(ok, Direction.UPLINK)
        tx.close()
        return rx, sent, punts

    def pump_tunnel(
        self, rx_fd: int, tap_fds: Sequence[int], budget: int = 64
    ) -> tuple[int, int, list[Punt]]:
        """Receive from a raw protocol-4 socket until EAGAIN or ``budget``; write the frames to
        ``tap_fds[link]``. Returns (received, sent, punted)."""
        punts: list[Punt] = []
        self.table._migrate(REHASH_PER_BATCH)
        sent = rx = 0
        out = bytearray(IO_BUF)
        co = _Coalescer(ETH_LEN) if self._coalesce else None
        sock = socket.socket(fileno=rx_fd)
        try:
            while rx < budget:
                got = _recv(sock)
                if got is None:
                    break
                rx += 1
                data, src, truncated = got
                if truncated:
                    self._end(Direction.DOWNLINK, Reason.TRUNCATED)
                    continue
                v, reason, n, link = self.from_tunnel(src, data, out)
                if v == Verdict.PUNT:
                    punts.append(Punt(reason, -1, src, data))
                elif v == Verdict.FORWARD:
                    if co is not None and 0 <= link < len(tap_fds):
                        sent += self._device_writes(co.add(tap_fds[link], out[:n]))
                    else:
                        sent += self._write_link(tap_fds, link, out, n)
            if co is not None and co.count:
                sent += self._device_writes([co.finish()])
        finally:
            sock.detach()
        return rx, sent, punts

    def _write_link(self, fds: Sequence[int], link: int, out: bytearray, n: int) -> int:
        ok = 0 <= link < len(fds) and _write(fds[link], self._vnet + bytes(out[:n]))
        return self._sent(ok, Direction.DOWNLINK)


class Dlmap(_Engine):
    """The LMA side: the TUN on the IPv4 side, tunnels to the DMPAs on the other."""

    _up = Direction.UPLINK

    def _tunnel_in(
        self, src: bytes, b: Buf, off: int, avail: int, ce: bool, out: bytearray
    ) -> Result:
        d = Direction.UPLINK
        reason, tot = _ipv4(b, off, avail, True)
        if reason:
            return self._end(d, reason)
        if _udp_dport(b, off, tot) == DHCP_SERVER_PORT:
            # before the binding check: an unregistered MS gets its address this way
            return self._end(d, Reason.DHCP if src in self._peers else Reason.UNKNOWN_PEER)
        e = self.table._entry(_be32(b, off + 12))
        if e is None or e[1] != src:
            return self._end(d, Reason.SRC_NOT_BOUND)
        if self._ce_drop(ce, b, off):
            return self._end(d, Reason.ECN_NOT_ECT)
        if tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        out[0:tot] = b[off : off + tot]
        if ce:
            _mark_ce(out, 0)
        _count_binding(e, tot)
        return self._forwarded(d, tot, tot, -1)

    def from_tun(self, packet: Buf, out: bytearray) -> Result:
        """IPv4 routed into the TUN -> encapsulated towards the DMPA serving its destination."""
        d = Direction.DOWNLINK
        reason, tot = _ipv4(packet, 0, len(packet), True)
        if reason:
            return self._end(d, reason)
        e = self.table._entry(_be32(packet, 16))
        if e is None:
            return self._end(d, Reason.NO_BINDING)
        big = self._too_big(d, packet, 0, tot)
        if big is not None:
            return big
        if IP6_LEN + tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        self._encapsulate(packet, 0, tot, bytes(e[1]), out)
        _count_binding(e, tot)
        return self._forwarded(d, tot, IP6_LEN + tot, -1)

    def tunnel_batch(self, inp: Batch, out: Batch) -> int:
        return _run_batch(
            self.table, inp, out, lambda i, s: self.from_tunnel(inp._addr[i], inp._data[i], s)
        )

    def tun_batch(self, inp: Batch, out: Batch) -> int:
        return _run_batch(self.table, inp, out, lambda i, s: self.from_tun(inp._data[i], s))

    def pump_tunnel(self, rx_fd: int, tun_fd: int, budget: int = 64) -> tuple[int, int, list[Punt]]:
        """Raw protocol-4 socket -> TUN. Returns (received, sent, punted)."""
        punts: list[Punt] = []
        self.table._migrate(REHASH_PER_BATCH)
        sent = rx = 0
        out = bytearray(IO_BUF)
        co = _Coalescer(0) if self._coalesce else None
        sock = socket.socket(fileno=rx_fd)
        try:
            while rx < budget:
                got = _recv(sock)
                if got is None:
                    break
                rx += 1
                data, src, truncated = got
                if truncated:
                    self._end(Direction.UPLINK, Reason.TRUNCATED)
                    continue
                v, reason, n, _ = self.from_tunnel(src, data, out)
                if v == Verdict.PUNT:
                    punts.append(Punt(reason, -1, src, data))
                elif v == Verdict.FORWARD:
                    if co is not None:
                        sent += self._device_writes(co.add(tun_fd, out[:n]))
                    else:
                        ok = _write(tun_fd, self._vnet + bytes(out[:n]))
                        sent += self._sent(ok, Direction.UPLINK)
            if co is not None and co.count:
                sent += self._device_writes([co.finish()])
        finally:
            sock.detach()
        return rx, sent, punts

    def pump_tun(self, tun_fd: int, tx_fd: int, budget: int = 64) -> tuple[int, int, list[Punt]]:
        """TUN -> encapsulated on a raw IPPROTO_RAW socket. Returns (received, sent, punted)."""
        punts: list[Punt] = []
        self.table._migrate(REHASH_PER_BATCH)
        sent = rx = 0
        out = bytearray(IO_BUF)
        tx = _Sender(tx_fd)
        while rx < budget:
            pkts = self._device_read(tun_fd, 0, Direction.DOWNLINK)
            if pkts is None:
                break
            rx += 1
            for pkt in pkts:
                v, reason, n, _ = self.from_tun(pkt, out)
                if v == Verdict.PUNT:
                    punts.append(Punt(reason, -1, b"", pkt))
                elif v == Verdict.FORWARD:
                    ok = tx.send(bytes(out[:n]), bytes(out[24:40]))
                    sent += self._sent(ok, Direction.DOWNLINK)
        tx.close()
        return rx, sent, punts


def _read(fd: int, size: int = READ_MAX) -> bytes | None:
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError as e:
        if e.errno == errno.EINTR:
            return None
        raise


def _write(fd: int, data: bytes) -> bool:
    try:
        return os.write(fd, data) == len(data)
    except OSError:
        return False


def _recv(sock: socket.socket) -> tuple[bytes, bytes, bool] | None:
    try:
        data, _, flags, addr = sock.recvmsg(IO_BUF, 0, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    src = socket.inet_pton(socket.AF_INET6, addr[0].split("%")[0])
    return data, src, bool(flags & socket.MSG_TRUNC)


class _Sender:
    """Header-included IPv6 sends on an IPPROTO_RAW socket, to the outer destination."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)

    def send(self, packet: bytes, dst: bytes) -> bool:
        try:
            self._sock.sendto(packet, (socket.inet_ntop(socket.AF_INET6, dst), 0))
        except OSError:
            return False
        return True

    def close(self) -> None:
        self._sock.detach()
