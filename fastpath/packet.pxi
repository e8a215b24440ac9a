# Packet helpers: byte order, checksums, the IPv4 and IPv6 option checks (reference_packet).
# Callers have checked that the bytes these read exist.

cdef inline uint32_t be16(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


cdef inline uint32_t be32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline void put16(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = (v >> 8) & 0xFF
    p[1] = v & 0xFF


cdef inline uint32_t fold(uint32_t s) noexcept nogil:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


cdef inline uint32_t sum16(const uint8_t *p, size_t n) noexcept nogil:
    """``reference_packet.sum16``: 32-bit loads in host order summed into 64 bits, folded, and
    swapped to network order at the end (RFC 1071: the sum does not depend on byte order)."""
    cdef uint64_t s = 0
    cdef uint32_t w
    cdef uint16_t h
    while n >= 4:
        memcpy(&w, p, 4)
        s += w
        p += 4
        n -= 4
    if n >= 2:
        memcpy(&h, p, 2)
        s += h
        p += 2
        n -= 2
    if n:
        s += p[0] if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ else <uint32_t>p[0] << 8
    s = (s & 0xFFFFFFFFUL) + (s >> 32)
    s = (s & 0xFFFFFFFFUL) + (s >> 32)
    w = fold(<uint32_t>s)
    if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__:
        w = ((w & 0xFF) << 8) | (w >> 8)
    return w


cdef inline void rewrite_word(uint8_t *ip, int at, uint32_t new) noexcept nogil:
    """Replace a 16-bit header word; RFC 1624 eqn. 3 for the checksum at offset 10."""
    cdef uint32_t old = be16(ip + at)
    cdef uint32_t cs = (~fold((~be16(ip + 10) & 0xFFFF) + (~old & 0xFFFF) + new)) & 0xFFFF
    ip[at] = new >> 8
    ip[at + 1] = new & 0xFF
    ip[10] = cs >> 8
    ip[11] = cs & 0xFF


cdef inline void decrement_ttl(uint8_t *ip) noexcept nogil:
    rewrite_word(ip, 8, ((<uint32_t>ip[8] - 1) << 8) | ip[9])


cdef inline void mark_ce(uint8_t *ip) noexcept nogil:
    rewrite_word(ip, 0, (<uint32_t>ip[0] << 8) | ip[1] | ECN_CE)


cdef inline int ipv4_check(const uint8_t *b, Py_ssize_t avail, bint exact,
                           uint32_t *tot) noexcept nogil:
    cdef uint32_t ihl, s = 0, i
    if avail < 20:
        return R_TRUNCATED
    if b[0] >> 4 != 4:
        return R_BAD_VERSION
    ihl = (b[0] & 0x0F) * 4
    if ihl < 20:
        return R_BAD_IHL
    tot[0] = be16(b + 2)
    if tot[0] < ihl:
        return R_BAD_LENGTH
    if tot[0] > avail:
        return R_TRUNCATED
    if exact and tot[0] != avail:
        return R_BAD_LENGTH
    for i in range(0, ihl, 2):
        s += be16(b + i)
    if fold(s) != 0xFFFF:
        return R_BAD_CHECKSUM
    return R_FORWARDED


cdef inline int udp_dport(const uint8_t *b, uint32_t tot) noexcept nogil:
    cdef uint32_t ihl = (b[0] & 0x0F) * 4
    if b[9] != PROTO_UDP or be16(b + 6) & 0x1FFF or ihl + 4 > tot:
        return -1
    return be16(b + ihl + 2)


cdef inline bint options_ok(const uint8_t *p, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    cdef uint8_t t
    while i < end:
        t = p[i]
        if t == OPT_PAD1:
            i += 1
            continue
        if i + 2 > end or i + 2 + p[i + 1] > end:
            return False
        if t == OPT_TUNNEL_ENCAP_LIMIT:
            if p[i + 1] != 1:
                return False
        elif t != OPT_PADN and t >> 6:
            return False
        i += 2 + p[i + 1]
    return True


cdef inline uint64_t be64(const uint8_t *p) noexcept nogil:
    return (<uint64_t>be32(p) << 32) | be32(p + 4)


cdef inline int ipv6_check(const uint8_t *b, Py_ssize_t avail, bint exact,
                           uint32_t *tot) noexcept nogil:
    if avail < IP6_LEN:
        return R_TRUNCATED
    if b[0] >> 4 != 6:
        return R_BAD_VERSION
    tot[0] = IP6_LEN + be16(b + 4)
    if tot[0] > avail:
        return R_TRUNCATED
    if exact and tot[0] != avail:
        return R_BAD_LENGTH
    return R_FORWARDED


cdef inline bint link_local(const uint8_t *a) noexcept nogil:
    return a[0] == 0xFE and a[1] & 0xC0 == 0x80
