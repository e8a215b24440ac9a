# cython: language_level=3, auto_pickle=False, autotestdict=False
"""The kernel tier's binding to libbpf: open and load a BPF object, attach its programs to TC
clsact hooks, and read and write its maps (docs/kernel-tier.md).

Thin on purpose: every call is one libbpf call (or one ``bpf()`` system call) with its error
turned into :class:`OSError` (errno and what was being done). What the maps hold is the
caller's business (``router.adapters.kernelpath`` packs keys and values); this module knows
bytes, file descriptors and interface indexes only, but for :func:`pack_bindings`, which lays
out many bindings for the restore's batch call in C (``struct netlmm_binding`` from
``bpf/netlmm_tc.h``) instead of one Python ``struct.pack`` each. libbpf's own messages are
silenced: the errors say what failed.
"""

from os import strerror

from libc.errno cimport errno
from cpython.bytearray cimport PyByteArray_AS_STRING
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

cdef extern from "bpf/libbpf.h" nogil:
    struct bpf_object:
        pass
    struct bpf_program:
        pass
    struct bpf_map:
        pass
    struct bpf_object_open_opts:
        pass
    ctypedef int (*libbpf_print_fn_t)(int level, const char *fmt, ...)
    libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn)
    bpf_object *bpf_object__open_file(const char *path, const bpf_object_open_opts *opts)
    int bpf_object__load(bpf_object *obj)
    void bpf_object__close(bpf_object *obj)
    bpf_program *bpf_object__find_program_by_name(const bpf_object *obj, const char *name)
    bpf_map *bpf_object__find_map_by_name(const bpf_object *obj, const char *name)
    int bpf_program__fd(const bpf_program *prog)
    int bpf_map__fd(const bpf_map *map)
    int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)
    uint32_t bpf_map__value_size(const bpf_map *map)
    uint32_t bpf_map__key_size(const bpf_map *map)
    long libbpf_get_error(const void *ptr)
    int libbpf_num_possible_cpus()

    enum bpf_tc_attach_point:
        BPF_TC_INGRESS
        BPF_TC_EGRESS
    struct bpf_tc_hook:
        size_t sz
        int ifindex
        bpf_tc_attach_point attach_point
        uint32_t parent
    struct bpf_tc_opts:
        size_t sz
        int prog_fd
        uint32_t flags
        uint32_t prog_id
        uint32_t handle
        uint32_t priority
    int bpf_tc_hook_create(bpf_tc_hook *hook)
    int bpf_tc_hook_destroy(bpf_tc_hook *hook)
    int bpf_tc_attach(const bpf_tc_hook *hook, bpf_tc_opts *opts)
    int bpf_tc_detach(const bpf_tc_hook *hook, const bpf_tc_opts *opts)
    int bpf_tc_query(const bpf_tc_hook *hook, bpf_tc_opts *opts)

cdef extern from "bpf/bpf.h" nogil:
    struct bpf_map_batch_opts:
        size_t sz
        unsigned long long elem_flags
        unsigned long long flags
    struct bpf_test_run_opts:
        size_t sz
        const void *data_in
        void *data_out
        uint32_t data_size_in
        uint32_t data_size_out
        uint32_t retval
        int repeat
    int bpf_map_update_elem(int fd, const void *key, const void *value, unsigned long long flags)
    int bpf_map_lookup_elem(int fd, const void *key, void *value)
    int bpf_map_delete_elem(int fd, const void *key)
    int bpf_map_update_batch(int fd, const void *keys, const void *values, uint32_t *count,
                             const bpf_map_batch_opts *opts)
    int bpf_prog_test_run_opts(int prog_fd, bpf_test_run_opts *opts)

cdef extern from "linux/types.h":
    pass

cdef extern from "netlmm_tc.h":
    struct netlmm_binding:
        uint8_t endpoint[16]
        uint8_t mac[6]
        uint8_t pad[2]
        uint32_t ifindex
        uint32_t gateway
        uint32_t link
        uint32_t flags
        uint64_t packets
        uint64_t octets

cdef extern from "errno.h":
    int ENOENT
    int EEXIST
    int EINVAL
    int ENODEV


cdef inline bint _absent(int rc) noexcept:
    """Nothing attached: no such filter (ENOENT), no clsact qdisc (EINVAL), no device."""
    return rc == -ENOENT or rc == -EINVAL or rc == -ENODEV

#: TC_ACT_OK .. TC_ACT_REDIRECT, as the programs return them.
TC_ACT_OK = 0
TC_ACT_SHOT = 2
TC_ACT_REDIRECT = 7


cdef int _quiet(int level, const char *fmt, ...) noexcept nogil:
    return 0


libbpf_set_print(<libbpf_print_fn_t>_quiet)


cdef _fail(int err, str what):
    """Raise OSError for a libbpf result (``-errno``) or errno."""
    code = -err if err < 0 else (errno or err)
    raise OSError(code, f"{what}: {strerror(code)}")


def possible_cpus() -> int:
    """How many per-CPU slots a per-CPU map value has."""
    cdef int n = libbpf_num_possible_cpus()
    if n < 0:
        _fail(n, "possible CPUs")
    return n


cdef class BpfObject:
    """One BPF object file: opened at construction, loaded by :meth:`load` (maps created,
    programs verified), closed (maps and programs released) by :meth:`close`."""

    cdef bpf_object *_obj
    cdef readonly str path
    cdef bint _loaded

    def __cinit__(self, str path):
        self._obj = NULL
        self.path = path
        self._loaded = False
        encoded = path.encode()
        cdef bpf_object *obj = bpf_object__open_file(encoded, NULL)
        cdef long err = libbpf_get_error(obj)
        if obj == NULL or err:
            _fail(<int>err if err else -errno, f"open {path}")
        self._obj = obj

    def __dealloc__(self):
        if self._obj != NULL:
            bpf_object__close(self._obj)
            self._obj = NULL

    cdef bpf_object *_open(self) except NULL:
        if self._obj == NULL:
            raise ValueError("the BPF object is closed")
        return self._obj

    def set_max_entries(self, str name, unsigned int entries) -> None:
        """Size map ``name`` (before :meth:`load`)."""
        cdef bpf_map *m = bpf_object__find_map_by_name(self._open(), name.encode())
        if m == NULL:
            raise KeyError(name)
        cdef int rc = bpf_map__set_max_entries(m, entries)
        if rc:
            _fail(rc, f"size map {name}")

    def map_sizes(self, str name) -> tuple:
        """(key size, value size) of map ``name``, as the object declares them."""
        cdef bpf_map *m = bpf_object__find_map_by_name(self._open(), name.encode())
        if m == NULL:
            raise KeyError(name)
        return bpf_map__key_size(m), bpf_map__value_size(m)

    def load(self) -> None:
        cdef int rc = bpf_object__load(self._open())
        if rc:
            _fail(rc, f"load {self.path}")
        self._loaded = True

    def prog_fd(self, str name) -> int:
        cdef bpf_program *p = bpf_object__find_program_by_name(self._open(), name.encode())
        if p == NULL:
            raise KeyError(name)
        cdef int fd = bpf_program__fd(p)
        if fd < 0:
            _fail(fd, f"program {name} (not loaded?)")
        return fd

    def map_fd(self, str name) -> int:
        cdef bpf_map *m = bpf_object__find_map_by_name(self._open(), name.encode())
        if m == NULL:
            raise KeyError(name)
        cdef int fd = bpf_map__fd(m)
        if fd < 0:
            _fail(fd, f"map {name} (not loaded?)")
        return fd

    def close(self) -> None:
        if self._obj != NULL:
            bpf_object__close(self._obj)
            self._obj = NULL


cdef void _hook(bpf_tc_hook *hook, int ifindex, bint ingress) noexcept:
    memset(hook, 0, sizeof(bpf_tc_hook))
    hook.sz = sizeof(bpf_tc_hook)
    hook.ifindex = ifindex
    hook.attach_point = BPF_TC_INGRESS if ingress else BPF_TC_EGRESS


cdef void _opts(bpf_tc_opts *opts, int prog_fd, unsigned int handle,
                unsigned int priority) noexcept:
    memset(opts, 0, sizeof(bpf_tc_opts))
    opts.sz = sizeof(bpf_tc_opts)
    opts.prog_fd = prog_fd
    opts.handle = handle
    opts.priority = priority


def tc_hook_create(int ifindex) -> bool:
    """The clsact qdisc on ``ifindex``: True when this call made it, False when it was there."""
    cdef bpf_tc_hook hook
    _hook(&hook, ifindex, True)
    cdef int rc = bpf_tc_hook_create(&hook)
    if rc == -EEXIST:
        return False
    if rc:
        _fail(rc, f"clsact on ifindex {ifindex}")
    return True


def tc_hook_destroy(int ifindex) -> None:
    """Remove the clsact qdisc of ``ifindex`` (and every filter on it, ours or not)."""
    cdef bpf_tc_hook hook
    _hook(&hook, ifindex, True)
    hook.attach_point = <bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS)
    cdef int rc = bpf_tc_hook_destroy(&hook)
    if rc and rc != -ENOENT:
        _fail(rc, f"remove clsact on ifindex {ifindex}")


def tc_attach(int ifindex, int prog_fd, unsigned int handle, unsigned int priority) -> int:
    """Attach ``prog_fd`` as the ingress filter ``handle``/``priority`` of ``ifindex`` (the
    clsact hook must exist), replacing one there; returns the program's id."""
    cdef bpf_tc_hook hook
    cdef bpf_tc_opts opts
    _hook(&hook, ifindex, True)
    _opts(&opts, prog_fd, handle, priority)
    opts.flags = 1  # BPF_TC_F_REPLACE
    cdef int rc = bpf_tc_attach(&hook, &opts)
    if rc:
        _fail(rc, f"attach to ifindex {ifindex}")
    return opts.prog_id


def tc_query(int ifindex, unsigned int handle, unsigned int priority) -> int:
    """The id of the program at ingress filter ``handle``/``priority`` of ``ifindex``, or 0."""
    cdef bpf_tc_hook hook
    cdef bpf_tc_opts opts
    _hook(&hook, ifindex, True)
    _opts(&opts, 0, handle, priority)
    cdef int rc = bpf_tc_query(&hook, &opts)
    if _absent(rc):
        return 0
    if rc:
        _fail(rc, f"query ifindex {ifindex}")
    return opts.prog_id


def tc_detach(int ifindex, unsigned int handle, unsigned int priority) -> bool:
    """Remove ingress filter ``handle``/``priority`` of ``ifindex``: True when it was there."""
    cdef bpf_tc_hook hook
    cdef bpf_tc_opts opts
    _hook(&hook, ifindex, True)
    _opts(&opts, 0, handle, priority)
    cdef int rc = bpf_tc_detach(&hook, &opts)
    if _absent(rc):
        return False
    if rc:
        _fail(rc, f"detach from ifindex {ifindex}")
    return True


def map_update(int fd, const unsigned char[:] key, const unsigned char[:] value,
               unsigned long long flags=0) -> None:
    """One ``bpf(BPF_MAP_UPDATE_ELEM)``."""
    cdef int rc = bpf_map_update_elem(fd, &key[0], &value[0], flags)
    if rc:
        _fail(rc, "map update")


def map_delete(int fd, const unsigned char[:] key) -> bool:
    """One ``bpf(BPF_MAP_DELETE_ELEM)``: True when the key was there."""
    cdef int rc = bpf_map_delete_elem(fd, &key[0])
    if rc == -ENOENT:
        return False
    if rc:
        _fail(rc, "map delete")
    return True


def map_lookup(int fd, const unsigned char[:] key, unsigned int value_size):
    """The value of ``key`` (``value_size`` bytes; for a per-CPU map, the CPUs' values one
    after another, each rounded up to 8 bytes), or None."""
    out = bytearray(value_size)
    cdef unsigned char[:] view = out
    cdef int rc = bpf_map_lookup_elem(fd, &key[0], &view[0])
    if rc == -ENOENT:
        return None
    if rc:
        _fail(rc, "map lookup")
    return bytes(out)


def map_update_batch(int fd, const unsigned char[:] keys, const unsigned char[:] values,
                     unsigned int count) -> int:
    """``count`` keys and values laid end to end, in one ``bpf(BPF_MAP_UPDATE_BATCH)`` call;
    returns how many were written (all, or it raises)."""
    if count == 0:
        return 0
    cdef bpf_map_batch_opts opts
    memset(&opts, 0, sizeof(opts))
    opts.sz = sizeof(opts)
    cdef uint32_t n = count
    cdef int rc
    with nogil:
        rc = bpf_map_update_batch(fd, &keys[0], &values[0], &n, &opts)
    if rc:
        _fail(rc, f"map batch update ({n} of {count} written)")
    return n


def test_run(int prog_fd, const unsigned char[:] data) -> tuple:
    """Run a TC program once on a packet (``BPF_PROG_TEST_RUN``): (return value, packet out)."""
    cdef bpf_test_run_opts opts
    out = bytearray(len(data) + 256)
    cdef unsigned char[:] view = out
    memset(&opts, 0, sizeof(opts))
    opts.sz = sizeof(opts)
    opts.data_in = &data[0]
    opts.data_size_in = len(data)
    opts.data_out = &view[0]
    opts.data_size_out = len(out)
    opts.repeat = 1
    cdef int rc = bpf_prog_test_run_opts(prog_fd, &opts)
    if rc:
        _fail(rc, "test run")
    return opts.retval, bytes(out[:opts.data_size_out])


cdef inline void _copy(uint8_t *to, object data, Py_ssize_t size, str what) except *:
    cdef const unsigned char[:] view = data
    if view.shape[0] != size:
        raise ValueError(f"{what}: {size} bytes, not {view.shape[0]}")
    memcpy(to, &view[0], size)


def pack_bindings(actions, access, const unsigned char[:] gateway) -> tuple:
    """Keys and values of ``bindings`` entries for one :func:`map_update_batch`, laid out in C:
    (keys, values, count). ``actions``: Bind-like objects (``hoa`` an IPv4 address, ``endpoint``
    an IPv6 address, ``mac`` None or with ``packed``, ``link`` an int, ``gateway`` None or an
    IPv4 address); ``access``: the access ports' ifindexes by link (0 for a link not there);
    ``gateway``: the node's gateway, 4 bytes, for a Bind that names none. Keys are the HoAs in
    network order. Consecutive actions with the same endpoint object pack it once."""
    cdef list items = list(actions)
    cdef Py_ssize_t n = len(items), i
    cdef tuple ports = tuple(access)
    cdef Py_ssize_t nports = len(ports)
    if gateway.shape[0] != 4:
        raise ValueError("the gateway is 4 bytes")
    keys = bytearray(4 * n)
    values = bytearray(sizeof(netlmm_binding) * n)
    if n == 0:
        return keys, values, 0
    cdef uint8_t *k = <uint8_t *>PyByteArray_AS_STRING(keys)
    cdef netlmm_binding *v = <netlmm_binding *>PyByteArray_AS_STRING(values)
    cdef uint8_t last_endpoint[16]
    cdef object last = None, endpoint, mac, via
    cdef uint32_t hoa, node_gateway
    cdef long link
    memcpy(&node_gateway, &gateway[0], 4)
    memset(v, 0, sizeof(netlmm_binding) * n)
    for i in range(n):
        action = items[i]
        hoa = <uint32_t>int(action.hoa)
        k[4 * i] = hoa >> 24
        k[4 * i + 1] = (hoa >> 16) & 0xff
        k[4 * i + 2] = (hoa >> 8) & 0xff
        k[4 * i + 3] = hoa & 0xff
        endpoint = action.endpoint
        if endpoint is not last:
            _copy(last_endpoint, endpoint.packed, 16, "endpoint")
            last = endpoint
        memcpy(v[i].endpoint, last_endpoint, 16)
        mac = action.mac
        if mac is not None:
            _copy(v[i].mac, mac.packed, 6, "mac")
        link = action.link
        v[i].link = <uint32_t>link
        v[i].ifindex = <uint32_t>ports[link] if 0 <= link < nports else 0
        via = action.gateway
        if via is None:
            v[i].gateway = node_gateway
        else:
            _copy(<uint8_t *>&v[i].gateway, via.packed, 4, "gateway")
    return keys, values, n
