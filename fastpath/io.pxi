# Batches (reference_io): in memory (Batch), and on fds: recvmmsg / sendmmsg on raw sockets,
# read / write on TAP/TUN devices, and the two pump loops every engine pump call runs.

@cython.boundscheck(False)
cdef inline const uint8_t *_ptr(const uint8_t[::1] v) noexcept:
    return &v[0] if v.shape[0] else <const uint8_t *>b""


# ---- batches in memory ----

cdef class Batch:
    """See ``reference_io.Batch``: fixed-stride slots with length, address, link and reason.
    Its fields are declared in ``_fastpath.pxd``."""

    def __cinit__(self, int size=64, int stride=IO_BUF):
        if not 0 < size <= 4096 or not 64 <= stride <= MAX_STRIDE:
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


cdef inline int _check_batches(Batch inp, Batch out) except -1:
    if out._size < inp.count or out._stride < inp._stride + IP6_LEN:
        raise ValueError("output batch must hold as many slots, each 40 bytes longer")
    return 0


cdef inline int _store(Batch out, int i, res_t r) noexcept:
    out.reasons[i] = r.reason
    out.links[i] = r.link
    out.lens[i] = r.n if r.reason == R_FORWARDED else 0
    return r.reason == R_FORWARDED


# ---- batches on fds ----

cdef int io_init(io_t *io) except -1:
    io.rx = <uint8_t *>_alloc(IO_BATCH * IO_BUF, True)  # prefetch() reads stale bytes
    io.tx = <uint8_t *>_alloc(IO_BATCH * IO_BUF, False)
    io.rxv = <mmsghdr *>_alloc(IO_BATCH * sizeof(mmsghdr), True)
    io.txv = <mmsghdr *>_alloc(IO_BATCH * sizeof(mmsghdr), True)
    io.rxio = <iovec *>_alloc(IO_BATCH * sizeof(iovec), True)
    io.txio = <iovec *>_alloc(IO_BATCH * sizeof(iovec), True)
    io.rxname = <sockaddr_in6 *>_alloc(IO_BATCH * sizeof(sockaddr_in6), True)
    io.txname = <sockaddr_in6 *>_alloc(IO_BATCH * sizeof(sockaddr_in6), True)
    io.seg = <uint8_t *>_alloc(VNET_READ_MAX, False)
    io.co.buf = co_alloc()
    return 0


cdef void io_free(io_t *io) noexcept:
    PyMem_RawFree(io.rx)
    PyMem_RawFree(io.tx)
    PyMem_RawFree(io.rxv)
    PyMem_RawFree(io.txv)
    PyMem_RawFree(io.rxio)
    PyMem_RawFree(io.txio)
    PyMem_RawFree(io.rxname)
    PyMem_RawFree(io.txname)
    PyMem_RawFree(io.seg)
    PyMem_RawFree(io.co.buf)


cdef int io_recv(io_t *io, int fd, int want) noexcept:
    """Batched receive from a raw protocol-4 socket (the kernel strips the outer header)."""
    cdef int i, got
    for i in range(want):
        io.rxio[i].iov_base = io.rx + i * IO_BUF
        io.rxio[i].iov_len = IO_BUF
        io.rxv[i].msg_hdr.msg_iov = &io.rxio[i]
        io.rxv[i].msg_hdr.msg_iovlen = 1
        io.rxv[i].msg_hdr.msg_name = &io.rxname[i]
        io.rxv[i].msg_hdr.msg_namelen = sizeof(sockaddr_in6)
        io.rxv[i].msg_hdr.msg_flags = 0
    while True:
        got = recvmmsg(fd, io.rxv, want, MSG_DONTWAIT, NULL)
        if got >= 0 or errno != EINTR:
            return got if got > 0 else 0


cdef inline void io_queue(io_t *io, int q, uint8_t *slot, Py_ssize_t n) noexcept:
    """Send slot ``q``: the ``n`` bytes at ``slot``, an IPv6 packet to its own destination."""
    io.txio[q].iov_base = slot
    io.txio[q].iov_len = n
    memset(&io.txname[q], 0, sizeof(sockaddr_in6))
    io.txname[q].sin6_family = AF_INET6
    memcpy(io.txname[q].sin6_addr.s6_addr, slot + 24, 16)
    io.txv[q].msg_hdr.msg_name = &io.txname[q]
    io.txv[q].msg_hdr.msg_namelen = sizeof(sockaddr_in6)
    io.txv[q].msg_hdr.msg_iov = &io.txio[q]
    io.txv[q].msg_hdr.msg_iovlen = 1


cdef int io_flush(io_t *io, int fd, int n) noexcept:
    """Batched send of the first ``n`` slots on an IPPROTO_RAW socket (header included).
    Returns how many failed: a failed one is skipped, the rest go on."""
    cdef int done = 0, k, failed = 0
    while done < n:
        k = sendmmsg(fd, io.txv + done, n - done, MSG_DONTWAIT)
        if k < 0:
            if errno == EINTR:
                continue
            failed += 1
            k = 1
        done += k
    return failed


# ---- whole datagrams with their peer (reference_io.MessageIO): the MH socket's batches ----

cdef class MessageIO:
    """See ``reference_io.MessageIO``: up to IO_BATCH datagrams a recvmmsg, sends in sendmmsg
    batches, on an AF_INET6 raw socket it does not own."""

    cdef int fd
    cdef uint8_t *rx
    cdef mmsghdr *rxv
    cdef mmsghdr *txv
    cdef iovec *rxio
    cdef iovec *txio
    cdef sockaddr_in6 *rxname
    cdef sockaddr_in6 *txname

    def __cinit__(self, int fd):
        if fd < 0:
            raise ValueError("fd must be an open socket")
        self.fd = fd
        self.rx = <uint8_t *>_alloc(IO_BATCH * IO_BUF, False)
        self.rxv = <mmsghdr *>_alloc(IO_BATCH * sizeof(mmsghdr), True)
        self.txv = <mmsghdr *>_alloc(IO_BATCH * sizeof(mmsghdr), True)
        self.rxio = <iovec *>_alloc(IO_BATCH * sizeof(iovec), True)
        self.txio = <iovec *>_alloc(IO_BATCH * sizeof(iovec), True)
        self.rxname = <sockaddr_in6 *>_alloc(IO_BATCH * sizeof(sockaddr_in6), True)
        self.txname = <sockaddr_in6 *>_alloc(IO_BATCH * sizeof(sockaddr_in6), True)
        cdef int i
        for i in range(IO_BATCH):
            self.rxio[i].iov_base = self.rx + i * IO_BUF
            self.rxio[i].iov_len = IO_BUF
            self.rxv[i].msg_hdr.msg_iov = &self.rxio[i]
            self.rxv[i].msg_hdr.msg_iovlen = 1
            self.rxv[i].msg_hdr.msg_name = &self.rxname[i]
            self.txv[i].msg_hdr.msg_iov = &self.txio[i]
            self.txv[i].msg_hdr.msg_iovlen = 1
            self.txv[i].msg_hdr.msg_name = &self.txname[i]
            self.txv[i].msg_hdr.msg_namelen = sizeof(sockaddr_in6)

    def __dealloc__(self):
        PyMem_RawFree(self.rx)
        PyMem_RawFree(self.rxv)
        PyMem_RawFree(self.txv)
        PyMem_RawFree(self.rxio)
        PyMem_RawFree(self.txio)
        PyMem_RawFree(self.rxname)
        PyMem_RawFree(self.txname)

    def recv(self, int limit=IO_BATCH):
        cdef int want = min(max(limit, 0), IO_BATCH), got, i, truncated = 0
        cdef list messages = []
        if want == 0:
            return messages, 0, 0
        for i in range(want):
            self.rxv[i].msg_hdr.msg_namelen = sizeof(sockaddr_in6)
            self.rxv[i].msg_hdr.msg_flags = 0
        while True:
            got = recvmmsg(self.fd, self.rxv, want, MSG_DONTWAIT, NULL)
            if got >= 0 or errno != EINTR:
                break
        if got < 0:
            return messages, 0, (0 if errno == EAGAIN else errno)  # EWOULDBLOCK is EAGAIN on Linux
        for i in range(got):
            if self.rxv[i].msg_hdr.msg_flags & MSG_TRUNC:
                truncated += 1
                continue
            messages.append((
                PyBytes_FromStringAndSize(<char *>self.rx + i * IO_BUF, self.rxv[i].msg_len),
                PyBytes_FromStringAndSize(<char *>self.rxname[i].sin6_addr.s6_addr, 16),
            ))
        return messages, truncated, 0

    def send(self, list messages):
        cdef list failed = [], keep = []
        cdef Py_ssize_t total = len(messages), start = 0, i
        cdef int n, done, k
        cdef object data, dst
        for data, dst in messages:  # all checked before any is sent
            if type(dst) is not bytes or PyBytes_GET_SIZE(dst) != 16:
                raise ValueError("a destination is 16 bytes (an IPv6 address, packed)")
        while start < total:
            n = <int>min(total - start, IO_BATCH)
            for i in range(n):
                data, dst = messages[start + i]
                if type(data) is not bytes:
                    data = bytes(data)
                    keep.append(data)  # alive until its sendmmsg is done
                self.txio[i].iov_base = PyBytes_AS_STRING(data)
                self.txio[i].iov_len = PyBytes_GET_SIZE(data)
                memset(&self.txname[i], 0, sizeof(sockaddr_in6))
                self.txname[i].sin6_family = AF_INET6
                memcpy(self.txname[i].sin6_addr.s6_addr, PyBytes_AS_STRING(dst), 16)
            done = 0
            while done < n:
                k = sendmmsg(self.fd, self.txv + done, n - done, MSG_DONTWAIT)
                if k < 0:
                    if errno == EINTR:
                        continue
                    failed.append((start + done, errno))  # that one is skipped, the rest go on
                    k = 1
                done += k
            start += n
            keep.clear()
        return failed

    def close(self):
        pass


# ---- the pump loops (reference_io.pump): one per kind of input ----

cdef int pump_receive(_Engine e, int fd, int budget, list punts, object fds) except -1:
    """recvmmsg batches; each forwarded packet is written to ``fds`` (an int: one TUN;
    a tuple: TAPs by link). Returns packets sent."""
    cdef int rx = 0, got, i, sent = 0, dev
    cdef res_t r
    cdef const uint8_t *pkt
    cdef uint8_t *out = e.io.tx + 16  # room for a virtio-net header before it
    cdef int single = fds if isinstance(fds, int) else -1
    cdef Py_ssize_t nfds = 0 if single >= 0 else len(fds)
    e.table._migrate(REHASH_PER_BATCH)
    memset(out - VNET_HDR_LEN, 0, VNET_HDR_LEN)  # no offload asked: a plain packet
    while rx < budget:
        got = io_recv(&e.io, fd, min(IO_BATCH, budget - rx))
        e.table.prefetch(e.io.rx + e.tkey, IO_BUF, got)
        for i in range(got):
            pkt = e.io.rx + i * IO_BUF
            if e.io.rxv[i].msg_hdr.msg_flags & MSG_TRUNC:
                e._end(e.up, R_TRUNCATED)
                continue
            r = e._tunnel_in(e.io.rxname[i].sin6_addr.s6_addr, pkt, e.io.rxv[i].msg_len, False,
                             out, IO_BUF)
            if VERDICT[r.reason] == V_PUNT:
                punts.append(Punt(r.reason, -1, (<char *>e.io.rxname[i].sin6_addr.s6_addr)[:16],
                                  (<char *>pkt)[:e.io.rxv[i].msg_len]))
            elif r.reason == R_FORWARDED:
                if single >= 0:
                    dev = single
                elif 0 <= r.link < nfds:
                    dev = fds[r.link]
                else:
                    dev = -1
                if dev >= 0 and e.coal:
                    sent += co_emit(e, dev, out, r.n)
                elif dev >= 0 and write(dev, out - e.vnet, r.n + e.vnet) == r.n + e.vnet:
                    sent += 1
                else:
                    e.ctr[e.up][C_TX_ERRORS] += 1
        rx += got
        if got < IO_BATCH:
            break
    if e.io.co.count:
        sent += co_write(e)
    e.io.last_rx = rx
    return sent


cdef int co_emit(_Engine e, int dev, uint8_t *p, Py_ssize_t n) noexcept:
    """One forwarded packet to ``dev`` through the coalescer (``p`` has a zeroed
    virtio-net header before it); returns packets written."""
    cdef int a, sent = 0
    while True:
        a = co_add(&e.io.co, dev, p, n)
        if a == CO_FLUSH:
            sent += co_write(e)
            continue
        if a == CO_PLAIN:
            if write(dev, p - VNET_HDR_LEN, n + VNET_HDR_LEN) == n + VNET_HDR_LEN:
                sent += 1
            else:
                e.ctr[e.up][C_TX_ERRORS] += 1
        elif e.io.co.closed:
            sent += co_write(e)
        return sent


cdef int co_write(_Engine e) noexcept:
    """Write the pending super-packet; packets written (a failure: one tx error each)."""
    cdef int count = e.io.co.count
    cdef Py_ssize_t n = co_finish(&e.io.co)
    if write(e.io.co.fd, e.io.co.buf, n) == n:
        return count
    e.ctr[e.up][C_TX_ERRORS] += count
    return 0


cdef int pump_read(_Engine e, int fd, int budget, list punts, int link, int tx_fd,
                   bint access) except -1:
    """read() until EAGAIN or budget; encapsulate into tx slots; sendmmsg per 64. With the
    virtio-net header, a super-packet is segmented first (``received`` counts reads)."""
    cdef int rx = 0, q = 0, sent = 0, d = UP if access else DOWN, errs, i
    cdef Py_ssize_t n
    cdef gso_t g
    cdef uint8_t *scratch = e.io.rx
    e.table._migrate(REHASH_PER_BATCH)
    errs = e.ctr[d][C_TX_ERRORS]
    while rx < budget:
        n = read(fd, scratch, VNET_READ_MAX if e.vnet else READ_MAX)
        if n < 0:
            if errno == EINTR:
                continue
            break  # EAGAIN / EWOULDBLOCK, or an error: the loop's owner sees it next time
        rx += 1
        if not e.vnet:
            sent += _queue(e, scratch, n, &q, punts, link, tx_fd, access)
            continue
        g = gso_parse(scratch, n, ETH_LEN if access else 0)
        if g.reason:
            e._end(d, g.reason)
        elif g.count == 0:
            sent += _queue(e, scratch + VNET_HDR_LEN, g.m, &q, punts, link, tx_fd, access)
        else:
            for i in range(g.count):
                n = gso_segment(scratch + VNET_HDR_LEN, &g, i, e.io.seg)
                sent += _queue(e, e.io.seg, n, &q, punts, link, tx_fd, access)
    if q:
        e.ctr[d][C_TX_ERRORS] += io_flush(&e.io, tx_fd, q)
    e.io.last_rx = rx
    return sent - <int>(e.ctr[d][C_TX_ERRORS] - errs)


cdef int _queue(_Engine e, const uint8_t *pkt, Py_ssize_t n, int *q, list punts, int link,
                int tx_fd, bint access) except -1:
    """One frame (access) or packet (TUN): encapsulated into tx slot ``q[0]`` (sendmmsg
    when the slots are full) or punted. Returns 1 if queued."""
    cdef res_t r
    cdef int d = UP if access else DOWN
    cdef uint8_t *slot = e.io.tx + q[0] * IO_BUF
    if access:
        r = (<Dmpa>e)._access(pkt, n, link, slot, IO_BUF)
    else:
        r = (<Dlmap>e)._tun(pkt, n, slot, IO_BUF)
    if r.reason == R_FORWARDED:
        io_queue(&e.io, q[0], slot, r.n)
        q[0] += 1
        if q[0] == IO_BATCH:
            e.ctr[d][C_TX_ERRORS] += io_flush(&e.io, tx_fd, q[0])
            q[0] = 0
        return 1
    if VERDICT[r.reason] == V_PUNT:
        punts.append(Punt(r.reason, link if access else -1,
                          (<char *>pkt)[6:12] if access else b"",
                          (<char *>pkt)[:n]))
    return 0
