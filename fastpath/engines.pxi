# The engines (reference_engines): Dmpa (the MAG) and Dlmap (the LMA) classify each packet,
# look its HoA up and encapsulate or decapsulate it; single-packet calls, batches in memory,
# and the pumps on fds (io.pxi).

cdef int _acquire(Py_buffer *v, int n, object a, object b, object c) except -1:
    """The per-packet calls take their buffers with the buffer protocol directly: a typed
    memoryview costs about 80 ns per argument to set up, more than the work itself. Up to three
    contiguous buffers, the last one writable; all or none."""
    cdef int i = 0, j
    try:
        for i in range(n):
            PyObject_GetBuffer(a if i == 0 else (b if i == 1 else c), &v[i],
                               PyBUF_WRITABLE if i == n - 1 else PyBUF_SIMPLE)
    except BaseException:
        for j in range(i):
            PyBuffer_Release(&v[j])
        raise
    return 0


cdef inline tuple _result(Py_buffer *v, int n, res_t r):
    cdef int i
    for i in range(n):
        PyBuffer_Release(&v[i])
    return (VERDICT[r.reason], r.reason, r.n, r.link)


cdef class _Engine:
    """What both roles share; its fields are declared in ``_fastpath.pxd``."""

    def __cinit__(self, *args, **kwargs):
        self.peers = <uint8_t *>_alloc(16, False)
        io_init(&self.io)

    def __dealloc__(self):
        PyMem_RawFree(self.peers)
        io_free(&self.io)

    def __init__(self, HoaTable table not None, local, *, int tunnel_mtu=1460,
                 int hop_limit=64, peers=(), bint vnet_hdr=False, bint coalesce=True):
        cdef bytes lb = bytes(local)
        if len(lb) != 16:
            raise ValueError("local must be a 16-byte IPv6 address")
        if not 68 <= tunnel_mtu <= IO_BUF - IP6_LEN - ETH_LEN:
            raise ValueError(f"tunnel_mtu must be 68..{IO_BUF - IP6_LEN - ETH_LEN}")
        if not 1 <= hop_limit <= 255:
            raise ValueError("hop_limit must be 1..255")
        self.table = table
        memcpy(self.local, <const char *>lb, 16)
        self.mtu = tunnel_mtu
        self.hop = hop_limit
        self.vnet = VNET_HDR_LEN if vnet_hdr else 0
        self.coal = vnet_hdr and coalesce
        for p in peers:
            self.add_peer(p)

    @property
    def tunnel_mtu(self):
        return self.mtu

    @property
    def vnet_hdr(self):
        return self.vnet != 0

    @property
    def coalesce(self):
        return self.coal

    def add_peer(self, addr):
        """A tunnel peer whose DHCP is accepted before any binding exists."""
        cdef bytes b = bytes(addr)
        cdef void *p
        if len(b) != 16:
            raise ValueError("peer must be a 16-byte IPv6 address")
        if self._is_peer(<const uint8_t *><const char *>b):
            return
        p = PyMem_RawRealloc(self.peers, (self.npeers + 1) * 16)
        if p == NULL:
            raise MemoryError()
        self.peers = <uint8_t *>p
        memcpy(self.peers + self.npeers * 16, <const char *>b, 16)
        self.npeers += 1

    def remove_peer(self, addr):
        cdef bytes b = bytes(addr)
        cdef int i
        if len(b) != 16:
            return
        for i in range(self.npeers):
            if memcmp(self.peers + i * 16, <const char *>b, 16) == 0:
                self.npeers -= 1
                memcpy(self.peers + i * 16, self.peers + self.npeers * 16, 16)
                return

    cdef bint _is_peer(self, const uint8_t *a) noexcept:
        cdef int i
        for i in range(self.npeers):
            if memcmp(self.peers + i * 16, a, 16) == 0:
                return True
        return False

    def counters(self):
        return dict(zip(counter_names(), [self.ctr[d][r] for d in range(2) for r in range(ROW)],
                        strict=True))

    def reset_counters(self):
        memset(self.ctr, 0, sizeof(self.ctr))

    cdef inline res_t _end(self, int d, int reason, int n=0, int link=-1) noexcept:
        self.ctr[d][reason] += 1
        return res_t(reason, n, link)

    cdef inline res_t _forwarded(self, int d, entry_t *e, uint32_t tot, int n,
                                 int link) noexcept:
        e.packets += 1
        e.octets += tot
        self.ctr[d][C_BYTES] += tot
        return self._end(d, R_FORWARDED, n, link)

    cdef inline int _too_big(self, const uint8_t *ip, uint32_t tot) noexcept:
        if tot <= self.mtu:
            return R_FORWARDED
        return R_FRAG_NEEDED if ip[6] & 0x40 else R_FRAGMENT

    cdef inline void _encapsulate(self, const uint8_t *ip, uint32_t tot, entry_t *e,
                                  uint8_t *out) noexcept:
        out[0] = 0x60 | (ip[1] >> 4)
        out[1] = (ip[1] & 0x0F) << 4
        out[2] = 0
        out[3] = 0
        out[4] = tot >> 8
        out[5] = tot & 0xFF
        out[6] = NH_IPV4
        out[7] = self.hop
        memcpy(out + 8, self.local, 16)
        memcpy(out + 24, self.table.eps + e.ep * 16, 16)
        memcpy(out + IP6_LEN, ip, tot)

    # IPv6-in-IPv6 (next header 41): a dual-stack MS's home network prefix
    cdef pentry_t *_prefix(self, const uint8_t *a) noexcept:
        """The prefix entry of the /64 at ``a``, or NULL."""
        return pt_find(&self.table.pt, be64(a))

    cdef res_t _forwarded6(self, int d, pentry_t *e, uint32_t tot, int n, int link) noexcept:
        e.packets += 1
        e.octets += tot
        self.ctr[d][C_BYTES] += tot
        return self._end(d, R_FORWARDED, n, link)

    cdef void _encapsulate6(self, const uint8_t *ip, uint32_t tot, const uint8_t *ep,
                            uint8_t *out) noexcept:
        out[0] = 0x60 | (ip[0] & 0x0F)  # the inner traffic class, as is
        out[1] = ip[1] & 0xF0
        out[2] = 0
        out[3] = 0
        out[4] = tot >> 8
        out[5] = tot & 0xFF
        out[6] = NH_IPV6
        out[7] = self.hop
        memcpy(out + 8, self.local, 16)
        memcpy(out + 24, ep, 16)
        memcpy(out + IP6_LEN, ip, tot)

    cdef res_t _tunnel_in6(self, const uint8_t *src, const uint8_t *b, Py_ssize_t avail,
                           bint ce, uint8_t *out, Py_ssize_t cap) noexcept:
        return self._end(self.up, R_NO_ROOM)

    cdef res_t _tunnel_in(self, const uint8_t *src, const uint8_t *b, Py_ssize_t avail,
                          bint ce, uint8_t *out, Py_ssize_t cap) noexcept:
        return self._end(self.up, R_NO_ROOM)

    cdef res_t _from_ipv6(self, const uint8_t *p, Py_ssize_t n, uint8_t *out,
                          Py_ssize_t cap) noexcept:
        cdef Py_ssize_t off = IP6_LEN, hlen
        cdef uint32_t nh
        if n < IP6_LEN:
            return self._end(self.up, R_TRUNCATED)
        if p[0] >> 4 != 6:
            return self._end(self.up, R_BAD_VERSION)
        if IP6_LEN + be16(p + 4) > n:
            return self._end(self.up, R_TRUNCATED)
        if IP6_LEN + be16(p + 4) != n:
            return self._end(self.up, R_BAD_LENGTH)
        if memcmp(p + 24, self.local, 16):
            return self._end(self.up, R_NOT_FOR_US)
        nh = p[6]
        if nh == NH_DSTOPTS:
            if off + 2 > n:
                return self._end(self.up, R_TRUNCATED)
            hlen = (p[off + 1] + 1) * 8
            if off + hlen > n:
                return self._end(self.up, R_TRUNCATED)
            if not options_ok(p, off + 2, off + hlen):
                return self._end(self.up, R_BAD_OPTION)
            nh = p[off]
            off += hlen
        if nh != NH_IPV4 and nh != NH_IPV6:
            return self._end(self.up, R_BAD_NEXT_HEADER)
        # the inner version must be the next header's: 41 carries IPv6, 4 IPv4
        if nh == NH_IPV6 and (off >= n or p[off] >> 4 != 6):
            return self._end(self.up, R_BAD_NEXT_HEADER)
        if nh == NH_IPV4 and off < n and p[off] >> 4 == 6:
            return self._end(self.up, R_BAD_VERSION)
        return self._tunnel_in(p + 8, p + off, n - off, (p[1] >> 4) & ECN_CE == ECN_CE, out,
                               cap)

    def from_tunnel(self, src, packet, out):
        cdef Py_buffer v[3]
        cdef res_t r
        _acquire(v, 3, src, packet, out)
        if v[0].len != 16:
            r = self._end(self.up, R_BAD_LENGTH)
        else:
            r = self._tunnel_in(<uint8_t *>v[0].buf, <uint8_t *>v[1].buf, v[1].len, False,
                                <uint8_t *>v[2].buf, v[2].len)
        return _result(v, 3, r)

    def from_tunnel_ipv6(self, packet, out):
        cdef Py_buffer v[2]
        _acquire(v, 2, packet, out, None)
        return _result(v, 2, self._from_ipv6(<uint8_t *>v[0].buf, v[0].len,
                                             <uint8_t *>v[1].buf, v[1].len))

    def tunnel_batch(self, Batch inp not None, Batch out not None):
        """``from_tunnel`` over every slot (the slot's address is the outer source)."""
        cdef int i, fwd = 0
        cdef res_t r
        _check_batches(inp, out)
        self.table._migrate(REHASH_PER_BATCH)
        self.table.prefetch(inp.buf + self.tkey, inp._stride, inp.count)
        for i in range(inp.count):
            r = self._tunnel_in(inp.addrs + i * 16, inp.buf + <size_t>i * inp._stride,
                                inp.lens[i], False, out.buf + <size_t>i * out._stride,
                                out._stride)
            fwd += _store(out, i, r)
        out.count = inp.count
        return fwd


cdef class Dmpa(_Engine):
    """The MAG side; see ``reference_engines.Dmpa``."""

    cdef uint8_t mac[6]
    cdef uint32_t gateway
    cdef uint8_t pppoe_map[MAX_LINKS >> 3]  # the PPPoE access links, one bit each
    cdef dict sessions  # HoA -> PPPoE session id (looked at on PPPoE links only)

    def __init__(self, HoaTable table not None, local, pseudo_mac, gateway, *,
                 int tunnel_mtu=1460, int hop_limit=64, peers=(), bint vnet_hdr=False,
                 bint coalesce=True):
        _Engine.__init__(self, table, local, tunnel_mtu=tunnel_mtu, hop_limit=hop_limit,
                         peers=peers, vnet_hdr=vnet_hdr, coalesce=coalesce)
        cdef bytes m = bytes(pseudo_mac)
        if len(m) != 6 or not 0 <= gateway <= 0xFFFFFFFF:
            raise ValueError("pseudo_mac must be 6 bytes and gateway an IPv4 integer")
        memcpy(self.mac, <const char *>m, 6)
        self.gateway = gateway
        self.up = DOWN
        self.tkey = 16
        self.io.co.l2 = ETH_LEN
        self.sessions = {}

    def pppoe_link(self, int link, bint on=True):
        """Make access link ``link`` a PPPoE link (or a plain one again)."""
        if not 0 <= link < MAX_LINKS:
            raise ValueError("link must fit 16 bits")
        if on:
            self.pppoe_map[link >> 3] |= 1 << (link & 7)
        else:
            self.pppoe_map[link >> 3] &= ~(1 << (link & 7))

    def pppoe_session(self, hoa, session):
        """The PPPoE session of the MS holding ``hoa`` on a PPPoE link (0: none)."""
        if not 0 <= hoa <= 0xFFFFFFFF or not 0 <= session <= 0xFFFF:
            raise ValueError("hoa must be 32 bits and session 16 bits")
        if session:
            self.sessions[int(hoa)] = int(session)
        else:
            self.sessions.pop(int(hoa), None)

    cdef inline bint _pppoe_on(self, uint32_t link) noexcept:
        return link < MAX_LINKS and self.pppoe_map[link >> 3] & (1 << (link & 7))

    cdef res_t _pppoe_access(self, const uint8_t *f, Py_ssize_t n, int link, bint broadcast,
                             uint8_t *out, Py_ssize_t cap) noexcept:
        cdef uint32_t session = 0, tot = 0
        cdef int reason
        cdef const uint8_t *ip = f + PPPOE_IP_AT
        cdef entry_t *e
        if be16(f + 12) == ETH_P_PPPOE_DISC:
            return self._end(UP, R_ARP)
        reason = session_ipv4(f, n, &session, &tot)
        if reason:
            return self._end(UP, reason)
        if broadcast:
            return self._end(UP, R_NOT_FOR_US)
        e = self.table.find(be32(ip + 12))
        if e == NULL or memcmp(e.mac, f + 6, 6) or e.link != link:
            return self._end(UP, R_SPOOFED_SRC)
        if self.sessions.get(e.key) != session:
            return self._end(UP, R_SPOOFED_SRC)
        if ip[8] <= 1:
            return self._end(UP, R_TTL_EXPIRED)
        reason = self._too_big(ip, tot)
        if reason:
            return self._end(UP, reason)
        if IP6_LEN + tot > cap:
            return self._end(UP, R_NO_ROOM)
        self._encapsulate(ip, tot, e, out)
        decrement_ttl(out + IP6_LEN)
        return self._forwarded(UP, e, tot, IP6_LEN + tot, -1)

    cdef res_t _pppoe_down(self, entry_t *e, const uint8_t *b, uint32_t tot, bint ce,
                           uint8_t *out, Py_ssize_t cap) noexcept:
        cdef object session = self.sessions.get(e.key)
        if session is None:
            return self._end(DOWN, R_NO_BINDING)
        if tot > PPPOE_MTU:
            return self._end(DOWN, R_FRAG_NEEDED if b[6] & 0x40 else R_FRAGMENT)
        if PPPOE_IP_AT + tot > cap:
            return self._end(DOWN, R_NO_ROOM)
        put_pppoe_header(out, e.mac, self.mac, <uint32_t>session, tot)
        memcpy(out + PPPOE_IP_AT, b, tot)
        decrement_ttl(out + PPPOE_IP_AT)
        if ce:
            mark_ce(out + PPPOE_IP_AT)
        return self._forwarded(DOWN, e, tot, PPPOE_IP_AT + tot, e.link)

    cdef res_t _access(self, const uint8_t *f, Py_ssize_t n, int link, uint8_t *out,
                       Py_ssize_t cap) noexcept:
        cdef bint broadcast
        cdef uint32_t tot, ethertype
        cdef int reason
        cdef const uint8_t *ip = f + ETH_LEN
        cdef entry_t *e
        if n < ETH_LEN:
            return self._end(UP, R_TRUNCATED)
        broadcast = memcmp(f, b"\xff\xff\xff\xff\xff\xff", 6) == 0
        ethertype = be16(f + 12)
        if ethertype == ETH_P_IPV6:
            return self._access6(f, n, link, out, cap)
        if memcmp(f, self.mac, 6) and not broadcast:
            return self._end(UP, R_NOT_FOR_US)
        if ((ethertype == ETH_P_PPPOE_DISC or ethertype == ETH_P_PPPOE_SES)
                and self._pppoe_on(link)):
            return self._pppoe_access(f, n, link, broadcast, out, cap)
        if ethertype == ETH_P_ARP:
            return self._end(UP, R_ARP)
        if ethertype != ETH_P_IP:
            return self._end(UP, R_BAD_ETHERTYPE)
        reason = ipv4_check(ip, n - ETH_LEN, False, &tot)
        if reason:
            return self._end(UP, reason)
        if udp_dport(ip, tot) == DHCP_SERVER_PORT:
            return self._end(UP, R_DHCP)
        if broadcast:
            return self._end(UP, R_NOT_FOR_US)
        if ip[9] == PROTO_ICMP and be32(ip + 16) == self.gateway:
            return self._end(UP, R_ICMP_GATEWAY)
        e = self.table.find(be32(ip + 12))
        if e == NULL:
            return self._end(UP, R_UNKNOWN_MS)
        if memcmp(e.mac, f + 6, 6) or e.link != link:
            return self._end(UP, R_SPOOFED_SRC)
        # The MS's own gateway (its profile's, seed 3.4) is answered here like the node's.
        if ip[9] == PROTO_ICMP and self.table.gws[e.ep] and be32(ip + 16) == self.table.gws[e.ep]:
            return self._end(UP, R_ICMP_GATEWAY)
        if ip[8] <= 1:
            return self._end(UP, R_TTL_EXPIRED)
        reason = self._too_big(ip, tot)
        if reason:
            return self._end(UP, reason)
        if IP6_LEN + tot > cap:
            return self._end(UP, R_NO_ROOM)
        self._encapsulate(ip, tot, e, out)
        decrement_ttl(out + IP6_LEN)
        return self._forwarded(UP, e, tot, IP6_LEN + tot, -1)

    cdef res_t _access6(self, const uint8_t *f, Py_ssize_t n, int link, uint8_t *out,
                        Py_ssize_t cap) noexcept:
        cdef bint multicast = f[0] == 0x33 and f[1] == 0x33
        cdef const uint8_t *ip = f + ETH_LEN
        cdef uint32_t tot
        cdef int reason
        cdef pentry_t *e
        if memcmp(f, self.mac, 6) and not multicast:
            return self._end(UP, R_NOT_FOR_US)
        reason = ipv6_check(ip, n - ETH_LEN, False, &tot)
        if reason:
            return self._end(UP, reason)
        if ip[6] == PROTO_ICMPV6 and tot > IP6_LEN and ND_FIRST <= ip[40] <= ND_LAST:
            return self._end(UP, R_ICMP_GATEWAY)
        if multicast or ip[24] == 0xFF or link_local(ip + 24) or link_local(ip + 8):
            return self._end(UP, R_NOT_FOR_US)
        e = self._prefix(ip + 8)
        if e == NULL:
            return self._end(UP, R_UNKNOWN_MS)
        if memcmp(e.mac, f + 6, 6) or e.link != link:
            return self._end(UP, R_SPOOFED_SRC)
        if ip[7] <= 1:
            return self._end(UP, R_TTL_EXPIRED)
        if tot > self.mtu:
            return self._end(UP, R_FRAG_NEEDED)
        if IP6_LEN + tot > cap:
            return self._end(UP, R_NO_ROOM)
        self._encapsulate6(ip, tot, e.ep, out)
        out[IP6_LEN + 7] -= 1
        return self._forwarded6(UP, e, tot, IP6_LEN + tot, -1)

    cdef res_t _tunnel_in6(self, const uint8_t *src, const uint8_t *b, Py_ssize_t avail,
                           bint ce, uint8_t *out, Py_ssize_t cap) noexcept:
        cdef uint32_t tot
        cdef int reason = ipv6_check(b, avail, True, &tot)
        cdef pentry_t *e
        if reason:
            return self._end(DOWN, reason)
        e = self._prefix(b + 24)
        if e == NULL:
            return self._end(DOWN, R_NO_BINDING)
        if memcmp(e.ep, src, 16):
            return self._end(DOWN, R_SRC_NOT_BOUND)
        if ce and (b[1] >> 4) & ECN_CE == 0:
            return self._end(DOWN, R_ECN_NOT_ECT)
        if b[7] <= 1:
            return self._end(DOWN, R_TTL_EXPIRED)
        if ETH_LEN + tot > cap:
            return self._end(DOWN, R_NO_ROOM)
        memcpy(out, e.mac, 6)
        memcpy(out + 6, self.mac, 6)
        out[12] = ETH_P_IPV6 >> 8
        out[13] = ETH_P_IPV6 & 0xFF
        memcpy(out + ETH_LEN, b, tot)
        out[ETH_LEN + 7] -= 1
        if ce:
            out[ETH_LEN + 1] |= ECN_CE << 4
        return self._forwarded6(DOWN, e, tot, ETH_LEN + tot, e.link)

    cdef res_t _tunnel_in(self, const uint8_t *src, const uint8_t *b, Py_ssize_t avail,
                          bint ce, uint8_t *out, Py_ssize_t cap) noexcept:
        cdef uint32_t tot
        cdef int reason
        cdef entry_t *e
        if avail > 0 and b[0] >> 4 == 6:
            return self._tunnel_in6(src, b, avail, ce, out, cap)
        reason = ipv4_check(b, avail, True, &tot)
        if reason:
            return self._end(DOWN, reason)
        if udp_dport(b, tot) == DHCP_CLIENT_PORT and self._is_peer(src):
            return self._end(DOWN, R_DHCP)
        e = self.table.find(be32(b + 16))
        if e == NULL:
            return self._end(DOWN, R_NO_BINDING)
        if memcmp(self.table.eps + e.ep * 16, src, 16):
            return self._end(DOWN, R_SRC_NOT_BOUND)
        if ce and b[1] & ECN_CE == 0:
            return self._end(DOWN, R_ECN_NOT_ECT)
        if b[8] <= 1:
            return self._end(DOWN, R_TTL_EXPIRED)
        if self._pppoe_on(e.link):
            return self._pppoe_down(e, b, tot, ce, out, cap)
        if ETH_LEN + tot > cap:
            return self._end(DOWN, R_NO_ROOM)
        memcpy(out, e.mac, 6)
        memcpy(out + 6, self.mac, 6)
        out[12] = ETH_P_IP >> 8
        out[13] = ETH_P_IP & 0xFF
        memcpy(out + ETH_LEN, b, tot)
        decrement_ttl(out + ETH_LEN)
        if ce:
            mark_ce(out + ETH_LEN)
        return self._forwarded(DOWN, e, tot, ETH_LEN + tot, e.link)

    def from_access(self, frame, int link, out):
        cdef Py_buffer v[2]
        _acquire(v, 2, frame, out, None)
        return _result(v, 2, self._access(<uint8_t *>v[0].buf, v[0].len, link,
                                          <uint8_t *>v[1].buf, v[1].len))

    def access_batch(self, Batch inp not None, Batch out not None):
        """``from_access`` over every slot (the slot's link is the access link)."""
        cdef int i, fwd = 0
        cdef res_t r
        _check_batches(inp, out)
        self.table._migrate(REHASH_PER_BATCH)
        self.table.prefetch(inp.buf + ETH_LEN + 12, inp._stride, inp.count)
        for i in range(inp.count):
            r = self._access(inp.buf + <size_t>i * inp._stride, inp.lens[i], inp.links[i],
                             out.buf + <size_t>i * out._stride, out._stride)
            fwd += _store(out, i, r)
        out.count = inp.count
        return fwd

    def pump_access(self, int tap_fd, int link, int tx_fd, int budget=64):
        """Read a TAP until EAGAIN or ``budget`` frames; sendmmsg the encapsulated ones on an
        IPPROTO_RAW socket. Returns (received, sent, punted)."""
        cdef list punts = []
        cdef int sent = pump_read(self, tap_fd, budget, punts, link, tx_fd, True)
        return self.io.last_rx, sent, punts

    def pump_tunnel(self, int rx_fd, tap_fds, int budget=64):
        """recvmmsg on a raw protocol-4 socket until EAGAIN or ``budget``; write each frame to
        ``tap_fds[link]``. Returns (received, sent, punted)."""
        cdef list punts = []
        cdef int sent = pump_receive(self, rx_fd, budget, punts, tuple(tap_fds))
        return self.io.last_rx, sent, punts


cdef class Dlmap(_Engine):
    """The LMA side; see ``reference_engines.Dlmap``."""

    def __init__(self, HoaTable table not None, local, *, int tunnel_mtu=1460,
                 int hop_limit=64, peers=(), bint vnet_hdr=False, bint coalesce=True):
        _Engine.__init__(self, table, local, tunnel_mtu=tunnel_mtu, hop_limit=hop_limit,
                         peers=peers, vnet_hdr=vnet_hdr, coalesce=coalesce)
        self.up = UP
        self.tkey = 12

    cdef res_t _tunnel_in6(self, const uint8_t *src, const uint8_t *b, Py_ssize_t avail,
                           bint ce, uint8_t *out, Py_ssize_t cap) noexcept:
        cdef uint32_t tot
        cdef int reason = ipv6_check(b, avail, True, &tot)
        cdef pentry_t *e
        if reason:
            return self._end(UP, reason)
        e = self._prefix(b + 8)
        if e == NULL or memcmp(e.ep, src, 16):
            return self._end(UP, R_SRC_NOT_BOUND)
        if ce and (b[1] >> 4) & ECN_CE == 0:
            return self._end(UP, R_ECN_NOT_ECT)
        if tot > cap:
            return self._end(UP, R_NO_ROOM)
        memcpy(out, b, tot)
        if ce:
            out[1] |= ECN_CE << 4
        return self._forwarded6(UP, e, tot, tot, -1)

    cdef res_t _tun6(self, const uint8_t *b, Py_ssize_t n, uint8_t *out,
                     Py_ssize_t cap) noexcept:
        cdef uint32_t tot
        cdef int reason = ipv6_check(b, n, True, &tot)
        cdef pentry_t *e
        if reason:
            return self._end(DOWN, reason)
        e = self._prefix(b + 24)
        if e == NULL:
            return self._end(DOWN, R_NO_BINDING)
        if tot > self.mtu:
            return self._end(DOWN, R_FRAG_NEEDED)
        if IP6_LEN + tot > cap:
            return self._end(DOWN, R_NO_ROOM)
        self._encapsulate6(b, tot, e.ep, out)
        return self._forwarded6(DOWN, e, tot, IP6_LEN + tot, -1)

    cdef res_t _tunnel_in(self, const uint8_t *src, const uint8_t *b, Py_ssize_t avail,
                          bint ce, uint8_t *out, Py_ssize_t cap) noexcept:
        cdef uint32_t tot
        cdef int reason
        cdef entry_t *e
        if avail > 0 and b[0] >> 4 == 6:
            return self._tunnel_in6(src, b, avail, ce, out, cap)
        reason = ipv4_check(b, avail, True, &tot)
        if reason:
            return self._end(UP, reason)
        if udp_dport(b, tot) == DHCP_SERVER_PORT:
            return self._end(UP, R_DHCP if self._is_peer(src) else R_UNKNOWN_PEER)
        e = self.table.find(be32(b + 12))
        if e == NULL or memcmp(self.table.eps + e.ep * 16, src, 16):
            return self._end(UP, R_SRC_NOT_BOUND)
        if ce and b[1] & ECN_CE == 0:
            return self._end(UP, R_ECN_NOT_ECT)
        if tot > cap:
            return self._end(UP, R_NO_ROOM)
        memcpy(out, b, tot)
        if ce:
            mark_ce(out)
        return self._forwarded(UP, e, tot, tot, -1)

    cdef res_t _tun(self, const uint8_t *b, Py_ssize_t n, uint8_t *out,
                    Py_ssize_t cap) noexcept:
        cdef uint32_t tot
        cdef int reason
        cdef entry_t *e
        if n > 0 and b[0] >> 4 == 6:
            return self._tun6(b, n, out, cap)
        reason = ipv4_check(b, n, True, &tot)
        if reason:
            return self._end(DOWN, reason)
        e = self.table.find(be32(b + 16))
        if e == NULL:
            # a DHCP server's answer to another relay's giaddr: the relay learns from it
            if udp_dport(b, tot) == DHCP_SERVER_PORT:
                return self._end(DOWN, R_DHCP)
            return self._end(DOWN, R_NO_BINDING)
        reason = self._too_big(b, tot)
        if reason:
            return self._end(DOWN, reason)
        if IP6_LEN + tot > cap:
            return self._end(DOWN, R_NO_ROOM)
        self._encapsulate(b, tot, e, out)
        return self._forwarded(DOWN, e, tot, IP6_LEN + tot, -1)

    def from_tun(self, packet, out):
        cdef Py_buffer v[2]
        _acquire(v, 2, packet, out, None)
        return _result(v, 2, self._tun(<uint8_t *>v[0].buf, v[0].len, <uint8_t *>v[1].buf,
                                       v[1].len))

    def tun_batch(self, Batch inp not None, Batch out not None):
        cdef int i, fwd = 0
        cdef res_t r
        _check_batches(inp, out)
        self.table._migrate(REHASH_PER_BATCH)
        self.table.prefetch(inp.buf + 16, inp._stride, inp.count)
        for i in range(inp.count):
            r = self._tun(inp.buf + <size_t>i * inp._stride, inp.lens[i],
                          out.buf + <size_t>i * out._stride, out._stride)
            fwd += _store(out, i, r)
        out.count = inp.count
        return fwd

    def pump_tunnel(self, int rx_fd, int tun_fd, int budget=64):
        """recvmmsg on a raw protocol-4 socket -> write to the TUN. (received, sent, punted)"""
        cdef list punts = []
        cdef int sent = pump_receive(self, rx_fd, budget, punts, tun_fd)
        return self.io.last_rx, sent, punts

    def pump_tun(self, int tun_fd, int tx_fd, int budget=64):
        """read the TUN -> sendmmsg encapsulated on an IPPROTO_RAW socket."""
        cdef list punts = []
        cdef int sent = pump_read(self, tun_fd, budget, punts, -1, tx_fd, False)
        return self.io.last_rx, sent, punts
