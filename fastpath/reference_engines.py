"""The engines of the reference twin (the compiled twin's ``engines.pxi``): :class:`Dmpa` (the
MAG) and :class:`Dlmap` (the LMA) classify each packet, look its HoA up and encapsulate or
decapsulate it. Single-packet calls, batches in memory (:func:`reference_io.run_batch`) and the
pumps on fds (:func:`reference_io.pump`) all come down to the single-packet calls."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fastpath.common import (
    DHCP_CLIENT_PORT,
    DHCP_SERVER_PORT,
    ECN_CE,
    ETH_BROADCAST,
    ETH_LEN,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    ETH_P_PPPOE_DISC,
    ETH_P_PPPOE_SES,
    EXTRA_COUNTERS,
    IO_BUF,
    IP6_LEN,
    MAX_LINKS,
    ND_FIRST,
    ND_LAST,
    NH_DSTOPTS,
    NH_IPV4,
    NH_IPV6,
    PROTO_ICMP,
    PROTO_ICMPV6,
    VERDICT_OF,
    VNET_HDR_LEN,
    Direction,
    Punt,
    Reason,
    Result,
    counter_names,
)
from fastpath.reference_gso import Coalescer
from fastpath.reference_io import (
    Batch,
    DeviceSink,
    DeviceSource,
    RawSink,
    SocketSource,
    pump,
    run_batch,
)
from fastpath.reference_packet import (
    Buf,
    be16,
    be32,
    be64,
    decrement_ttl,
    ecn6,
    ipv4_check,
    ipv6_check,
    mark_ce,
    options_ok,
    traffic_class,
    udp_dport,
)
from fastpath.reference_pppoe import IP_AT, put_header, session_ipv4, too_big
from fastpath.reference_table import HoaTable, count_binding

# a counter row per direction: the reasons, then EXTRA_COUNTERS
N_REASONS = len(Reason)
C_BYTES = N_REASONS + EXTRA_COUNTERS.index("bytes")
C_TX_ERRORS = N_REASONS + EXTRA_COUNTERS.index("tx_errors")
ROW = N_REASONS + len(EXTRA_COUNTERS)


def _link_local(b: Buf, i: int) -> bool:
    """fe80::/10 at ``b[i:]``."""
    return b[i] == 0xFE and b[i + 1] & 0xC0 == 0x80


class _Engine:
    """What both roles share: configuration, counters, the outer IPv6 header."""

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
        # and the tunnel pumps merge TCP segments into super-packets on them (Coalescer)
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
        self._counters[d * ROW + C_BYTES] += octets
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
        plen = be16(pkt, 4)
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
            if not options_ok(pkt, off + 2, off + hlen):
                return Reason.BAD_OPTION, 0, b"", False
            nh = pkt[off]
            off += hlen
        if nh != NH_IPV4 and nh != NH_IPV6:
            return Reason.BAD_NEXT_HEADER, 0, b"", False
        # the inner version must be the next header's: 41 carries IPv6, 4 IPv4
        inner6 = off < n and pkt[off] >> 4 == 6
        if nh == NH_IPV6 and not inner6:
            return Reason.BAD_NEXT_HEADER, 0, b"", False
        if nh == NH_IPV4 and inner6:
            return Reason.BAD_VERSION, 0, b"", False
        ce = (pkt[1] >> 4) & ECN_CE == ECN_CE
        return Reason.FORWARDED, off, bytes(pkt[8:24]), ce

    def _encapsulate6(self, b: Buf, off: int, tot: int, endpoint: bytes, out: bytearray) -> None:
        """IPv6-in-IPv6 (RFC 2473, next header 41): the outer traffic class is the inner one."""
        out[0:4] = (0x60000000 | (traffic_class(b, off) << 20)).to_bytes(4, "big")
        out[4:6] = tot.to_bytes(2, "big")
        out[6] = NH_IPV6
        out[7] = self._hop_limit
        out[8:24] = self._local
        out[24:40] = endpoint
        out[40 : 40 + tot] = b[off : off + tot]

    def _ce_drop6(self, ce: bool, b: Buf, off: int) -> bool:
        return ce and ecn6(b, off) == 0

    def _tunnel_in(
        self, src: bytes, b: Buf, off: int, avail: int, ce: bool, out: bytearray
    ) -> Result:
        raise NotImplementedError

    def _tunnel_in6(
        self, src: bytes, b: Buf, off: int, avail: int, ce: bool, out: bytearray
    ) -> Result:
        raise NotImplementedError

    def _tunnel(self, src: bytes, b: Buf, off: int, avail: int, ce: bool, out: bytearray) -> Result:
        """The inner packet's version decides: IPv6 (next header 41) or IPv4 (4)."""
        if avail > 0 and b[off] >> 4 == 6:
            return self._tunnel_in6(src, b, off, avail, ce, out)
        return self._tunnel_in(src, b, off, avail, ce, out)

    def from_tunnel(self, src: Buf, packet: Buf, out: bytearray) -> Result:
        """Raw protocol-4 (or 41) socket input: outer source address and the inner packet."""
        if len(src) != 16:
            return self._end(self._up, Reason.BAD_LENGTH)
        return self._tunnel(bytes(src), packet, 0, len(packet), False, out)

    def from_tunnel_ipv6(self, packet: Buf, out: bytearray) -> Result:
        """A whole IPv6 packet: the outer header is checked here, then as ``from_tunnel``."""
        reason, off, src, ce = self._outer(packet)
        if reason:
            return self._end(self._up, reason)
        return self._tunnel(src, packet, off, len(packet) - off, ce, out)

    def tunnel_batch(self, inp: Batch, out: Batch) -> int:
        """``from_tunnel`` over every slot (the slot's address is the outer source)."""
        return run_batch(
            self.table, inp, out, lambda i, s: self.from_tunnel(inp._addr[i], inp._data[i], s)
        )

    def _ce_drop(self, ce: bool, b: Buf, off: int) -> bool:
        return ce and b[off + 1] & ECN_CE == 0

    # the pumps' steps (reference_io.pump)
    def _tx_errors(self, d: Direction, failed: int) -> None:
        """``failed`` forwarded packets could not be sent."""
        self._counters[d * ROW + C_TX_ERRORS] += failed

    def _device_sink(self, fds: int | Sequence[int], l2len: int) -> DeviceSink:
        """The TAP/TUN side of the tunnel pumps (``l2len``: 14 on a TAP, 0 on a TUN)."""
        return DeviceSink(fds, self._vnet, Coalescer(l2len) if self._coalesce else None)


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
        self._pppoe_links: set[int] = set()
        self._sessions: dict[int, int] = {}  # HoA -> PPPoE session id

    # PPPoE access links (reference_pppoe)
    def pppoe_link(self, link: int, on: bool = True) -> None:
        """Make access link ``link`` a PPPoE link (or a plain one again)."""
        if not 0 <= link < MAX_LINKS:
            raise ValueError("link must fit 16 bits")
        if on:
            self._pppoe_links.add(link)
        else:
            self._pppoe_links.discard(link)

    def pppoe_session(self, hoa: int, session: int) -> None:
        """The PPPoE session of the MS holding ``hoa`` on a PPPoE link (0: none)."""
        if not 0 <= hoa <= 0xFFFFFFFF or not 0 <= session <= 0xFFFF:
            raise ValueError("hoa must be 32 bits and session 16 bits")
        if session:
            self._sessions[hoa] = session
        else:
            self._sessions.pop(hoa, None)

    def _pppoe_access(self, frame: Buf, link: int, broadcast: bool, out: bytearray) -> Result:
        d = Direction.UPLINK
        if be16(frame, 12) == ETH_P_PPPOE_DISC:
            return self._end(d, Reason.ARP)
        reason, session, tot = session_ipv4(frame, len(frame))
        if reason:
            return self._end(d, reason)
        if broadcast:
            return self._end(d, Reason.NOT_FOR_US)
        e = self.table._entry(be32(frame, IP_AT + 12))
        if e is None or e[2] != frame[6:12] or e[3] != link:
            return self._end(d, Reason.SPOOFED_SRC)
        if self._sessions.get(int(e[0])) != session:
            return self._end(d, Reason.SPOOFED_SRC)
        if frame[IP_AT + 8] <= 1:
            return self._end(d, Reason.TTL_EXPIRED)
        big = self._too_big(d, frame, IP_AT, tot)
        if big is not None:
            return big
        if IP6_LEN + tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        self._encapsulate(frame, IP_AT, tot, bytes(e[1]), out)
        decrement_ttl(out, IP6_LEN)
        count_binding(e, tot)
        return self._forwarded(d, tot, IP6_LEN + tot, -1)

    def from_access(self, frame: Buf, link: int, out: bytearray) -> Result:
        """Classify a frame from access link ``link``; forward it encapsulated into ``out``."""
        d = Direction.UPLINK
        n = len(frame)
        if n < ETH_LEN:
            return self._end(d, Reason.TRUNCATED)
        dst = frame[0:6]
        broadcast = dst == ETH_BROADCAST
        ethertype = be16(frame, 12)
        if ethertype == ETH_P_IPV6:
            return self._access6(frame, link, out)
        if dst != self._mac and not broadcast:
            return self._end(d, Reason.NOT_FOR_US)
        if ethertype in (ETH_P_PPPOE_DISC, ETH_P_PPPOE_SES) and link in self._pppoe_links:
            return self._pppoe_access(frame, link, broadcast, out)
        if ethertype == ETH_P_ARP:
            return self._end(d, Reason.ARP)
        if ethertype != ETH_P_IP:
            return self._end(d, Reason.BAD_ETHERTYPE)
        reason, tot = ipv4_check(frame, ETH_LEN, n - ETH_LEN, False)  # Ethernet may pad
        if reason:
            return self._end(d, reason)
        if udp_dport(frame, ETH_LEN, tot) == DHCP_SERVER_PORT:
            return self._end(d, Reason.DHCP)  # before any binding: how an MS gets its HoA
        if broadcast:
            return self._end(d, Reason.NOT_FOR_US)
        if frame[ETH_LEN + 9] == PROTO_ICMP and be32(frame, ETH_LEN + 16) == self._gateway:
            return self._end(d, Reason.ICMP_GATEWAY)
        e = self.table._entry(be32(frame, ETH_LEN + 12))
        if e is None:
            return self._end(d, Reason.UNKNOWN_MS)
        if e[2] != frame[6:12] or e[3] != link:
            return self._end(d, Reason.SPOOFED_SRC)
        # The MS's own gateway (its profile's, seed 3.4) is answered here like the node's.
        if e[7] and frame[ETH_LEN + 9] == PROTO_ICMP and be32(frame, ETH_LEN + 16) == e[7]:
            return self._end(d, Reason.ICMP_GATEWAY)
        if frame[ETH_LEN + 8] <= 1:
            return self._end(d, Reason.TTL_EXPIRED)
        big = self._too_big(d, frame, ETH_LEN, tot)
        if big is not None:
            return big
        if IP6_LEN + tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        self._encapsulate(frame, ETH_LEN, tot, bytes(e[1]), out)
        decrement_ttl(out, IP6_LEN)
        count_binding(e, tot)
        return self._forwarded(d, tot, IP6_LEN + tot, -1)

    def _tunnel_in(
        self, src: bytes, b: Buf, off: int, avail: int, ce: bool, out: bytearray
    ) -> Result:
        d = Direction.DOWNLINK
        reason, tot = ipv4_check(b, off, avail, True)
        if reason:
            return self._end(d, reason)
        if src in self._peers and udp_dport(b, off, tot) == DHCP_CLIENT_PORT:
            return self._end(d, Reason.DHCP)  # the DLMAP's answer to an MS not yet bound
        e = self.table._entry(be32(b, off + 16))
        if e is None:
            return self._end(d, Reason.NO_BINDING)
        if e[1] != src:
            return self._end(d, Reason.SRC_NOT_BOUND)
        if self._ce_drop(ce, b, off):
            return self._end(d, Reason.ECN_NOT_ECT)
        if b[off + 8] <= 1:
            return self._end(d, Reason.TTL_EXPIRED)
        if int(e[3]) in self._pppoe_links:
            return self._pppoe_down(e, b, off, tot, ce, out)
        if ETH_LEN + tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        out[0:6] = bytes(e[2])
        out[6:12] = self._mac
        out[12:14] = ETH_P_IP.to_bytes(2, "big")
        out[ETH_LEN : ETH_LEN + tot] = b[off : off + tot]
        decrement_ttl(out, ETH_LEN)
        if ce:
            mark_ce(out, ETH_LEN)
        count_binding(e, tot)
        return self._forwarded(d, tot, ETH_LEN + tot, int(e[3]))

    def _pppoe_down(
        self, e: list[int | bytes], b: Buf, off: int, tot: int, ce: bool, out: bytearray
    ) -> Result:
        d = Direction.DOWNLINK
        session = self._sessions.get(int(e[0]))
        if session is None:
            return self._end(d, Reason.NO_BINDING)
        big = too_big(b, off, tot)
        if big:
            return self._end(d, big)
        if IP_AT + tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        put_header(out, bytes(e[2]), self._mac, session, tot)
        out[IP_AT : IP_AT + tot] = b[off : off + tot]
        decrement_ttl(out, IP_AT)
        if ce:
            mark_ce(out, IP_AT)
        count_binding(e, tot)
        return self._forwarded(d, tot, IP_AT + tot, int(e[3]))

    def _access6(self, frame: Buf, link: int, out: bytearray) -> Result:
        """A dual-stack MS's IPv6: ND for the router punts (as ICMP to the gateway), other
        multicast and link-local traffic stays on the link, the rest goes IPv6-in-IPv6 if its
        source is in the /64 bound to that MS (MAC and link: anti-spoofing of the prefix)."""
        d = Direction.UPLINK
        n = len(frame)
        multicast = frame[0] == 0x33 and frame[1] == 0x33
        if frame[0:6] != self._mac and not multicast:
            return self._end(d, Reason.NOT_FOR_US)
        reason, tot = ipv6_check(frame, ETH_LEN, n - ETH_LEN, False)  # Ethernet may pad
        if reason:
            return self._end(d, reason)
        ip = ETH_LEN
        if (
            frame[ip + 6] == PROTO_ICMPV6
            and tot > IP6_LEN
            and ND_FIRST <= frame[ip + 40] <= ND_LAST
        ):
            return self._end(d, Reason.ICMP_GATEWAY)
        if multicast or frame[ip + 24] == 0xFF or _link_local(frame, ip + 24):
            return self._end(d, Reason.NOT_FOR_US)
        if _link_local(frame, ip + 8):
            return self._end(d, Reason.NOT_FOR_US)
        e = self.table._prefix_entry(be64(frame, ip + 8))
        if e is None:
            return self._end(d, Reason.UNKNOWN_MS)
        if e[2] != frame[6:12] or e[3] != link:
            return self._end(d, Reason.SPOOFED_SRC)
        if frame[ip + 7] <= 1:
            return self._end(d, Reason.TTL_EXPIRED)
        if tot > self._mtu:
            return self._end(d, Reason.FRAG_NEEDED)  # IPv6 is never fragmented on the way
        if IP6_LEN + tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        self._encapsulate6(frame, ip, tot, bytes(e[1]), out)
        out[IP6_LEN + 7] -= 1
        count_binding(e, tot)
        return self._forwarded(d, tot, IP6_LEN + tot, -1)

    def _tunnel_in6(
        self, src: bytes, b: Buf, off: int, avail: int, ce: bool, out: bytearray
    ) -> Result:
        d = Direction.DOWNLINK
        reason, tot = ipv6_check(b, off, avail, True)
        if reason:
            return self._end(d, reason)
        e = self.table._prefix_entry(be64(b, off + 24))
        if e is None:
            return self._end(d, Reason.NO_BINDING)
        if e[1] != src:
            return self._end(d, Reason.SRC_NOT_BOUND)
        if self._ce_drop6(ce, b, off):
            return self._end(d, Reason.ECN_NOT_ECT)
        if b[off + 7] <= 1:
            return self._end(d, Reason.TTL_EXPIRED)
        if ETH_LEN + tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        out[0:6] = bytes(e[2])
        out[6:12] = self._mac
        out[12:14] = ETH_P_IPV6.to_bytes(2, "big")
        out[ETH_LEN : ETH_LEN + tot] = b[off : off + tot]
        out[ETH_LEN + 7] -= 1
        if ce:
            out[ETH_LEN + 1] |= ECN_CE << 4
        count_binding(e, tot)
        return self._forwarded(d, tot, ETH_LEN + tot, int(e[3]))

    # batches in memory: one call per batch
    def access_batch(self, inp: Batch, out: Batch) -> int:
        """``from_access`` over every slot (the slot's link is the access link)."""
        return run_batch(
            self.table, inp, out, lambda i, s: self.from_access(inp._data[i], inp._link[i], s)
        )

    # batched I/O
    def pump_access(
        self, tap_fd: int, link: int, tx_fd: int, budget: int = 64
    ) -> tuple[int, int, list[Punt]]:
        """Read frames from a TAP until EAGAIN or ``budget``; send the encapsulated ones on a
        raw IPPROTO_RAW socket. Returns (received, sent, punted); with the virtio-net header
        ``received`` counts reads (a super-packet is one) and ``sent`` the packets after
        :func:`segment` (so does ``pump_tun``)."""
        return pump(
            self,
            Direction.UPLINK,
            DeviceSource(tap_fd, ETH_LEN, self.vnet_hdr),
            lambda _, frame, out: self.from_access(frame, link, out),
            RawSink(tx_fd),
            link,
            budget,
        )

    def pump_tunnel(
        self, rx_fd: int, tap_fds: Sequence[int], budget: int = 64
    ) -> tuple[int, int, list[Punt]]:
        """Receive from a raw protocol-4 socket until EAGAIN or ``budget``; write the frames to
        ``tap_fds[link]``. Returns (received, sent, punted)."""
        return pump(
            self,
            Direction.DOWNLINK,
            SocketSource(rx_fd),
            self.from_tunnel,
            self._device_sink(tuple(tap_fds), ETH_LEN),
            -1,
            budget,
        )


class Dlmap(_Engine):
    """The LMA side: the TUN on the IPv4 side, tunnels to the DMPAs on the other."""

    _up = Direction.UPLINK

    def _tunnel_in(
        self, src: bytes, b: Buf, off: int, avail: int, ce: bool, out: bytearray
    ) -> Result:
        d = Direction.UPLINK
        reason, tot = ipv4_check(b, off, avail, True)
        if reason:
            return self._end(d, reason)
        if udp_dport(b, off, tot) == DHCP_SERVER_PORT:
            # before the binding check: an unregistered MS gets its address this way
            return self._end(d, Reason.DHCP if src in self._peers else Reason.UNKNOWN_PEER)
        e = self.table._entry(be32(b, off + 12))
        if e is None or e[1] != src:
            return self._end(d, Reason.SRC_NOT_BOUND)
        if self._ce_drop(ce, b, off):
            return self._end(d, Reason.ECN_NOT_ECT)
        if tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        out[0:tot] = b[off : off + tot]
        if ce:
            mark_ce(out, 0)
        count_binding(e, tot)
        return self._forwarded(d, tot, tot, -1)

    def _tunnel_in6(
        self, src: bytes, b: Buf, off: int, avail: int, ce: bool, out: bytearray
    ) -> Result:
        d = Direction.UPLINK
        reason, tot = ipv6_check(b, off, avail, True)
        if reason:
            return self._end(d, reason)
        e = self.table._prefix_entry(be64(b, off + 8))
        if e is None or e[1] != src:  # the inner source prefix is that DMPA's MS's
            return self._end(d, Reason.SRC_NOT_BOUND)
        if self._ce_drop6(ce, b, off):
            return self._end(d, Reason.ECN_NOT_ECT)
        if tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        out[0:tot] = b[off : off + tot]
        if ce:
            out[1] |= ECN_CE << 4
        count_binding(e, tot)
        return self._forwarded(d, tot, tot, -1)

    def _from_tun6(self, packet: Buf, out: bytearray) -> Result:
        """IPv6 routed into the TUN (a home network prefix) -> IPv6-in-IPv6 to its DMPA."""
        d = Direction.DOWNLINK
        reason, tot = ipv6_check(packet, 0, len(packet), True)
        if reason:
            return self._end(d, reason)
        e = self.table._prefix_entry(be64(packet, 24))
        if e is None:
            return self._end(d, Reason.NO_BINDING)
        if tot > self._mtu:
            return self._end(d, Reason.FRAG_NEEDED)
        if IP6_LEN + tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        self._encapsulate6(packet, 0, tot, bytes(e[1]), out)
        count_binding(e, tot)
        return self._forwarded(d, tot, IP6_LEN + tot, -1)

    def from_tun(self, packet: Buf, out: bytearray) -> Result:
        """IPv4 routed into the TUN -> encapsulated towards the DMPA serving its destination."""
        d = Direction.DOWNLINK
        if len(packet) > 0 and packet[0] >> 4 == 6:
            return self._from_tun6(packet, out)
        reason, tot = ipv4_check(packet, 0, len(packet), True)
        if reason:
            return self._end(d, reason)
        e = self.table._entry(be32(packet, 16))
        if e is None:
            # A DHCP server's answer to another relay's giaddr in the HoA network: the relay
            # learns from it (router.services.dhcp_relay, rule 1). Only here: nothing bound.
            if udp_dport(packet, 0, tot) == DHCP_SERVER_PORT:
                return self._end(d, Reason.DHCP)
            return self._end(d, Reason.NO_BINDING)
        big = self._too_big(d, packet, 0, tot)
        if big is not None:
            return big
        if IP6_LEN + tot > len(out):
            return self._end(d, Reason.NO_ROOM)
        self._encapsulate(packet, 0, tot, bytes(e[1]), out)
        count_binding(e, tot)
        return self._forwarded(d, tot, IP6_LEN + tot, -1)

    def tun_batch(self, inp: Batch, out: Batch) -> int:
        return run_batch(self.table, inp, out, lambda i, s: self.from_tun(inp._data[i], s))

    def pump_tunnel(self, rx_fd: int, tun_fd: int, budget: int = 64) -> tuple[int, int, list[Punt]]:
        """Raw protocol-4 socket -> TUN. Returns (received, sent, punted)."""
        return pump(
            self,
            Direction.UPLINK,
            SocketSource(rx_fd),
            self.from_tunnel,
            self._device_sink(tun_fd, 0),
            -1,
            budget,
        )

    def pump_tun(self, tun_fd: int, tx_fd: int, budget: int = 64) -> tuple[int, int, list[Punt]]:
        """TUN -> encapsulated on a raw IPPROTO_RAW socket. Returns (received, sent, punted)."""
        return pump(
            self,
            Direction.DOWNLINK,
            DeviceSource(tun_fd, 0, self.vnet_hdr),
            lambda _, packet, out: self.from_tun(packet, out),
            RawSink(tx_fd),
            -1,
            budget,
        )
