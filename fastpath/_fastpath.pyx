# cython: language_level=3
"""The compiled fastpath. ``fastpath/reference.py`` is its specification: same classes, same
results, byte for byte. Read the reference first; this file only says what differs (C layout).

Typed memoryviews at the Python boundary, C structs and raw pointers inside. Every pointer access
below is preceded by a length check against the buffer it points into, which is why no
bounds checking is needed on the few memoryview index operations (``_ptr``).
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from libc.errno cimport EINTR, errno
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcmp, memcpy, memset
from posix.unistd cimport read, write

from fastpath.common import Binding, Punt, counter_names

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct iovec:
        void *iov_base
        size_t iov_len
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int recvmmsg(int fd, mmsghdr *v, unsigned int n, int flags, void *timeout)
    int sendmmsg(int fd, mmsghdr *v, unsigned int n, int flags)
    int MSG_DONTWAIT
    int MSG_TRUNC
    int AF_INET6


cdef extern from "<sys/mman.h>" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    void *mremap(void *old_address, size_t old_size, size_t new_size, int flags)
    int munmap(void *addr, size_t length)
    int madvise(void *addr, size_t length, int advice)
    void *MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MREMAP_MAYMOVE, MADV_DONTNEED


cdef extern from "<unistd.h>" nogil:
    long sysconf(int name)
    int _SC_PAGESIZE


cdef extern from *:
    void __builtin_prefetch(const void *addr) nogil
    uint32_t __builtin_bswap32(uint32_t x) nogil
    int __BYTE_ORDER__, __ORDER_LITTLE_ENDIAN__


cdef extern from "Python.h":
    int PyTraceMalloc_Track(unsigned int domain, uintptr_t ptr, size_t size)
    int PyTraceMalloc_Untrack(unsigned int domain, uintptr_t ptr)


cdef extern from "<netinet/in.h>" nogil:
    struct in6_addr:
        uint8_t s6_addr[16]
    struct sockaddr_in6:
        unsigned short sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id


# ---- the verdict / reason table: mirrors fastpath/common.py (tests/fastpath/test_table.py) ----

cdef enum:
    V_FORWARD = 0
    V_PUNT = 1
    V_DROP = 2


cdef enum:
    R_FORWARDED = 0
    R_ARP = 1
    R_DHCP = 2
    R_ICMP_GATEWAY = 3
    R_UNKNOWN_MS = 4
    R_TTL_EXPIRED = 5
    R_FRAG_NEEDED = 6
    R_FRAGMENT = 7
    R_TRUNCATED = 8
    R_BAD_ETHERTYPE = 9
    R_NOT_FOR_US = 10
    R_BAD_VERSION = 11
    R_BAD_IHL = 12
    R_BAD_LENGTH = 13
    R_BAD_CHECKSUM = 14
    R_SPOOFED_SRC = 15
    R_SRC_NOT_BOUND = 16
    R_NO_BINDING = 17
    R_UNKNOWN_PEER = 18
    R_BAD_NEXT_HEADER = 19
    R_BAD_OPTION = 20
    R_ECN_NOT_ECT = 21
    R_NO_ROOM = 22
    R_BAD_GSO = 23
    N_REASONS = 24


REASON_TABLE = (
    (R_FORWARDED, "FORWARDED", V_FORWARD),
    (R_ARP, "ARP", V_PUNT),
    (R_DHCP, "DHCP", V_PUNT),
    (R_ICMP_GATEWAY, "ICMP_GATEWAY", V_PUNT),
    (R_UNKNOWN_MS, "UNKNOWN_MS", V_PUNT),
    (R_TTL_EXPIRED, "TTL_EXPIRED", V_PUNT),
    (R_FRAG_NEEDED, "FRAG_NEEDED", V_PUNT),
    (R_FRAGMENT, "FRAGMENT", V_PUNT),
    (R_TRUNCATED, "TRUNCATED", V_DROP),
    (R_BAD_ETHERTYPE, "BAD_ETHERTYPE", V_DROP),
    (R_NOT_FOR_US, "NOT_FOR_US", V_DROP),
    (R_BAD_VERSION, "BAD_VERSION", V_DROP),
    (R_BAD_IHL, "BAD_IHL", V_DROP),
    (R_BAD_LENGTH, "BAD_LENGTH", V_DROP),
    (R_BAD_CHECKSUM, "BAD_CHECKSUM", V_DROP),
    (R_SPOOFED_SRC, "SPOOFED_SRC", V_DROP),
    (R_SRC_NOT_BOUND, "SRC_NOT_BOUND", V_DROP),
    (R_NO_BINDING, "NO_BINDING", V_DROP),
    (R_UNKNOWN_PEER, "UNKNOWN_PEER", V_DROP),
    (R_BAD_NEXT_HEADER, "BAD_NEXT_HEADER", V_DROP),
    (R_BAD_OPTION, "BAD_OPTION", V_DROP),
    (R_ECN_NOT_ECT, "ECN_NOT_ECT", V_DROP),
    (R_NO_ROOM, "NO_ROOM", V_DROP),
    (R_BAD_GSO, "BAD_GSO", V_DROP),
)


cdef uint8_t VERDICT[N_REASONS]
for _code, _name, _verdict in REASON_TABLE:
    VERDICT[_code] = _verdict


cdef enum:
    UP = 0
    DOWN = 1
    C_BYTES = N_REASONS
    C_TX_ERRORS = N_REASONS + 1
    ROW = N_REASONS + 2
    ETH_LEN = 14
    IP6_LEN = 40
    IO_BUF = 2048
    IO_BATCH = 64
    READ_MAX = 65536  # one read() from a TAP/TUN (scratch is IO_BATCH * IO_BUF)
    ECN_CE = 3
    # TAP/TUN offload (IFF_VNET_HDR): see reference.segment
    VNET_HDR_LEN = 10
    VNET_READ_MAX = 65536 + 64
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
    COALESCE_MAX = 65535
    CO_MERGED = 0  # co_add: taken (pending; write it now if closed)
    CO_FLUSH = 1  # write the pending super-packet first, then add again
    CO_PLAIN = 2  # not mergeable, nothing pending: write the packet as it is


cdef struct res_t:
    int reason
    int n
    int link


# ---- packet helpers (callers have checked that the bytes they read exist) ----

cdef inline uint32_t be16(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


cdef inline uint32_t be32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint32_t fold(uint32_t s) noexcept nogil:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


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


cdef inline uint32_t sum16(const uint8_t *p, size_t n) noexcept nogil:
    """``reference._sum16``: 32-bit loads in host order summed into 64 bits, folded, and
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


cdef inline void put16(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = (v >> 8) & 0xFF
    p[1] = v & 0xFF


cdef struct gso_t:
    int reason
    int count  # segments; 0: one packet, as read (its checksum completed)
    Py_ssize_t ip, t, hdrs, m
    uint32_t mss, ip_id, seq, pseudo


cdef gso_t gso_parse(uint8_t *v, Py_ssize_t n, int l2) noexcept nogil:
    """The virtio-net header at ``v`` (``n`` bytes read in all). Completes a partial checksum in
    place; for a TCP/IPv4 super-packet, what ``gso_segment`` needs."""
    cdef gso_t g
    cdef uint16_t f[4]  # hdr_len, gso_size, csum_start, csum_offset (host order)
    cdef uint8_t *p = v + VNET_HDR_LEN
    cdef Py_ssize_t at, ihl
    cdef uint32_t c
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
    if v[1] & ~GSO_ECN != GSO_TCPV4 or f[1] == 0:
        return g
    g.ip = l2
    if g.m < g.ip + 20 or (l2 and be16(p + 12) != 0x0800) or p[g.ip] >> 4 != 4:
        return g
    ihl = (p[g.ip] & 0x0F) * 4
    g.t = g.ip + ihl
    if ihl < 20 or p[g.ip + 9] != 6 or g.m < g.t + 20:
        return g
    g.hdrs = g.t + (p[g.t + 12] >> 4) * 4
    if g.hdrs < g.t + 20 or g.m < g.hdrs:
        return g
    g.mss = f[1]
    g.count = <int>((g.m - g.hdrs + g.mss - 1) // g.mss) if g.m > g.hdrs else 1
    g.ip_id = be16(p + g.ip + 4)
    g.seq = be32(p + g.t + 4)
    g.pseudo = sum16(p + g.ip + 12, 8) + 6
    g.reason = R_FORWARDED
    return g


cdef Py_ssize_t gso_segment(const uint8_t *p, gso_t *g, int i, uint8_t *out) noexcept nogil:
    """Segment ``i`` of the super-packet ``p`` (after the virtio-net header) into ``out``;
    returns its length. ``reference.segment`` says what changes in the copied headers."""
    cdef Py_ssize_t lo = g.hdrs + <Py_ssize_t>i * g.mss
    cdef Py_ssize_t k = g.m - lo if g.m - lo < g.mss else g.mss
    cdef Py_ssize_t n = g.hdrs + k
    cdef uint8_t *ip = out + g.ip
    cdef uint8_t *th = out + g.t
    memcpy(out, p, g.hdrs)
    memcpy(out + g.hdrs, p + lo, k)
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


# ---- write-side coalescing: see reference._Coalescer ----

cdef struct coal_t:
    uint8_t *buf  # virtio-net header, then the pending packet
    int l2, fd, count
    bint closed
    Py_ssize_t n, t, hdrs  # n: packet bytes after the virtio-net header
    uint32_t mss, seq_next, id_next


cdef Py_ssize_t co_mergeable(const uint8_t *p, Py_ssize_t n, int l2, Py_ssize_t *t) noexcept nogil:
    """``reference._mergeable``: the payload offset (``t[0]``: the TCP header), or -1."""
    cdef Py_ssize_t ip = l2, ihl, hdrs
    if n < ip + 20 or (l2 and be16(p + 12) != 0x0800) or p[ip] >> 4 != 4:
        return -1
    ihl = (p[ip] & 0x0F) * 4
    t[0] = ip + ihl
    if ihl < 20 or p[ip + 9] != 6 or be16(p + ip + 6) & 0x3FFF or n < t[0] + 20:
        return -1
    hdrs = t[0] + (p[t[0] + 12] >> 4) * 4
    if be16(p + ip + 2) != n - ip or hdrs < t[0] + 20 or hdrs >= n:
        return -1
    if p[t[0] + 13] & (TCP_SYN | TCP_RST | TCP_URG | TCP_CWR) or fold(sum16(p + ip, ihl)) != 0xFFFF:
        return -1
    if fold(sum16(p + ip + 12, 8) + 6 + <uint32_t>(n - t[0]) + sum16(p + t[0], n - t[0])) != 0xFFFF:
        return -1
    return hdrs


cdef bint co_fits(coal_t *c, int fd, const uint8_t *p, Py_ssize_t n, Py_ssize_t t,
                  Py_ssize_t hdrs) noexcept nogil:
    cdef const uint8_t *b = c.buf + VNET_HDR_LEN
    cdef Py_ssize_t ip = c.l2
    return (fd == c.fd and t == c.t and hdrs == c.hdrs and n - hdrs <= c.mss
            and memcmp(p, b, ip + 2) == 0
            and be16(p + ip + 4) == c.id_next
            and memcmp(p + ip + 6, b + ip + 6, 4) == 0
            and memcmp(p + ip + 12, b + ip + 12, t + 4 - ip - 12) == 0
            and be32(p + t + 4) == c.seq_next
            and memcmp(p + t + 8, b + t + 8, 5) == 0
            and p[t + 13] & ~(TCP_FIN | TCP_PSH) & 0xFF == b[t + 13]
            and memcmp(p + t + 14, b + t + 14, 2) == 0
            and memcmp(p + t + 18, b + t + 18, hdrs - t - 18) == 0)


cdef int co_add(coal_t *c, int fd, const uint8_t *p, Py_ssize_t n) noexcept nogil:
    """Offer one packet: CO_MERGED, CO_FLUSH or CO_PLAIN (see the enum)."""
    cdef Py_ssize_t t = 0
    cdef Py_ssize_t hdrs = co_mergeable(p, n, c.l2, &t)
    cdef uint8_t flags
    cdef Py_ssize_t k = n - hdrs
    if c.count:
        if hdrs < 0 or not co_fits(c, fd, p, n, t, hdrs):
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
        c.seq_next = be32(p + t + 4)
        c.id_next = be16(p + c.l2 + 4)
        c.closed = False
    c.seq_next = c.seq_next + <uint32_t>k
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
    put16(ip + 2, <uint32_t>(c.n - c.l2))
    put16(ip + 10, 0)
    put16(ip + 10, (~sum16(ip, c.t - c.l2)) & 0xFFFF)
    put16(b + c.t + 16, fold(sum16(ip + 12, 8) + 6 + <uint32_t>(c.n - c.t)))
    c.buf[0] = VNET_F_NEEDS_CSUM
    c.buf[1] = GSO_TCPV4
    f[0] = <uint16_t>c.hdrs
    f[1] = <uint16_t>c.mss
    f[2] = <uint16_t>c.t
    f[3] = 16
    memcpy(c.buf + 2, f, 8)
    return VNET_HDR_LEN + c.n


cdef uint8_t *co_alloc() except NULL:
    return <uint8_t *>_alloc(VNET_HDR_LEN + ETH_LEN + COALESCE_MAX + 64, False)


def coalesce(packets, int l2len):
    """See ``reference.coalesce``."""
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
    """See ``reference.segment``."""
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
    if b[9] != 17 or be16(b + 6) & 0x1FFF or ihl + 4 > tot:
        return -1
    return be16(b + ihl + 2)


cdef inline bint options_ok(const uint8_t *p, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    cdef uint8_t t
    while i < end:
        t = p[i]
        if t == 0:
            i += 1
            continue
        if i + 2 > end or i + 2 + p[i + 1] > end:
            return False
        if t == 4:
            if p[i + 1] != 1:
                return False
        elif t != 1 and t >> 6:
            return False
        i += 2 + p[i + 1]
    return True


@cython.boundscheck(False)
cdef inline const uint8_t *_ptr(const uint8_t[::1] v) noexcept:
    return &v[0] if v.shape[0] else <const uint8_t *>b""


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


# ---- the HoA table ----

cdef enum:
    MAX_ENTRIES = 0x40000000
    MAX_ENDPOINTS = 0xFFFF
    TOMB = 0x7FFFFFFF  # slot idx of a moved or unbound slot of the array being migrated
    # growth: old slots moved per bind/unbind and per batch call (mirrored in the reference)
    REHASH_PER_UPDATE = 8
    REHASH_PER_BATCH = 64
    RELEASE_CHUNK = 1 << 18  # migrated old slots go back to the kernel by 256 KiB
    PREFETCH_MIN_SLOTS = 1 << 15  # batches prefetch slots and entries from 256 KiB of slots


REHASH_STEPS = (REHASH_PER_UPDATE, REHASH_PER_BATCH)


cdef struct slot_t:
    uint32_t key
    uint32_t idx  # dense index + 1; 0 = empty


cdef struct entry_t:  # 32 bytes
    uint32_t key
    uint16_t link
    uint16_t ep  # index into the endpoint array (few distinct tunnel endpoints)
    uint8_t mac[6]
    uint8_t flags
    uint8_t pad
    uint64_t packets
    uint64_t octets


cdef inline uint32_t hash32(uint32_t k) noexcept nogil:
    k ^= k >> 16
    k *= 0x85EBCA6BU
    k ^= k >> 13
    k *= 0xC2B2AE35U
    k ^= k >> 16
    return k


# The HoA table's two big arrays are mappings of their own, not malloc blocks: a new slot array
# is zero without a memset, the entry array grows by mremap without a copy, and the pages of
# the migrated old slots go back to the kernel bit by bit. With malloc these depend on its
# mmap threshold, which moves: a 4 MiB realloc then copies (2.7 ms measured at 131,072
# binds). tracemalloc sees them in their own domain (PyTraceMalloc_Track).
cdef size_t PAGE = sysconf(_SC_PAGESIZE)
cdef unsigned int TRACE_DOMAIN = 0x4E4C4D4D  # "NLMM"


cdef inline size_t _pages(size_t n) noexcept nogil:
    return (n + PAGE - 1) & ~(PAGE - 1)


cdef void *_map(size_t n) except NULL:
    """``n`` zero bytes, populated on first touch."""
    cdef void *p = mmap(NULL, _pages(n), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0)
    if p == MAP_FAILED:
        raise MemoryError()
    PyTraceMalloc_Track(TRACE_DOMAIN, <uintptr_t>p, _pages(n))
    return p


cdef void *_remap(void *p, size_t old, size_t n) except NULL:
    """Grow a mapping: the kernel moves its page tables, the bytes stay where they are."""
    cdef void *q = mremap(p, _pages(old), _pages(n), MREMAP_MAYMOVE)
    if q == MAP_FAILED:
        raise MemoryError()
    PyTraceMalloc_Untrack(TRACE_DOMAIN, <uintptr_t>p)
    PyTraceMalloc_Track(TRACE_DOMAIN, <uintptr_t>q, _pages(n))
    return q


cdef void _unmap(void *p, size_t n) noexcept:
    if p != NULL:
        PyTraceMalloc_Untrack(TRACE_DOMAIN, <uintptr_t>p)
        munmap(p, _pages(n))


cdef void *_alloc(size_t n, bint zero) except NULL:
    cdef void *p = PyMem_RawCalloc(n, 1) if zero else PyMem_RawMalloc(n)
    if p == NULL:
        raise MemoryError()
    return p


cdef class HoaTable:
    """Open addressing (linear probing, backward-shift deletion) of 8-byte slots over a dense
    array of 32-byte entries; load factor at most 3/4. 1M entries: 2^21 slots (16 MiB) plus
    2^20 entries (32 MiB). Endpoints are interned: an entry holds a 16-bit index.

    Growth is incremental: the bind that crosses 3/4 only allocates the doubled slot array;
    the old one is then moved over REHASH_PER_UPDATE slots per bind/unbind and
    REHASH_PER_BATCH per batch call, in slot order. Meanwhile a key lives in exactly one of the
    two arrays (new binds go to the new one; a moved or unbound old slot becomes a tombstone,
    which probes step over), and lookups try the new array, then the old. The migrated part of
    the old array is never read again: its pages are returned to the kernel as the migration
    goes (freeing 8 MiB of touched pages at once takes about 1 ms)."""

    cdef slot_t *slots
    cdef uint32_t mask
    cdef slot_t *old  # the array being migrated, or NULL
    cdef uint32_t omask, cursor  # old slots [0, cursor) are migrated
    cdef uintptr_t released  # old array pages below this address are returned to the kernel
    cdef entry_t *entries
    cdef uint32_t n, cap
    cdef uint8_t *eps
    cdef uint32_t *eprefs
    cdef uint32_t neps, epcap
    cdef dict ep_index
    cdef list ep_free

    def __cinit__(self, capacity=1024):
        self.mask = 15
        self.cap = 16
        self.epcap = 16
        self.slots = <slot_t *>_map(16 * sizeof(slot_t))
        self.entries = <entry_t *>_map(16 * sizeof(entry_t))
        self.eps = <uint8_t *>_alloc(16 * 16, False)
        self.eprefs = <uint32_t *>_alloc(16 * sizeof(uint32_t), False)
        self.ep_index = {}
        self.ep_free = []
        self.reserve(max(0, capacity))

    def __dealloc__(self):
        _unmap(self.slots, (self.mask + 1) * sizeof(slot_t))
        if self.old != NULL:
            _unmap(self.old, (self.omask + 1) * sizeof(slot_t))
        _unmap(self.entries, self.cap * sizeof(entry_t))
        PyMem_RawFree(self.eps)
        PyMem_RawFree(self.eprefs)

    def reserve(self, Py_ssize_t want):
        """Grow to hold ``want`` entries without further allocation. Unlike the growth of
        ``bind`` this rehashes at once (a pause proportional to the size): for start-up."""
        if want > 0:
            self._grow(want, False)

    @property
    def rehash_pending(self):
        """Old slots not yet moved to the grown array (0: no growth in progress)."""
        return self.omask + 1 - self.cursor if self.old != NULL else 0

    cdef int _grow(self, Py_ssize_t want, bint incremental) except -1:
        cdef uint32_t dense = self.cap
        cdef uint64_t nslots = self.mask + 1
        cdef void *p
        if want > MAX_ENTRIES:
            raise OverflowError("too many entries")
        while dense < want:
            dense *= 2
        if dense != self.cap:
            self.entries = <entry_t *>_remap(self.entries, self.cap * sizeof(entry_t),
                                             dense * sizeof(entry_t))
            self.cap = dense
        while nslots * 3 < <uint64_t>want * 4:
            nslots *= 2
        if nslots != self.mask + 1:
            self._migrate(0xFFFFFFFF)  # a growth still in progress ends first
            p = _map(nslots * sizeof(slot_t))
            self.old = self.slots
            self.omask = self.mask
            self.cursor = 0
            self.released = 0
            self.slots = <slot_t *>p
            self.mask = <uint32_t>(nslots - 1)
            if not incremental:
                self._migrate(0xFFFFFFFF)
        return 0

    cdef void _migrate(self, uint32_t k) noexcept:
        """Move the next ``k`` old slots. Walking them in order makes the new positions
        advance almost monotonically: the copy streams through memory."""
        cdef uint32_t j, oldn, end
        cdef uintptr_t lo, hi
        if self.old == NULL:
            return
        oldn = self.omask + 1
        end = oldn if k >= oldn - self.cursor else self.cursor + k
        for j in range(self.cursor, end):
            if self.old[j].idx != 0 and self.old[j].idx != TOMB:
                self._place(self.old[j].key, self.old[j].idx)
                self.old[j].idx = TOMB
        self.cursor = end
        if end == oldn:
            _unmap(self.old, oldn * sizeof(slot_t))
            self.old = NULL
            self.cursor = 0
            return
        # the whole chunks of the migrated prefix
        lo = (<uintptr_t>self.old + RELEASE_CHUNK - 1) & ~(<uintptr_t>RELEASE_CHUNK - 1)
        hi = <uintptr_t>(self.old + end) & ~(<uintptr_t>RELEASE_CHUNK - 1)
        if self.released > lo:
            lo = self.released
        if hi > lo:
            madvise(<void *>lo, hi - lo, MADV_DONTNEED)  # advisory: if not, munmap does it
            self.released = hi

    cdef inline void _place(self, uint32_t key, uint32_t idx) noexcept:
        cdef uint32_t i = hash32(key) & self.mask
        while self.slots[i].idx:
            i = (i + 1) & self.mask
        self.slots[i].key = key
        self.slots[i].idx = idx

    cdef slot_t *_find_old(self, uint32_t key) noexcept:
        """Probe the old array, skipping its migrated prefix: no live key is there (a slot
        only ever goes from live to tombstone), so a probe that reaches it goes on at the
        cursor. Skipping can only lengthen a probe, never find a wrong key."""
        cdef uint32_t i = hash32(key) & self.omask
        cdef bint skipped = i < self.cursor
        if skipped:
            i = self.cursor
        while self.old[i].idx:
            if self.old[i].key == key and self.old[i].idx != TOMB:
                return &self.old[i]
            i = (i + 1) & self.omask
            if i == 0:
                if skipped:
                    return NULL  # the whole live part has been probed
                skipped = True
                i = self.cursor
        return NULL

    cdef inline slot_t *_slot(self, uint32_t key) noexcept:
        """The live slot of ``key`` in either array, or NULL."""
        cdef uint32_t i = hash32(key) & self.mask
        while self.slots[i].idx:
            if self.slots[i].key == key:
                return &self.slots[i]
            i = (i + 1) & self.mask
        return NULL if self.old == NULL else self._find_old(key)

    cdef inline entry_t *find(self, uint32_t key) noexcept:
        cdef slot_t *s = self._slot(key)
        return NULL if s == NULL else &self.entries[s.idx - 1]

    cdef void prefetch(self, const uint8_t *keys, size_t stride, int n) noexcept:
        """Before a batch: the HoAs of ``n`` packets (big-endian at ``keys + i * stride``).
        In a large table each lookup is two dependent cache misses (slot, then entry); issuing
        all the slot loads, then all the entry loads, overlaps them across the batch instead
        of paying them one packet after the other (1M entries, 64 random HoAs per batch: about
        190 -> 65 ns per packet). Only hints: the results do not change. Small tables stay in
        cache, where the two extra passes (about 5 ns per packet) would buy nothing."""
        cdef int i
        cdef slot_t *s
        if self.mask < PREFETCH_MIN_SLOTS - 1:
            return
        for i in range(n):
            __builtin_prefetch(&self.slots[hash32(be32(keys + i * stride)) & self.mask])
        for i in range(n):
            s = self._slot(be32(keys + i * stride))
            if s != NULL:
                __builtin_prefetch(&self.entries[s.idx - 1])

    cdef uint16_t _ep_acquire(self, bytes endpoint) except? 0xFFFF:
        cdef object idx = self.ep_index.get(endpoint)
        cdef uint32_t i
        cdef void *p
        if idx is None:
            if self.ep_free:
                i = self.ep_free.pop()
            else:
                if self.neps == MAX_ENDPOINTS:
                    raise OverflowError("at most 65535 distinct tunnel endpoints")
                if self.neps == self.epcap:
                    p = PyMem_RawRealloc(self.eps, self.epcap * 2 * 16)
                    if p == NULL:
                        raise MemoryError()
                    self.eps = <uint8_t *>p
                    p = PyMem_RawRealloc(self.eprefs, self.epcap * 2 * sizeof(uint32_t))
                    if p == NULL:
                        raise MemoryError()
                    self.eprefs = <uint32_t *>p
                    self.epcap *= 2
                i = self.neps
                self.neps += 1
            memcpy(self.eps + i * 16, <const char *>endpoint, 16)
            self.eprefs[i] = 0
            self.ep_index[endpoint] = i
        else:
            i = idx
        self.eprefs[i] += 1
        return i

    cdef void _ep_release(self, uint16_t i):
        self.eprefs[i] -= 1
        if self.eprefs[i] == 0:
            del self.ep_index[(<char *>self.eps + i * 16)[:16]]
            self.ep_free.append(i)

    def bind(self, hoa, endpoint, mac=bytes(6), int link=0, int flags=0):
        """Add or replace the binding of ``hoa``; counters survive a replacement (handover)."""
        cdef entry_t *e
        cdef uint16_t ep
        cdef bytes epb = bytes(endpoint), macb = bytes(mac)
        if not 0 <= hoa <= 0xFFFFFFFF:
            raise ValueError("hoa must be an unsigned 32-bit integer")
        if len(epb) != 16 or len(macb) != 6:
            raise ValueError("endpoint must be 16 bytes and mac 6 bytes")
        if not 0 <= link <= 0xFFFF or not 0 <= flags <= 0xFF:
            raise ValueError("link must fit 16 bits and flags 8 bits")
        self._migrate(REHASH_PER_UPDATE)
        e = self.find(hoa)
        if e == NULL:
            self._grow(self.n + 1, True)
            ep = self._ep_acquire(epb)
            e = &self.entries[self.n]
            self.n += 1
            self._place(hoa, self.n)
            e.key = hoa
            e.packets = 0
            e.octets = 0
        else:
            ep = self._ep_acquire(epb)
            self._ep_release(e.ep)
        e.ep = ep
        e.link = link
        e.flags = flags
        e.pad = 0
        memcpy(e.mac, <const char *>macb, 6)

    def unbind(self, hoa):
        cdef slot_t *s
        cdef uint32_t i, j, k, d, last
        if not 0 <= hoa <= 0xFFFFFFFF:
            return False
        self._migrate(REHASH_PER_UPDATE)
        s = self._slot(hoa)
        if s == NULL:
            return False
        d = s.idx - 1
        self._ep_release(self.entries[d].ep)
        if self.old != NULL and self.old <= s <= self.old + self.omask:
            s.idx = TOMB  # in the old array: probes must step over it
        else:
            # backward-shift deletion: no tombstones, probe chains stay short
            i = s - self.slots
            j = i
            while True:
                j = (j + 1) & self.mask
                if self.slots[j].idx == 0:
                    break
                k = hash32(self.slots[j].key) & self.mask
                if (i < k <= j) if i <= j else (i < k or k <= j):
                    continue
                self.slots[i] = self.slots[j]
                i = j
            self.slots[i].idx = 0
        last = self.n - 1
        if d != last:
            self.entries[d] = self.entries[last]
            self._slot(self.entries[d].key).idx = d + 1
        self.n -= 1
        return True

    cdef object _binding(self, entry_t *e):
        return Binding(e.key, (<char *>self.eps + e.ep * 16)[:16], (<char *>e.mac)[:6], e.link,
                       e.flags, e.packets, e.octets)

    def lookup(self, hoa):
        cdef entry_t *e
        if not 0 <= hoa <= 0xFFFFFFFF:
            return None
        e = self.find(hoa)
        return None if e == NULL else self._binding(e)

    def clear(self):
        self.n = 0
        self.neps = 0
        self.ep_index.clear()
        self.ep_free.clear()
        if self.old != NULL:  # a growth in progress is abandoned: nothing left to move
            _unmap(self.old, (self.omask + 1) * sizeof(slot_t))
            self.old = NULL
            self.cursor = 0
        # zero pages on next touch, and the memory goes back (memset if pages are locked)
        if madvise(self.slots, _pages((self.mask + 1) * sizeof(slot_t)), MADV_DONTNEED):
            memset(self.slots, 0, (self.mask + 1) * sizeof(slot_t))

    def memory_bytes(self):
        """Bytes the table has allocated: slot arrays and entries (whole pages; the old slot
        array counted whole until its migration ends), endpoints."""
        return (_pages((self.mask + 1) * sizeof(slot_t))
                + (_pages((self.omask + 1) * sizeof(slot_t)) if self.old != NULL else 0)
                + _pages(self.cap * sizeof(entry_t)) + self.epcap * (16 + sizeof(uint32_t)))

    def __len__(self):
        return self.n

    def __contains__(self, hoa):
        return isinstance(hoa, int) and 0 <= hoa <= 0xFFFFFFFF and self.find(hoa) != NULL

    def __iter__(self):
        return iter([self._binding(&self.entries[j]) for j in range(self.n)])


# ---- batches in memory ----

cdef class Batch:
    """See ``reference.Batch``: fixed-stride slots with length, address, link and reason."""

    cdef uint8_t *buf
    cdef uint8_t *addrs
    cdef uint32_t *lens
    cdef int32_t *links
    cdef uint8_t *reasons
    cdef int _size, _stride, count

    def __cinit__(self, int size=64, int stride=IO_BUF):
        if not 0 < size <= 4096 or not 64 <= stride <= 65535:
            raise ValueError("size must be 1..4096 and stride 64..65535")
        self._size = size
        self._stride = stride
        self.buf = <uint8_t *>_alloc(<size_t>size * stride, True)
        self.addrs = <uint8_t *>_alloc(<size_t>size * 16, True)
        self.lens = <uint32_t *>_alloc(size * sizeof(uint32_t), True)
        self.links = <int32_t *>_alloc(size * sizeof(int32_t), True)
        self.reasons = <uint8_t *>_alloc(size, True)

    def __dealloc__(self):
        PyMem_RawFree(self.buf)
        PyMem_RawFree(self.addrs)
        PyMem_RawFree(self.lens)
        PyMem_RawFree(self.links)
        PyMem_RawFree(self.reasons)

    @property
    def size(self):
        return self._size

    @property
    def stride(self):
        return self._stride

    def __len__(self):
        return self.count

    def clear(self):
        self.count = 0

    def append(self, const uint8_t[::1] data, const uint8_t[::1] addr=bytes(16), int link=0):
        cdef int i = self.count
        if i >= self._size or data.shape[0] > self._stride or addr.shape[0] != 16:
            raise ValueError("batch full, packet longer than the stride, or addr not 16 bytes")
        memcpy(self.buf + <size_t>i * self._stride, _ptr(data), data.shape[0])
        memcpy(self.addrs + i * 16, _ptr(addr), 16)
        self.lens[i] = data.shape[0]
        self.links[i] = link
        self.reasons[i] = 0
        self.count += 1

    cdef inline int _check(self, int i) except -1:
        if not 0 <= i < self.count:
            raise IndexError("batch slot out of range")
        return 0

    def data(self, int i):
        self._check(i)
        return (<char *>self.buf + <size_t>i * self._stride)[:self.lens[i]]

    def addr(self, int i):
        self._check(i)
        return (<char *>self.addrs + i * 16)[:16]

    def link(self, int i):
        self._check(i)
        return self.links[i]

    def reason(self, int i):
        self._check(i)
        return self.reasons[i]


# ---- the engines ----

cdef class _Engine:
    cdef readonly HoaTable table
    cdef uint8_t local[16]
    cdef uint32_t mtu
    cdef uint8_t hop
    cdef int up  # direction of tunnel input
    cdef int tkey  # offset of the HoA in tunnel input: inner destination (DMPA), source (DLMAP)
    cdef uint8_t *peers
    cdef int npeers
    cdef uint64_t ctr[2][ROW]
    # batched I/O buffers
    cdef uint8_t *rx
    cdef uint8_t *tx
    cdef mmsghdr *rxv
    cdef mmsghdr *txv
    cdef iovec *rxio
    cdef iovec *txio
    cdef sockaddr_in6 *rxname
    cdef sockaddr_in6 *txname
    cdef int last_rx  # received by the last pump call
    cdef int vnet  # VNET_HDR_LEN when the TAP/TUN fds carry a virtio-net header, else 0
    cdef uint8_t *seg  # one segment of a super-packet
    cdef bint coal  # the tunnel pumps merge TCP segments on TAP/TUN writes (needs vnet)
    cdef coal_t co  # its pending super-packet (co.l2: the device's link header)

    def __cinit__(self, *args, **kwargs):
        self.rx = <uint8_t *>_alloc(IO_BATCH * IO_BUF, True)  # prefetch() reads stale bytes
        self.tx = <uint8_t *>_alloc(IO_BATCH * IO_BUF, False)
        self.rxv = <mmsghdr *>_alloc(IO_BATCH * sizeof(mmsghdr), True)
        self.txv = <mmsghdr *>_alloc(IO_BATCH * sizeof(mmsghdr), True)
        self.rxio = <iovec *>_alloc(IO_BATCH * sizeof(iovec), True)
        self.txio = <iovec *>_alloc(IO_BATCH * sizeof(iovec), True)
        self.rxname = <sockaddr_in6 *>_alloc(IO_BATCH * sizeof(sockaddr_in6), True)
        self.txname = <sockaddr_in6 *>_alloc(IO_BATCH * sizeof(sockaddr_in6), True)
        self.peers = <uint8_t *>_alloc(16, False)
        self.seg = <uint8_t *>_alloc(VNET_READ_MAX, False)
        self.co.buf = co_alloc()

    def __dealloc__(self):
        PyMem_RawFree(self.rx)
        PyMem_RawFree(self.tx)
        PyMem_RawFree(self.rxv)
        PyMem_RawFree(self.txv)
        PyMem_RawFree(self.rxio)
        PyMem_RawFree(self.txio)
        PyMem_RawFree(self.rxname)
        PyMem_RawFree(self.txname)
        PyMem_RawFree(self.peers)
        PyMem_RawFree(self.seg)
        PyMem_RawFree(self.co.buf)

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
        out[6] = 4
        out[7] = self.hop
        memcpy(out + 8, self.local, 16)
        memcpy(out + 24, self.table.eps + e.ep * 16, 16)
        memcpy(out + IP6_LEN, ip, tot)

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
        if nh == 60:
            if off + 2 > n:
                return self._end(self.up, R_TRUNCATED)
            hlen = (p[off + 1] + 1) * 8
            if off + hlen > n:
                return self._end(self.up, R_TRUNCATED)
            if not options_ok(p, off + 2, off + hlen):
                return self._end(self.up, R_BAD_OPTION)
            nh = p[off]
            off += hlen
        if nh != 4:
            return self._end(self.up, R_BAD_NEXT_HEADER)
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

    # batched receive from a raw protocol-4 socket (the kernel strips the outer header)
    cdef int _recv(self, int fd, int want) noexcept:
        cdef int i, got
        for i in range(want):
            self.rxio[i].iov_base = self.rx + i * IO_BUF
            self.rxio[i].iov_len = IO_BUF
            self.rxv[i].msg_hdr.msg_iov = &self.rxio[i]
            self.rxv[i].msg_hdr.msg_iovlen = 1
            self.rxv[i].msg_hdr.msg_name = &self.rxname[i]
            self.rxv[i].msg_hdr.msg_namelen = sizeof(sockaddr_in6)
            self.rxv[i].msg_hdr.msg_flags = 0
        while True:
            got = recvmmsg(fd, self.rxv, want, MSG_DONTWAIT, NULL)
            if got >= 0 or errno != EINTR:
                return got if got > 0 else 0

    cdef int _tunnel_pump(self, int fd, int budget, list punts, object fds) except -1:
        """recvmmsg batches; each forwarded packet is written to ``fds`` (an int: one TUN;
        a tuple: TAPs by link). Returns packets sent."""
        cdef int rx = 0, got, i, sent = 0, dev
        cdef res_t r
        cdef const uint8_t *pkt
        cdef uint8_t *out = self.tx + 16  # room for a virtio-net header before it
        cdef int single = fds if isinstance(fds, int) else -1
        cdef Py_ssize_t nfds = 0 if single >= 0 else len(fds)
        self.table._migrate(REHASH_PER_BATCH)
        memset(out - VNET_HDR_LEN, 0, VNET_HDR_LEN)  # no offload asked: a plain packet
        while rx < budget:
            got = self._recv(fd, min(IO_BATCH, budget - rx))
            self.table.prefetch(self.rx + self.tkey, IO_BUF, got)
            for i in range(got):
                pkt = self.rx + i * IO_BUF
                if self.rxv[i].msg_hdr.msg_flags & MSG_TRUNC:
                    self._end(self.up, R_TRUNCATED)
                    continue
                r = self._tunnel_in(self.rxname[i].sin6_addr.s6_addr, pkt,
                                    self.rxv[i].msg_len, False, out, IO_BUF)
                if VERDICT[r.reason] == V_PUNT:
                    punts.append(Punt(r.reason, -1, (<char *>self.rxname[i].sin6_addr.s6_addr)[:16],
                                      (<char *>pkt)[:self.rxv[i].msg_len]))
                elif r.reason == R_FORWARDED:
                    if single >= 0:
                        dev = single
                    elif 0 <= r.link < nfds:
                        dev = fds[r.link]
                    else:
                        dev = -1
                    if dev >= 0 and self.coal:
                        sent += self._co_emit(dev, out, r.n)
                    elif dev >= 0 and write(dev, out - self.vnet,
                                            r.n + self.vnet) == r.n + self.vnet:
                        sent += 1
                    else:
                        self.ctr[self.up][C_TX_ERRORS] += 1
            rx += got
            if got < IO_BATCH:
                break
        if self.co.count:
            sent += self._co_write()
        self.last_rx = rx
        return sent

    cdef int _co_emit(self, int dev, uint8_t *p, Py_ssize_t n) noexcept:
        """One forwarded packet to ``dev`` through the coalescer (``p`` has a zeroed
        virtio-net header before it); returns packets written."""
        cdef int a, sent = 0
        while True:
            a = co_add(&self.co, dev, p, n)
            if a == CO_FLUSH:
                sent += self._co_write()
                continue
            if a == CO_PLAIN:
                if write(dev, p - VNET_HDR_LEN, n + VNET_HDR_LEN) == n + VNET_HDR_LEN:
                    sent += 1
                else:
                    self.ctr[self.up][C_TX_ERRORS] += 1
            elif self.co.closed:
                sent += self._co_write()
            return sent

    cdef int _co_write(self) noexcept:
        """Write the pending super-packet; packets written (a failure: one tx error each)."""
        cdef int count = self.co.count
        cdef Py_ssize_t n = co_finish(&self.co)
        if write(self.co.fd, self.co.buf, n) == n:
            return count
        self.ctr[self.up][C_TX_ERRORS] += count
        return 0

    # batched send of encapsulated packets on an IPPROTO_RAW socket (header included)
    cdef int _flush(self, int fd, int n, int d) noexcept:
        cdef int done = 0, k
        while done < n:
            k = sendmmsg(fd, self.txv + done, n - done, MSG_DONTWAIT)
            if k < 0:
                if errno == EINTR:
                    continue
                self.ctr[d][C_TX_ERRORS] += 1  # the first one failed: skip it, go on
                k = 1
                done += k
                continue
            done += k
        return 0

    cdef int _read_pump(self, int fd, int budget, list punts, int link, int tx_fd,
                        bint access) except -1:
        """read() until EAGAIN or budget; encapsulate into tx slots; sendmmsg per 64. With the
        virtio-net header, a super-packet is segmented first (``received`` counts reads)."""
        cdef int rx = 0, q = 0, sent = 0, d = UP if access else DOWN, errs, i
        cdef Py_ssize_t n
        cdef gso_t g
        cdef uint8_t *scratch = self.rx
        self.table._migrate(REHASH_PER_BATCH)
        errs = self.ctr[d][C_TX_ERRORS]
        while rx < budget:
            n = read(fd, scratch, VNET_READ_MAX if self.vnet else READ_MAX)
            if n < 0:
                if errno == EINTR:
                    continue
                break  # EAGAIN / EWOULDBLOCK, or an error: the loop's owner sees it next time
            rx += 1
            if not self.vnet:
                sent += self._queue(scratch, n, &q, punts, link, tx_fd, access)
                continue
            g = gso_parse(scratch, n, ETH_LEN if access else 0)
            if g.reason:
                self._end(d, g.reason)
            elif g.count == 0:
                sent += self._queue(scratch + VNET_HDR_LEN, g.m, &q, punts, link, tx_fd, access)
            else:
                for i in range(g.count):
                    n = gso_segment(scratch + VNET_HDR_LEN, &g, i, self.seg)
                    sent += self._queue(self.seg, n, &q, punts, link, tx_fd, access)
        if q:
            self._flush(tx_fd, q, d)
        self.last_rx = rx
        return sent - <int>(self.ctr[d][C_TX_ERRORS] - errs)

    cdef int _queue(self, const uint8_t *pkt, Py_ssize_t n, int *q, list punts, int link,
                    int tx_fd, bint access) except -1:
        """One frame (access) or packet (TUN): encapsulated into tx slot ``q[0]`` (sendmmsg
        when the slots are full) or punted. Returns 1 if queued."""
        cdef res_t r
        cdef int d = UP if access else DOWN
        cdef uint8_t *slot = self.tx + q[0] * IO_BUF
        if access:
            r = (<Dmpa>self)._access(pkt, n, link, slot, IO_BUF)
        else:
            r = (<Dlmap>self)._tun(pkt, n, slot, IO_BUF)
        if r.reason == R_FORWARDED:
            self.txio[q[0]].iov_base = slot
            self.txio[q[0]].iov_len = r.n
            memset(&self.txname[q[0]], 0, sizeof(sockaddr_in6))
            self.txname[q[0]].sin6_family = AF_INET6
            memcpy(self.txname[q[0]].sin6_addr.s6_addr, slot + 24, 16)
            self.txv[q[0]].msg_hdr.msg_name = &self.txname[q[0]]
            self.txv[q[0]].msg_hdr.msg_namelen = sizeof(sockaddr_in6)
            self.txv[q[0]].msg_hdr.msg_iov = &self.txio[q[0]]
            self.txv[q[0]].msg_hdr.msg_iovlen = 1
            q[0] += 1
            if q[0] == IO_BATCH:
                self._flush(tx_fd, q[0], d)
                q[0] = 0
            return 1
        if VERDICT[r.reason] == V_PUNT:
            punts.append(Punt(r.reason, link if access else -1,
                              (<char *>pkt)[6:12] if access else b"",
                              (<char *>pkt)[:n]))
        return 0


cdef inline int _check_batches(Batch inp, Batch out) except -1:
    if out._size < inp.count or out._stride < inp._stride + IP6_LEN:
        raise ValueError("output batch must hold as many slots, each 40 bytes longer")
    return 0


cdef inline int _store(Batch out, int i, res_t r) noexcept:
    out.reasons[i] = r.reason
    out.links[i] = r.link
    out.lens[i] = r.n if r.reason == R_FORWARDED else 0
    return r.reason == R_FORWARDED


cdef class Dmpa(_Engine):
    """The MAG side; see ``reference.Dmpa``."""

    cdef uint8_t mac[6]
    cdef uint32_t gateway

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
        self.co.l2 = ETH_LEN

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
        if memcmp(f, self.mac, 6) and not broadcast:
            return self._end(UP, R_NOT_FOR_US)
        ethertype = be16(f + 12)
        if ethertype == 0x0806:
            return self._end(UP, R_ARP)
        if ethertype != 0x0800:
            return self._end(UP, R_BAD_ETHERTYPE)
        reason = ipv4_check(ip, n - ETH_LEN, False, &tot)
        if reason:
            return self._end(UP, reason)
        if udp_dport(ip, tot) == 67:
            return self._end(UP, R_DHCP)
        if broadcast:
            return self._end(UP, R_NOT_FOR_US)
        if ip[9] == 1 and be32(ip + 16) == self.gateway:
            return self._end(UP, R_ICMP_GATEWAY)
        e = self.table.find(be32(ip + 12))
        if e == NULL:
            return self._end(UP, R_UNKNOWN_MS)
        if memcmp(e.mac, f + 6, 6) or e.link != link:
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

    cdef res_t _tunnel_in(self, const uint8_t *src, const uint8_t *b, Py_ssize_t avail,
                          bint ce, uint8_t *out, Py_ssize_t cap) noexcept:
        cdef uint32_t tot
        cdef int reason = ipv4_check(b, avail, True, &tot)
        cdef entry_t *e
        if reason:
            return self._end(DOWN, reason)
        if udp_dport(b, tot) == 68 and self._is_peer(src):
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
        if ETH_LEN + tot > cap:
            return self._end(DOWN, R_NO_ROOM)
        memcpy(out, e.mac, 6)
        memcpy(out + 6, self.mac, 6)
        out[12] = 0x08
        out[13] = 0x00
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
        cdef int sent = self._read_pump(tap_fd, budget, punts, link, tx_fd, True)
        return self.last_rx, sent, punts

    def pump_tunnel(self, int rx_fd, tap_fds, int budget=64):
        """recvmmsg on a raw protocol-4 socket until EAGAIN or ``budget``; write each frame to
        ``tap_fds[link]``. Returns (received, sent, punted)."""
        cdef list punts = []
        cdef int sent = self._tunnel_pump(rx_fd, budget, punts, tuple(tap_fds))
        return self.last_rx, sent, punts


cdef class Dlmap(_Engine):
    """The LMA side; see ``reference.Dlmap``."""

    def __init__(self, HoaTable table not None, local, *, int tunnel_mtu=1460,
                 int hop_limit=64, peers=(), bint vnet_hdr=False, bint coalesce=True):
        _Engine.__init__(self, table, local, tunnel_mtu=tunnel_mtu, hop_limit=hop_limit,
                         peers=peers, vnet_hdr=vnet_hdr, coalesce=coalesce)
        self.up = UP
        self.tkey = 12

    cdef res_t _tunnel_in(self, const uint8_t *src, const uint8_t *b, Py_ssize_t avail,
                          bint ce, uint8_t *out, Py_ssize_t cap) noexcept:
        cdef uint32_t tot
        cdef int reason = ipv4_check(b, avail, True, &tot)
        cdef entry_t *e
        if reason:
            return self._end(UP, reason)
        if udp_dport(b, tot) == 67:
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
        cdef int reason = ipv4_check(b, n, True, &tot)
        cdef entry_t *e
        if reason:
            return self._end(DOWN, reason)
        e = self.table.find(be32(b + 16))
        if e == NULL:
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
        cdef int sent = self._tunnel_pump(rx_fd, budget, punts, tun_fd)
        return self.last_rx, sent, punts

    def pump_tun(self, int tun_fd, int tx_fd, int budget=64):
        """read the TUN -> sendmmsg encapsulated on an IPPROTO_RAW socket."""
        cdef list punts = []
        cdef int sent = self._read_pump(tun_fd, budget, punts, -1, tx_fd, False)
        return self.last_rx, sent, punts
