# The HoA table (reference_table.HoaTable): open addressing over mappings of their own, and the
# allocation helpers the other units use.

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
    2^20 entries (32 MiB). Endpoints are interned with the MS's gateway (an engine with
    one gateway for every MS, 0 in its entries, has one pair per endpoint): an entry holds a
    16-bit index into both arrays.

    Growth is incremental: the bind that crosses 3/4 only allocates the doubled slot array;
    the old one is then moved over REHASH_PER_UPDATE slots per bind/unbind and
    REHASH_PER_BATCH per batch call, in slot order. Meanwhile a key lives in exactly one of the
    two arrays (new binds go to the new one; a moved or unbound old slot becomes a tombstone,
    which probes step over), and lookups try the new array, then the old. The migrated part of
    the old array is never read again: its pages are returned to the kernel as the migration
    goes (freeing 8 MiB of touched pages at once takes about 1 ms). Its fields are declared in
    ``_fastpath.pxd``."""

    def __cinit__(self, capacity=1024):
        self.mask = 15
        self.cap = 16
        self.epcap = 16
        self.slots = <slot_t *>_map(16 * sizeof(slot_t))
        self.entries = <entry_t *>_map(16 * sizeof(entry_t))
        self.eps = <uint8_t *>_alloc(16 * 16, False)
        self.gws = <uint32_t *>_alloc(16 * sizeof(uint32_t), False)
        self.eprefs = <uint32_t *>_alloc(16 * sizeof(uint32_t), False)
        self.ep_index = {}
        self.ep_free = []
        pt_init(&self.pt)
        self.reserve(max(0, capacity))

    def __dealloc__(self):
        _unmap(self.slots, (self.mask + 1) * sizeof(slot_t))
        if self.old != NULL:
            _unmap(self.old, (self.omask + 1) * sizeof(slot_t))
        _unmap(self.entries, self.cap * sizeof(entry_t))
        PyMem_RawFree(self.eps)
        PyMem_RawFree(self.gws)
        PyMem_RawFree(self.eprefs)
        pt_free(&self.pt)

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

    # Twin of pt_place (prefix.pxi), 32-bit keys: a probing fix here is made there too.
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

    # Twin of pt_slot (prefix.pxi, which has no old array): a probing fix here is made there.
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

    cdef uint16_t _ep_acquire(self, bytes endpoint, uint32_t gateway) except? 0xFFFF:
        # the key: the endpoint alone for gateway 0 (no allocation on the common path), else
        # 20 bytes with the gateway (a 16-byte key never equals a 20-byte one)
        cdef bytes key = endpoint if gateway == 0 else endpoint + gateway.to_bytes(4, "big")
        cdef object idx = self.ep_index.get(key)
        cdef uint32_t i
        cdef void *p
        if idx is None:
            if self.ep_free:
                i = self.ep_free.pop()
            else:
                if self.neps == MAX_ENDPOINTS:
                    raise OverflowError("at most 65535 distinct tunnel endpoints and gateways")
                if self.neps == self.epcap:
                    p = PyMem_RawRealloc(self.eps, self.epcap * 2 * 16)
                    if p == NULL:
                        raise MemoryError()
                    self.eps = <uint8_t *>p
                    p = PyMem_RawRealloc(self.gws, self.epcap * 2 * sizeof(uint32_t))
                    if p == NULL:
                        raise MemoryError()
                    self.gws = <uint32_t *>p
                    p = PyMem_RawRealloc(self.eprefs, self.epcap * 2 * sizeof(uint32_t))
                    if p == NULL:
                        raise MemoryError()
                    self.eprefs = <uint32_t *>p
                    self.epcap *= 2
                i = self.neps
                self.neps += 1
            memcpy(self.eps + i * 16, <const char *>endpoint, 16)
            self.gws[i] = gateway
            self.eprefs[i] = 0
            self.ep_index[key] = i
        else:
            i = idx
        self.eprefs[i] += 1
        return i

    cdef void _ep_release(self, uint16_t i):
        cdef bytes key
        self.eprefs[i] -= 1
        if self.eprefs[i] == 0:
            key = (<char *>self.eps + i * 16)[:16]
            if self.gws[i]:
                key += self.gws[i].to_bytes(4, "big")
            del self.ep_index[key]
            self.ep_free.append(i)

    def bind(self, hoa, endpoint, mac=bytes(6), int link=0, int flags=0, gateway=0):
        """Add or replace the binding of ``hoa``; counters survive a replacement (handover).
        ``gateway``: the MS's own default gateway (0: the engine's only)."""
        cdef entry_t *e
        cdef uint16_t ep
        cdef bytes epb = bytes(endpoint), macb = bytes(mac)
        if not 0 <= hoa <= 0xFFFFFFFF:
            raise ValueError("hoa must be an unsigned 32-bit integer")
        if len(epb) != 16 or len(macb) != 6:
            raise ValueError("endpoint must be 16 bytes and mac 6 bytes")
        if not 0 <= link <= 0xFFFF or not 0 <= flags <= 0xFF:
            raise ValueError("link must fit 16 bits and flags 8 bits")
        if not 0 <= gateway <= 0xFFFFFFFF:
            raise ValueError("gateway must be an unsigned 32-bit integer")
        self._migrate(REHASH_PER_UPDATE)
        e = self.find(hoa)
        if e == NULL:
            self._grow(self.n + 1, True)
            ep = self._ep_acquire(epb, gateway)
            e = &self.entries[self.n]
            self.n += 1
            self._place(hoa, self.n)
            e.key = hoa
            e.packets = 0
            e.octets = 0
        else:
            ep = self._ep_acquire(epb, gateway)
            self._ep_release(e.ep)
        e.ep = ep
        e.link = link
        e.flags = flags
        e.pad = 0
        memcpy(e.mac, <const char *>macb, 6)

    # Its backward shift is pt_unbind's twin (prefix.pxi): a fix to one is made to the other.
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
                       e.flags, e.packets, e.octets, self.gws[e.ep])

    def lookup(self, hoa):
        cdef entry_t *e
        if not 0 <= hoa <= 0xFFFFFFFF:
            return None
        e = self.find(hoa)
        return None if e == NULL else self._binding(e)

    # IPv6 home network prefixes: see ``reference_table.HoaTable.bind_prefix`` (prefix.pxi)
    def bind_prefix(self, prefix, endpoint, mac=bytes(6), int link=0):
        cdef bytes ep = bytes(endpoint), m = bytes(mac)
        cdef pentry_t *e
        if not 0 <= prefix <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError("prefix must be the top 64 bits of a /64")
        if len(ep) != 16 or len(m) != 6:
            raise ValueError("endpoint must be 16 bytes and mac 6")
        if not 0 <= link <= 0xFFFF:
            raise ValueError("link must be 0..65535")
        e = pt_bind(&self.pt, <uint64_t>prefix)
        memcpy(e.ep, <const char *>ep, 16)
        memcpy(e.mac, <const char *>m, 6)
        e.link = link

    def unbind_prefix(self, prefix):
        if not isinstance(prefix, int) or not 0 <= prefix <= 0xFFFFFFFFFFFFFFFF:
            return False
        return pt_unbind(&self.pt, <uint64_t>prefix)

    def lookup_prefix(self, prefix):
        cdef pentry_t *e
        if not isinstance(prefix, int) or not 0 <= prefix <= 0xFFFFFFFFFFFFFFFF:
            return None
        e = pt_find(&self.pt, <uint64_t>prefix)
        if e == NULL:
            return None
        return Binding(e.key, (<char *>e.ep)[:16], (<char *>e.mac)[:6], e.link, 0, e.packets,
                       e.octets)

    @property
    def prefixes(self):
        return self.pt.n

    def clear(self):
        pt_clear(&self.pt)
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
        array counted whole until its migration ends), endpoints with their gateways, the
        prefix table's two arrays."""
        return (_pages((self.mask + 1) * sizeof(slot_t))
                + (_pages((self.omask + 1) * sizeof(slot_t)) if self.old != NULL else 0)
                + _pages(self.cap * sizeof(entry_t)) + self.epcap * (16 + 2 * sizeof(uint32_t))
                + pt_bytes(&self.pt))

    def __len__(self):
        return self.n

    def __contains__(self, hoa):
        return isinstance(hoa, int) and 0 <= hoa <= 0xFFFFFFFF and self.find(hoa) != NULL

    def __iter__(self):
        return iter([self._binding(&self.entries[j]) for j in range(self.n)])
