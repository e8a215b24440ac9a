# The IPv6 home network prefix table (reference_table.HoaTable.bind_prefix): a C hash keyed by
# the /64's top 64 bits, for the IPv6-in-IPv6 path of a dual-stack MS. Open addressing
# (linear probing, backward-shift deletion) of 16-byte slots over a dense array of 48-byte
# entries, load at most 3/4, like the IPv4 table; it grows by rehashing at once (a prefix is
# bound once per MS registration, and the table is small next to the HoA table's).

cdef inline uint32_t hash64(uint64_t k) noexcept nogil:
    """The 64-bit finalizer of MurmurHash3: every bit of the prefix moves the slot."""
    k ^= k >> 33
    k *= 0xFF51AFD7ED558CCDULL
    k ^= k >> 33
    k *= 0xC4CEB9FE1A85EC53ULL
    k ^= k >> 33
    return <uint32_t>k


cdef int pt_init(ptab_t *t) except -1:
    t.mask = PT_MIN_SLOTS - 1
    t.cap = PT_MIN_SLOTS
    t.n = 0
    t.slots = <pslot_t *>_alloc(PT_MIN_SLOTS * sizeof(pslot_t), True)
    t.entries = <pentry_t *>_alloc(PT_MIN_SLOTS * sizeof(pentry_t), True)
    return 0


cdef void pt_free(ptab_t *t) noexcept:
    PyMem_RawFree(t.slots)
    PyMem_RawFree(t.entries)
    t.slots = NULL
    t.entries = NULL


# Twin of HoaTable._place (table.pxi), 64-bit keys: a probing fix there is made here too.
cdef inline void pt_place(pslot_t *slots, uint32_t mask, uint64_t key, uint32_t idx) noexcept:
    cdef uint32_t i = hash64(key) & mask
    while slots[i].idx:
        i = (i + 1) & mask
    slots[i].key = key
    slots[i].idx = idx


# Twin of HoaTable._slot (table.pxi; no old array here): a probing fix there is made here too.
cdef inline pslot_t *pt_slot(ptab_t *t, uint64_t key) noexcept nogil:
    cdef uint32_t i = hash64(key) & t.mask
    while t.slots[i].idx:
        if t.slots[i].key == key:
            return &t.slots[i]
        i = (i + 1) & t.mask
    return NULL


cdef inline pentry_t *pt_find(ptab_t *t, uint64_t key) noexcept nogil:
    """The entry of the /64 whose top 64 bits are ``key``, or NULL."""
    cdef pslot_t *s = pt_slot(t, key)
    return NULL if s == NULL else &t.entries[s.idx - 1]


cdef int pt_grow(ptab_t *t, uint32_t want) except -1:
    """Room for ``want`` entries: the dense array doubles when full, the slot array when the
    load would pass 3/4 (then every entry is placed again)."""
    cdef uint32_t nslots = t.mask + 1, j
    cdef void *p
    cdef pslot_t *slots
    if want > MAX_ENTRIES:
        raise OverflowError("too many prefixes")
    if want > t.cap:
        p = PyMem_RawRealloc(t.entries, <size_t>t.cap * 2 * sizeof(pentry_t))
        if p == NULL:
            raise MemoryError()
        t.entries = <pentry_t *>p
        t.cap *= 2
    while <uint64_t>nslots * 3 < <uint64_t>want * 4:
        nslots *= 2
    if nslots != t.mask + 1:
        slots = <pslot_t *>_alloc(<size_t>nslots * sizeof(pslot_t), True)
        for j in range(t.n):
            pt_place(slots, nslots - 1, t.entries[j].key, j + 1)
        PyMem_RawFree(t.slots)
        t.slots = slots
        t.mask = nslots - 1
    return 0


cdef pentry_t *pt_bind(ptab_t *t, uint64_t key) except NULL:
    """The entry of ``key``, a new one (counters zero) if it was not bound."""
    cdef pentry_t *e = pt_find(t, key)
    if e != NULL:
        return e
    pt_grow(t, t.n + 1)
    e = &t.entries[t.n]
    memset(e, 0, sizeof(pentry_t))
    e.key = key
    t.n += 1
    pt_place(t.slots, t.mask, key, t.n)
    return e


# Twin of HoaTable.unbind's backward shift (table.pxi): a fix to one is made to the other.
cdef bint pt_unbind(ptab_t *t, uint64_t key) noexcept:
    """Backward-shift deletion, then the last entry moves into the hole (the order the
    reference's dict does not need, but ``HoaTable`` keeps for the IPv4 entries too)."""
    cdef pslot_t *s = pt_slot(t, key)
    cdef uint32_t i, j, k, d, last
    if s == NULL:
        return False
    d = s.idx - 1
    i = s - t.slots
    j = i
    while True:
        j = (j + 1) & t.mask
        if t.slots[j].idx == 0:
            break
        k = hash64(t.slots[j].key) & t.mask
        if (i < k <= j) if i <= j else (i < k or k <= j):
            continue
        t.slots[i] = t.slots[j]
        i = j
    t.slots[i].idx = 0
    last = t.n - 1
    if d != last:
        t.entries[d] = t.entries[last]
        pt_slot(t, t.entries[d].key).idx = d + 1
    t.n -= 1
    return True


cdef void pt_clear(ptab_t *t) noexcept:
    """Forget every prefix; the allocation stays."""
    memset(t.slots, 0, (<size_t>t.mask + 1) * sizeof(pslot_t))
    t.n = 0


cdef size_t pt_bytes(ptab_t *t) noexcept:
    return (<size_t>t.mask + 1) * sizeof(pslot_t) + <size_t>t.cap * sizeof(pentry_t)
