# TAP/TUN offload (reference_gso): a super-packet read with its virtio-net header split into
# the packets the kernel would have given without offloads, and, on the write side, TCP
# segments of one flow merged into one super-packet.

cdef gso_t gso_parse(uint8_t *v, Py_ssize_t n, int l2) noexcept nogil:
    """The virtio-net header at ``v`` (``n`` bytes read in all). Completes a partial checksum in
    place; for a TCP/IPv4 or TCP/IPv6 super-packet, what ``gso_segment`` needs."""
    cdef gso_t g
    cdef uint16_t f[4]  # hdr_len, gso_size, csum_start, csum_offset (host order)
    cdef uint8_t *p = v + VNET_HDR_LEN
    cdef Py_ssize_t at, ihl
    cdef uint32_t c
    cdef int kind
    memset(&g, 0, sizeof(g))
    g.reason = R_BAD_GSO
    if n < VNET_HDR_LEN:
        return g
    memcpy(f, v + 2, 8)
    g.m = n - VNET_HDR_LEN
    if v[1] == GSO_NONE:
        if v[0] & VNET_F_NEEDS_CSUM:
            at = <Py_ssize_t>f[2] + f[3]
            if at + 2 > g.m:
                return g
            c = (~sum16(p + f[2], g.m - f[2])) & 0xFFFF
            put16(p + at, c if c else 0xFFFF)
        g.reason = R_FORWARDED
        return g
    kind = v[1] & ~GSO_ECN
    if (kind != GSO_TCPV4 and kind != GSO_TCPV6) or f[1] == 0:
        return g
    g.ip = l2
    g.v6 = kind == GSO_TCPV6
    if g.v6:
        if (g.m < g.ip + IP6_LEN or (l2 and be16(p + 12) != ETH_P_IPV6)
                or p[g.ip] >> 4 != 6 or p[g.ip + 6] != PROTO_TCP):
            return g
        g.t = g.ip + IP6_LEN
        g.pseudo = sum16(p + g.ip + 8, 32) + PROTO_TCP
    else:
        if g.m < g.ip + 20 or (l2 and be16(p + 12) != ETH_P_IP) or p[g.ip] >> 4 != 4:
            return g
        ihl = (p[g.ip] & 0x0F) * 4
        g.t = g.ip + ihl
        if ihl < 20 or p[g.ip + 9] != PROTO_TCP:
            return g
        g.ip_id = be16(p + g.ip + 4)
        g.pseudo = sum16(p + g.ip + 12, 8) + PROTO_TCP
    if g.m < g.t + 20:
        return g
    g.hdrs = g.t + (p[g.t + 12] >> 4) * 4
    if g.hdrs < g.t + 20 or g.m < g.hdrs:
        return g
    g.mss = f[1]
    g.count = <int>((g.m - g.hdrs + g.mss - 1) // g.mss) if g.m > g.hdrs else 1
    g.seq = be32(p + g.t + 4)
    g.reason = R_FORWARDED
    return g


cdef Py_ssize_t gso_segment(const uint8_t *p, gso_t *g, int i, uint8_t *out) noexcept nogil:
    """Segment ``i`` of the super-packet ``p`` (after the virtio-net header) into ``out``;
    returns its length. ``reference_gso.segment`` says what changes in the copied headers."""
    cdef Py_ssize_t lo = g.hdrs + <Py_ssize_t>i * g.mss
    cdef Py_ssize_t k = g.m - lo if g.m - lo < g.mss else g.mss
    cdef Py_ssize_t n = g.hdrs + k
    cdef uint8_t *ip = out + g.ip
    cdef uint8_t *th = out + g.t
    memcpy(out, p, g.hdrs)
    memcpy(out + g.hdrs, p + lo, k)
    if g.v6:
        put16(ip + 4, <uint32_t>(n - g.t))
    else:
        put16(ip + 2, <uint32_t>(n - g.ip))
        put16(ip + 4, (g.ip_id + i) & 0xFFFF)
        put16(ip + 10, 0)
        put16(ip + 10, (~sum16(ip, g.t - g.ip)) & 0xFFFF)
    th[4] = ((g.seq + <uint32_t>i * g.mss) >> 24) & 0xFF
    th[5] = ((g.seq + <uint32_t>i * g.mss) >> 16) & 0xFF
    th[6] = ((g.seq + <uint32_t>i * g.mss) >> 8) & 0xFF
    th[7] = (g.seq + <uint32_t>i * g.mss) & 0xFF
    if i < g.count - 1:
        th[13] &= ~(TCP_FIN | TCP_PSH) & 0xFF
    if i > 0:
        th[13] &= ~TCP_CWR & 0xFF
    put16(th + 16, 0)
    put16(th + 16, (~fold(g.pseudo + <uint32_t>(n - g.t) + sum16(th, n - g.t))) & 0xFFFF)
    return n


# ---- write-side coalescing: see reference_gso.Coalescer ----

cdef Py_ssize_t co_mergeable(const uint8_t *p, Py_ssize_t n, int l2, Py_ssize_t *t,
                             bint *v6) noexcept nogil:
    """``reference_gso.mergeable``: the payload offset (``t[0]``: the TCP header; ``v6[0]``:
    TCP/IPv6), or -1."""
    cdef Py_ssize_t ip = l2, ihl, hdrs
    cdef uint32_t pseudo
    if n < ip + 20:
        return -1
    v6[0] = p[ip] >> 4 == 6
    if v6[0]:
        if n < ip + IP6_LEN or (l2 and be16(p + 12) != ETH_P_IPV6) or p[ip + 6] != PROTO_TCP:
            return -1
        t[0] = ip + IP6_LEN
        if n < t[0] + 20 or be16(p + ip + 4) != n - t[0]:
            return -1
        pseudo = sum16(p + ip + 8, 32)
    else:
        if (l2 and be16(p + 12) != ETH_P_IP) or p[ip] >> 4 != 4:
            return -1
        ihl = (p[ip] & 0x0F) * 4
        t[0] = ip + ihl
        if ihl < 20 or p[ip + 9] != PROTO_TCP or be16(p + ip + 6) & 0x3FFF or n < t[0] + 20:
            return -1
        if be16(p + ip + 2) != n - ip or fold(sum16(p + ip, ihl)) != 0xFFFF:
            return -1
        pseudo = sum16(p + ip + 12, 8)
    hdrs = t[0] + (p[t[0] + 12] >> 4) * 4
    if hdrs < t[0] + 20 or hdrs >= n or p[t[0] + 13] & (TCP_SYN | TCP_RST | TCP_URG | TCP_CWR):
        return -1
    if fold(pseudo + PROTO_TCP + <uint32_t>(n - t[0]) + sum16(p + t[0], n - t[0])) != 0xFFFF:
        return -1
    return hdrs


cdef bint co_fits(coal_t *c, int fd, const uint8_t *p, Py_ssize_t n, Py_ssize_t t,
                  Py_ssize_t hdrs, bint v6) noexcept nogil:
    cdef const uint8_t *b = c.buf + VNET_HDR_LEN
    cdef Py_ssize_t ip = c.l2
    if fd != c.fd or v6 != c.v6 or t != c.t or hdrs != c.hdrs or n - hdrs > c.mss:
        return False
    if v6:  # all but the payload length
        if memcmp(p, b, ip + 4) or memcmp(p + ip + 6, b + ip + 6, t + 4 - ip - 6):
            return False
    elif (memcmp(p, b, ip + 2) or be16(p + ip + 4) != c.id_next
            or memcmp(p + ip + 6, b + ip + 6, 4)
            or memcmp(p + ip + 12, b + ip + 12, t + 4 - ip - 12)):
        return False
    return (be32(p + t + 4) == c.seq_next
            and memcmp(p + t + 8, b + t + 8, 5) == 0
            and p[t + 13] & ~(TCP_FIN | TCP_PSH) & 0xFF == b[t + 13]
            and memcmp(p + t + 14, b + t + 14, 2) == 0
            and memcmp(p + t + 18, b + t + 18, hdrs - t - 18) == 0)


cdef int co_add(coal_t *c, int fd, const uint8_t *p, Py_ssize_t n) noexcept nogil:
    """Offer one packet: CO_MERGED, CO_FLUSH or CO_PLAIN (see the enum)."""
    cdef Py_ssize_t t = 0
    cdef bint v6 = False
    cdef Py_ssize_t hdrs = co_mergeable(p, n, c.l2, &t, &v6)
    cdef uint8_t flags
    cdef Py_ssize_t k = n - hdrs
    if c.count:
        if hdrs < 0 or not co_fits(c, fd, p, n, t, hdrs, v6):
            return CO_FLUSH
        flags = p[t + 13]
        memcpy(c.buf + VNET_HDR_LEN + c.n, p + hdrs, k)
        c.n += k
        c.buf[VNET_HDR_LEN + t + 13] |= flags & (TCP_FIN | TCP_PSH)
        c.count += 1
        c.closed = k < c.mss
    else:
        if hdrs < 0:
            return CO_PLAIN
        flags = p[t + 13]
        memcpy(c.buf + VNET_HDR_LEN, p, n)
        c.fd, c.n, c.count, c.t, c.hdrs, c.mss = fd, n, 1, t, hdrs, <uint32_t>k
        c.v6 = v6
        c.seq_next = be32(p + t + 4)
        if not v6:  # the IPv4 ID; IPv6 has none
            c.id_next = be16(p + c.l2 + 4)
        c.closed = False
    c.seq_next = c.seq_next + <uint32_t>k
    if not c.v6:
        c.id_next = (c.id_next + 1) & 0xFFFF
    if flags & (TCP_FIN | TCP_PSH) or c.n + c.mss > c.l2 + COALESCE_MAX:
        c.closed = True
    return CO_MERGED


cdef Py_ssize_t co_finish(coal_t *c) noexcept nogil:
    """Make the pending packet one write at ``c.buf``; returns its length. Nothing pending
    after."""
    cdef uint8_t *b = c.buf + VNET_HDR_LEN
    cdef uint8_t *ip = b + c.l2
    cdef uint16_t f[4]
    cdef int count = c.count
    c.count = 0
    c.closed = False
    memset(c.buf, 0, VNET_HDR_LEN)
    if count == 1:
        return VNET_HDR_LEN + c.n
    if c.v6:
        put16(ip + 4, <uint32_t>(c.n - c.t))
        put16(b + c.t + 16, fold(sum16(ip + 8, 32) + PROTO_TCP + <uint32_t>(c.n - c.t)))
    else:
        put16(ip + 2, <uint32_t>(c.n - c.l2))
        put16(ip + 10, 0)
        put16(ip + 10, (~sum16(ip, c.t - c.l2)) & 0xFFFF)
        put16(b + c.t + 16, fold(sum16(ip + 12, 8) + PROTO_TCP + <uint32_t>(c.n - c.t)))
    c.buf[0] = VNET_F_NEEDS_CSUM
    c.buf[1] = GSO_TCPV6 if c.v6 else GSO_TCPV4
    f[0] = <uint16_t>c.hdrs
    f[1] = <uint16_t>c.mss
    f[2] = <uint16_t>c.t
    f[3] = 16
    memcpy(c.buf + 2, f, 8)
    return VNET_HDR_LEN + c.n


cdef uint8_t *co_alloc() except NULL:
    return <uint8_t *>_alloc(VNET_HDR_LEN + ETH_LEN + COALESCE_MAX + 64, False)


def coalesce(packets, int l2len):
    """See ``reference_gso.coalesce``."""
    cdef coal_t c
    cdef list out = []
    cdef Py_buffer v
    cdef int a
    memset(&c, 0, sizeof(c))
    c.l2 = l2len
    c.buf = co_alloc()
    try:
        for pkt in packets:
            PyObject_GetBuffer(pkt, &v, PyBUF_SIMPLE)
            try:
                while True:
                    a = co_add(&c, 0, <uint8_t *>v.buf, v.len)
                    if a == CO_FLUSH:
                        out.append((<char *>c.buf)[:co_finish(&c)])
                        continue
                    if a == CO_PLAIN:
                        out.append(bytes(VNET_HDR_LEN) + (<char *>v.buf)[:v.len])
                    elif c.closed:
                        out.append((<char *>c.buf)[:co_finish(&c)])
                    break
            finally:
                PyBuffer_Release(&v)
        if c.count:
            out.append((<char *>c.buf)[:co_finish(&c)])
        return out
    finally:
        PyMem_RawFree(c.buf)


def segment(buf, int l2len):
    """See ``reference_gso.segment``."""
    cdef Py_buffer v
    cdef uint8_t *p
    cdef gso_t g
    cdef int i
    cdef list out = []
    cdef uint8_t *seg
    PyObject_GetBuffer(buf, &v, PyBUF_SIMPLE)
    try:
        p = <uint8_t *>_alloc(v.len + 1, False)
        memcpy(p, v.buf, v.len)
    finally:
        PyBuffer_Release(&v)
    try:
        g = gso_parse(p, v.len, l2len)
        if g.reason:
            return g.reason, []
        if g.count == 0:
            return R_FORWARDED, [(<char *>p + VNET_HDR_LEN)[:g.m]]
        seg = <uint8_t *>_alloc(g.m + 1, False)
        try:
            for i in range(g.count):
                out.append((<char *>seg)[:gso_segment(p + VNET_HDR_LEN, &g, i, seg)])
        finally:
            PyMem_RawFree(seg)
        return R_FORWARDED, out
    finally:
        PyMem_RawFree(p)
