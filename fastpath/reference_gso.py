"""TAP/TUN offload in the reference twin (the compiled twin's ``gso.pxi``): :func:`segment`
splits what a TAP/TUN with the virtio-net header gives into the packets the kernel would have
given without offloads; :class:`Coalescer` merges TCP segments into super-packets on the write
side, and :func:`segment` gives them back byte for byte."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from fastpath.common import (
    COALESCE_MAX,
    ETH_P_IP,
    ETH_P_IPV6,
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    IP6_LEN,
    PROTO_TCP,
    TCP_CWR,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    TCP_URG,
    VNET_F_NEEDS_CSUM,
    VNET_HDR_LEN,
    Reason,
)
from fastpath.reference_packet import Buf, be16, be32, checksum_ok, fold, sum16

VNET = struct.Struct("=BBHHHH")  # struct virtio_net_hdr, host byte order


def segment(buf: Buf, l2len: int) -> tuple[int, list[bytes]]:
    """What a TAP/TUN with ``IFF_VNET_HDR`` and ``TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 |
    TUN_F_TSO6)`` gave (``buf``: the virtio-net header, then the frame or packet), as the
    packets the kernel would have given without offloads: (``FORWARDED``, packets) or
    (``BAD_GSO``, []).

    ``l2len`` is the link header before IP: 14 on a TAP, 0 on a TUN. Without GSO, a
    partial checksum (``NEEDS_CSUM``: the field holds the pseudo-header sum) is completed over
    ``[csum_start, end)`` (0 becomes 0xFFFF, as ``skb_checksum_help`` does). A TCP/IPv4
    super-packet (``GSO_TCPV4``) is split as ``tcp_gso_segment`` and ``inet_gso_segment`` do:
    ``gso_size`` bytes of payload per segment, the headers copied, total length set, the IPv4
    ID + i, the sequence number + i * gso_size, FIN and PSH on the last segment only, CWR on the
    first only, both checksums computed whole. A TCP/IPv6 one (``GSO_TCPV6``, TCP right after
    the fixed header) likewise, as ``ipv6_gso_segment`` does: the payload length set, the TCP
    checksum over the IPv6 pseudo-header (RFC 8200 8.1); IPv6 has no ID or header checksum.
    Any other GSO type, or headers that are not those of the type (IPv4 + TCP, IPv6 + TCP),
    is ``BAD_GSO`` (only TSO4 and TSO6 are offered, so the kernel does not send them).
    """
    n = len(buf)
    if n < VNET_HDR_LEN:
        return Reason.BAD_GSO, []
    flags, gso_type, _, gso_size, csum_start, csum_offset = VNET.unpack_from(buf, 0)
    p = bytearray(buf[VNET_HDR_LEN:])
    m = len(p)
    if gso_type == GSO_NONE:
        if flags & VNET_F_NEEDS_CSUM:
            at = csum_start + csum_offset
            if at + 2 > m:
                return Reason.BAD_GSO, []
            c = ~sum16(p[csum_start:]) & 0xFFFF or 0xFFFF
            p[at : at + 2] = c.to_bytes(2, "big")
        return Reason.FORWARDED, [bytes(p)]
    kind = gso_type & ~GSO_ECN
    if kind not in (GSO_TCPV4, GSO_TCPV6) or gso_size == 0:
        return Reason.BAD_GSO, []
    ip = l2len
    v6 = kind == GSO_TCPV6
    if v6:
        if m < ip + IP6_LEN or (ip and be16(p, 12) != ETH_P_IPV6) or p[ip] >> 4 != 6:
            return Reason.BAD_GSO, []
        if p[ip + 6] != PROTO_TCP:
            return Reason.BAD_GSO, []
        t = ip + IP6_LEN
        pseudo = sum16(p[ip + 8 : ip + 40]) + PROTO_TCP
    else:
        if m < ip + 20 or (ip and be16(p, 12) != ETH_P_IP) or p[ip] >> 4 != 4:
            return Reason.BAD_GSO, []
        ihl = (p[ip] & 0x0F) * 4
        t = ip + ihl
        if ihl < 20 or p[ip + 9] != PROTO_TCP:
            return Reason.BAD_GSO, []
        pseudo = sum16(p[ip + 12 : ip + 20]) + PROTO_TCP
        ip_id = be16(p, ip + 4)  # IPv4 only: IPv6 has no ID
    if m < t + 20:
        return Reason.BAD_GSO, []
    hdrs = t + (p[t + 12] >> 4) * 4
    if hdrs < t + 20 or m < hdrs:
        return Reason.BAD_GSO, []
    count = max(1, -(-(m - hdrs) // gso_size))
    seq = be32(p, t + 4)
    out = []
    for i in range(count):
        lo = hdrs + i * gso_size
        seg = p[:hdrs] + p[lo : min(m, lo + gso_size)]
        if v6:
            seg[ip + 4 : ip + 6] = (len(seg) - t).to_bytes(2, "big")
        else:
            seg[ip + 2 : ip + 6] = struct.pack("!HH", len(seg) - ip, (ip_id + i) & 0xFFFF)
            seg[ip + 10 : ip + 12] = b"\0\0"
            seg[ip + 10 : ip + 12] = (~sum16(seg[ip:t]) & 0xFFFF).to_bytes(2, "big")
        seg[t + 4 : t + 8] = ((seq + i * gso_size) & 0xFFFFFFFF).to_bytes(4, "big")
        if i < count - 1:
            seg[t + 13] &= ~(TCP_FIN | TCP_PSH) & 0xFF
        if i > 0:
            seg[t + 13] &= ~TCP_CWR & 0xFF
        seg[t + 16 : t + 18] = b"\0\0"
        s = fold(pseudo + len(seg) - t + sum16(seg[t:]))
        seg[t + 16 : t + 18] = (~s & 0xFFFF).to_bytes(2, "big")
        out.append(bytes(seg))
    return Reason.FORWARDED, out


def mergeable(p: Buf, l2: int) -> tuple[int, int, bool] | None:
    """(TCP header offset, payload offset, IPv6?) of a packet the coalescer may merge, else
    None: IPv4 (after ``l2`` bytes of Ethernet) whose total length is the packet's, not a
    fragment, or IPv6 whose payload length is the packet's with TCP right after the fixed
    header; TCP with a payload and none of SYN, RST, URG, CWR, every checksum valid (a merged
    packet's checksum is computed afresh, so a bad one must not be hidden in it)."""
    n, ip = len(p), l2
    if n < ip + 20:
        return None
    v6 = p[ip] >> 4 == 6
    if v6:
        if n < ip + IP6_LEN or (l2 and be16(p, 12) != ETH_P_IPV6) or p[ip + 6] != PROTO_TCP:
            return None
        t = ip + IP6_LEN
        if n < t + 20 or be16(p, ip + 4) != n - t:
            return None
        pseudo = sum16(p[ip + 8 : ip + 40])
    else:
        if (l2 and be16(p, 12) != ETH_P_IP) or p[ip] >> 4 != 4:
            return None
        ihl = (p[ip] & 0x0F) * 4
        t = ip + ihl
        if ihl < 20 or p[ip + 9] != PROTO_TCP or be16(p, ip + 6) & 0x3FFF or n < t + 20:
            return None
        if be16(p, ip + 2) != n - ip or not checksum_ok(p, ip, ihl):
            return None
        pseudo = sum16(p[ip + 12 : ip + 20])
    hdrs = t + (p[t + 12] >> 4) * 4
    if hdrs < t + 20 or hdrs >= n or p[t + 13] & (TCP_SYN | TCP_RST | TCP_URG | TCP_CWR):
        return None
    if fold(pseudo + PROTO_TCP + n - t + sum16(p[t:])) != 0xFFFF:
        return None
    return t, hdrs, v6


class Coalescer:
    """Write-side coalescing for a TAP/TUN with ``IFF_VNET_HDR``: consecutive in-order TCP
    segments of one flow, each ``mss`` bytes of payload but the last, become one super-packet
    (the inverse of :func:`segment`, which gives the segments back byte for byte).

    The super-packet is the first segment's headers with the payload of all: the IPv4 total
    length and header checksum (or the IPv6 payload length) for the whole, FIN and PSH of the
    last segment, the TCP checksum field holding the folded pseudo-header sum over the whole
    TCP length (the kernel's ``CHECKSUM_PARTIAL`` convention), and a virtio-net header
    ``NEEDS_CSUM`` + ``GSO_TCPV4`` (``GSO_TCPV6``), ``gso_size`` = mss, ``csum_start`` = the
    TCP header, ``csum_offset`` = 16. A segment merges when every header byte equals the
    first's except the IPv4 total length, ID (first + count), checksum (IPv6: the payload
    length), the TCP sequence number (the next byte expected), checksum, and FIN/PSH. The
    super-packet is written when a segment does not merge (before it), when it closes (a
    short segment, FIN or PSH, no room for one more) and at the end of a pump call. A lone
    segment is written as it came (virtio-net header all zero), so is anything else.

    ``add`` returns the writes to do, in order: (fd, virtio-net header + packet, packets)."""

    def __init__(self, l2: int) -> None:
        self.l2 = l2
        self.fd = -1
        self.buf = bytearray()
        self.count = 0
        self.t = self.hdrs = self.mss = self.seq_next = self.id_next = 0
        self.v6 = False

    def add(self, fd: int, p: Buf) -> list[tuple[int, bytes, int]]:
        out = []
        m = mergeable(p, self.l2)
        if self.count and not (m is not None and self._fits(fd, p, *m)):
            out.append(self.finish())
        if m is None:
            out.append((fd, bytes(VNET_HDR_LEN) + bytes(p), 1))
            return out
        t, hdrs, v6 = m
        k, flags = len(p) - hdrs, p[t + 13]
        if self.count:
            self.buf += p[hdrs:]
            self.buf[t + 13] |= flags & (TCP_FIN | TCP_PSH)
            self.count += 1
            closed = k < self.mss
        else:
            self.fd, self.buf, self.count = fd, bytearray(p), 1
            self.t, self.hdrs, self.mss, self.v6 = t, hdrs, k, v6
            self.seq_next = be32(p, t + 4)
            if not v6:  # the IPv4 ID; IPv6 has none
                self.id_next = be16(p, self.l2 + 4)
            closed = False
        self.seq_next = (self.seq_next + k) & 0xFFFFFFFF
        if not self.v6:
            self.id_next = (self.id_next + 1) & 0xFFFF
        if (
            closed
            or flags & (TCP_FIN | TCP_PSH)
            or len(self.buf) + self.mss > self.l2 + COALESCE_MAX
        ):
            out.append(self.finish())
        return out

    def _fits(self, fd: int, p: Buf, t: int, hdrs: int, v6: bool) -> bool:
        b, ip = self.buf, self.l2
        if (fd, v6, t, hdrs) != (self.fd, self.v6, self.t, self.hdrs) or len(p) - hdrs > self.mss:
            return False
        if v6:  # all but the payload length
            same_ip = p[: ip + 4] == b[: ip + 4] and p[ip + 6 : t + 4] == b[ip + 6 : t + 4]
        else:
            same_ip = (
                p[: ip + 2] == b[: ip + 2]
                and be16(p, ip + 4) == self.id_next
                and p[ip + 6 : ip + 10] == b[ip + 6 : ip + 10]
                and p[ip + 12 : t + 4] == b[ip + 12 : t + 4]
            )
        return (
            same_ip
            and be32(p, t + 4) == self.seq_next
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
        if self.v6:
            b[ip + 4 : ip + 6] = (len(b) - t).to_bytes(2, "big")
            pseudo = fold(sum16(b[ip + 8 : ip + 40]) + PROTO_TCP + len(b) - t)
        else:
            b[ip + 2 : ip + 4] = (len(b) - ip).to_bytes(2, "big")
            b[ip + 10 : ip + 12] = b"\0\0"
            b[ip + 10 : ip + 12] = (~sum16(b[ip:t]) & 0xFFFF).to_bytes(2, "big")
            pseudo = fold(sum16(b[ip + 12 : ip + 20]) + PROTO_TCP + len(b) - t)
        b[t + 16 : t + 18] = pseudo.to_bytes(2, "big")
        gso = GSO_TCPV6 if self.v6 else GSO_TCPV4
        hdr = VNET.pack(VNET_F_NEEDS_CSUM, gso, self.hdrs, self.mss, t, 16)
        return self.fd, hdr + bytes(b), count


def coalesce(packets: Iterable[Buf], l2len: int) -> list[bytes]:
    """What the pumps write to a TAP (``l2len`` 14) or TUN (0) with ``IFF_VNET_HDR`` for these
    packets, in order (see :class:`Coalescer`): each item is one write, virtio-net header
    first. ``segment(item, l2len)`` gives the packets back."""
    co = Coalescer(l2len)
    out = [data for p in packets for _, data, _ in co.add(0, p)]
    if co.count:
        out.append(co.finish()[1])
    return out
