"""The kernel tier (docs/kernel-tier.md): TC programs that carry bound MSs' traffic through the
tunnel inside the kernel, programmed like the user-space tier from the Bind and Unbind actions.

:meth:`KernelPath.open` is the probe: it loads the object (``fastpath/netlmm_tc.bpf.o``, or
the file ``NETLMM_BPF_OBJECT`` names: a wrong path is the documented way to make the probe
fail), checks that the kernel can decapsulate (``BPF_F_ADJ_ROOM_DECAP_L3_IPV4``, Linux 6.3+)
by running the ``probe_decap`` program on a test packet, and attaches the programs to the
clsact ingress hooks of the node's interfaces. Any failure raises :class:`KernelUnavailable`
with one line saying why, after undoing what it did.

Where the programs go:

* DMPA: ``dmpa_access`` on each access interface (``[dmpa] access``, before their bridge);
  ``dmpa_transport`` on the transport interface, the one holding ``[node] address``.
* DLMAP: ``dlmap_ingress`` on every interface of the namespace at start but the loopback and
  the node's own links (its TUN): the transport's tunnel input and the uplinks' IPv4 to HoAs.
  What it decapsulates enters the stack through the TUN's ingress, where the Cython tier
  writes it too (the same input interface for the reverse-path check and netfilter).

Owner tag: every filter this module attaches is ingress filter :data:`HANDLE` /
:data:`PRIORITY` (``tc filter show dev X ingress`` shows ``pref 20044 ... handle 0x4e4c``), and
the hooks are listed in ``<state_dir>/kernel-hooks.json`` while the node runs. :func:`sweep`
(start-up) removes the filters of a crashed run from the node's interfaces, and the clsact
qdiscs that run created; :meth:`KernelPath.close` removes its own.

Synchronous (netlink through pyroute2 and libbpf): call :meth:`KernelPath.open`,
:meth:`KernelPath.close` and :func:`sweep` from an executor, not on the loop's thread. The map
calls (bind, unbind, lookup, counters) are single ``bpf()`` system calls, fine on the loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from fastpath import Binding, Direction
from fastpath.kernel import (
    BINDING,
    CONFIG,
    COUNTER,
    KEY,
    MAP_BINDINGS,
    MAP_CONFIG,
    MAP_COUNTERS,
    MAP_PREFIXES,
    OBJECT,
    PREFIX_KEY,
    PROG_DLMAP,
    PROG_DMPA_ACCESS,
    PROG_DMPA_TRANSPORT,
    PROG_PROBE,
    ROLE_DLMAP,
    ROLE_DMPA,
    KernelReason,
    counter_key,
)
from router.adapters.devices import is_owned, tun_name
from router.core.actions import Bind, BindPrefix

log = logging.getLogger(__name__)

#: The file the probe loads instead of the shipped object (tests: a wrong path makes it fail).
OBJECT_ENV = "NETLMM_BPF_OBJECT"
#: The owner tag of our TC filters ("NL").
HANDLE = 0x4E4C
PRIORITY = 0x4E4C
#: The hooks of a running node, for the sweep after a crash.
HOOKS_FILE = "kernel-hooks.json"
#: The kernel tables' size: the most bindings (and IPv6 prefixes) a node holds (NO_PREALLOC:
#: memory as used).
MAX_BINDINGS = 1 << 20
#: The outer IPv6 hop limit (the user-space tier's default too).
HOP_LIMIT = 64


NO_MAC = bytes(6)
NO_GATEWAY = IPv4Address(0)


class KernelUnavailable(Exception):
    """The kernel tier cannot run here; ``str()`` is the one-line reason."""


@dataclass(frozen=True, slots=True)
class Hook:
    ifname: str
    ifindex: int
    program: str
    #: This node made the clsact qdisc (and removes it at the end).
    created: bool


@dataclass(frozen=True, slots=True)
class Plan:
    """What a node asks of the kernel tier (from its settings)."""

    role: str  # "dmpa" | "dlmap"
    name: str  # the node's short name (its own links are not hooked on the DLMAP)
    address: IPv6Address
    state_dir: Path
    tunnel_mtu: int
    access: tuple[str, ...] = ()  # DMPA: the access interfaces, by link index
    pseudo_mac: bytes = NO_MAC  # DMPA
    gateway: IPv4Address = NO_GATEWAY  # DMPA: the node's gateway (a Bind may name another)


def _binding_module() -> Any:
    try:
        from fastpath import _kernel
    except ImportError as exc:
        raise KernelUnavailable(f"the libbpf binding is not built ({exc})") from None
    return _kernel


def _links() -> tuple[dict[str, int], dict[IPv6Address, str]]:
    """Interface indexes by name, and which interface holds each IPv6 address."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}
        names = {index: name for name, index in links.items()}
        where = {
            IPv6Address(a.get_attr("IFA_ADDRESS")): names.get(a["index"], "")
            for a in ipr.get_addr(family=socket.AF_INET6)
        }
    return links, where


def _targets(plan: Plan, links: dict[str, int], where: dict[IPv6Address, str]) -> list[Hook]:
    """The hooks the plan needs (``created`` not known yet: False)."""

    transport = where.get(plan.address)
    if not transport:
        raise KernelUnavailable(f"no interface holds node.address {plan.address}")
    if plan.role == "dmpa":
        hooks = []
        for ifname in plan.access:
            if ifname not in links:
                raise KernelUnavailable(f"no access interface {ifname}")
            if ifname == transport:
                raise KernelUnavailable(f"{ifname} is both an access link and the transport")
            hooks.append(Hook(ifname, links[ifname], PROG_DMPA_ACCESS, False))
        hooks.append(Hook(transport, links[transport], PROG_DMPA_TRANSPORT, False))
        return hooks
    return [
        Hook(ifname, index, PROG_DLMAP, False)
        for ifname, index in sorted(links.items(), key=lambda item: item[1])
        if ifname != "lo" and not is_owned(plan.name, ifname)
    ]


class KernelPath:
    """The kernel tier of one node: its loaded object, hooks and maps (a DataPath)."""

    name = "kernel"

    def __init__(self, kernel: Any, obj: Any, plan: Plan, hooks: list[Hook], access: list[int]):
        self._k = kernel
        self._obj = obj
        self.plan = plan
        self.hooks = hooks
        self._access = access
        self._bindings_fd: int = obj.map_fd(MAP_BINDINGS)
        self._prefixes_fd: int = obj.map_fd(MAP_PREFIXES)
        self._counters_fd: int = obj.map_fd(MAP_COUNTERS)
        self._cpus: int = kernel.possible_cpus()
        #: Binds held back for one batch call (:meth:`hold`), by HoA.
        self._held: dict[IPv4Address, Bind] | None = None
        self.gateway = plan.gateway.packed
        self._closed = False

    # --- the probe ------------------------------------------------------------------------

    @classmethod
    def open(cls, plan: Plan) -> KernelPath:
        """Load, probe and attach; raises :class:`KernelUnavailable` (nothing left behind)."""
        kernel = _binding_module()
        path = os.environ.get(OBJECT_ENV) or str(OBJECT)
        try:
            obj = kernel.BpfObject(path)
        except OSError as exc:
            raise KernelUnavailable(f"cannot open the BPF object ({exc.strerror})") from None
        hooks: list[Hook] = []
        try:
            sizes = tuple(obj.map_sizes(m) for m in (MAP_BINDINGS, MAP_PREFIXES, MAP_CONFIG))
            expected = ((KEY.size, BINDING.size), (PREFIX_KEY.size, BINDING.size), (4, CONFIG.size))
            if sizes != expected:
                raise KernelUnavailable(f"{path} has maps of another layout: {sizes}")
            obj.set_max_entries(MAP_BINDINGS, MAX_BINDINGS)
            obj.set_max_entries(MAP_PREFIXES, MAX_BINDINGS)
            try:
                obj.load()
            except OSError as exc:
                raise KernelUnavailable(
                    f"the kernel refused the programs ({exc.strerror})"
                ) from None
            _probe(kernel, obj)
            links, where = _links()
            targets = _targets(plan, links, where)
            role = ROLE_DMPA if plan.role == "dmpa" else ROLE_DLMAP
            config = CONFIG.pack(
                plan.address.packed,
                plan.pseudo_mac,
                HOP_LIMIT,
                role,
                plan.tunnel_mtu,
                links[where[plan.address]],
                links.get(tun_name(plan.name), 0) if plan.role == "dlmap" else 0,
            )
            kernel.map_update(obj.map_fd(MAP_CONFIG), bytes(4), config)
            _write_hooks(plan.state_dir, targets)  # before attaching: a crash is swept too
            for target in targets:
                try:
                    created = kernel.tc_hook_create(target.ifindex)
                    hooks.append(Hook(target.ifname, target.ifindex, target.program, created))
                    _write_hooks(plan.state_dir, hooks + targets[len(hooks) :])
                    kernel.tc_attach(target.ifindex, obj.prog_fd(target.program), HANDLE, PRIORITY)
                except OSError as exc:
                    raise KernelUnavailable(
                        f"cannot attach to {target.ifname} ({exc.strerror})"
                    ) from None
        except BaseException:
            _remove(kernel, hooks)
            _remove_hooks_file(plan.state_dir)
            obj.close()
            raise
        access = [links[name] for name in plan.access]
        return cls(kernel, obj, plan, hooks, access)

    def close(self) -> None:
        """Detach every filter, remove the clsact qdiscs we made, release the object."""
        if self._closed:
            return
        self._closed = True
        _remove(self._k, self.hooks)
        _remove_hooks_file(self.plan.state_dir)
        self._obj.close()

    # --- DataPath -------------------------------------------------------------------------

    def _value(self, action: Bind | BindPrefix) -> bytes:
        """The map value of a HoA's binding or of a prefix's (whose gateway is 0: ICMP to the
        gateway is an IPv4 test)."""
        mac = action.mac.packed if action.mac is not None else NO_MAC
        link = action.link
        ifindex = self._access[link] if 0 <= link < len(self._access) else 0
        if isinstance(action, BindPrefix):
            gateway = bytes(4)
        else:
            gateway = action.gateway.packed if action.gateway is not None else self.gateway
        return BINDING.pack(action.endpoint.packed, mac, ifindex, gateway, link, 0, 0, 0)

    def bind(self, action: Bind) -> None:
        if self._held is not None:
            self._held[action.hoa] = action
            return
        # the key: network order
        self._k.map_update(self._bindings_fd, action.hoa.packed, self._value(action))

    def unbind(self, hoa: IPv4Address) -> None:
        if self._held is not None and self._held.pop(hoa, None) is not None:
            return
        self._k.map_delete(self._bindings_fd, KEY.pack(int(hoa)))

    # IPv6 home network prefixes (dual-stack MSs): IPv6-in-IPv6, next header 41, from the same
    # BindPrefix and UnbindPrefix actions the user-space tier's prefix table takes.
    def bind_prefix(self, action: BindPrefix) -> None:
        self._k.map_update(self._prefixes_fd, _prefix_key(action.prefix), self._value(action))

    def unbind_prefix(self, prefix: IPv6Network) -> None:
        self._k.map_delete(self._prefixes_fd, _prefix_key(prefix))

    def lookup_prefix(self, prefix: IPv6Network) -> Binding | None:
        """The entry of ``prefix`` (its top 64 bits as the HoA field) with what it forwarded."""
        raw = self._k.map_lookup(self._prefixes_fd, _prefix_key(prefix), BINDING.size)
        return None if raw is None else _binding(int(prefix.network_address) >> 64, raw)

    def lookup(self, hoa: IPv4Address) -> Binding | None:
        held = self._held.get(hoa) if self._held is not None else None
        if held is not None:
            raw: bytes | None = self._value(held)
        else:
            raw = self._k.map_lookup(self._bindings_fd, KEY.pack(int(hoa)), BINDING.size)
        return None if raw is None else _binding(int(hoa), raw)

    def counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        size = COUNTER.size
        for d in Direction:
            for r in KernelReason:
                key = counter_key(d, r).to_bytes(4, "little")
                raw = self._k.map_lookup(self._counters_fd, key, size * self._cpus) or b""
                packets = octets = 0
                for cpu in range(len(raw) // size):
                    p, b = COUNTER.unpack_from(raw, cpu * size)
                    packets, octets = packets + p, octets + b
                base = f"{d.name.lower()}.{r.name.lower()}"
                out[base], out[f"{base}.bytes"] = packets, octets
        return out

    # --- restore in one call --------------------------------------------------------------

    def hold(self) -> None:
        """Keep the binds from now on for :meth:`release` (the start's restore)."""
        self._held = {}

    def release(self) -> int:
        """Write the binds held since :meth:`hold` with one batch call; returns how many."""
        held, self._held = self._held or {}, None
        return self.bind_many(held.values())

    def bind_many(self, actions: Iterable[Bind]) -> int:
        """Many binds in one batch call, keys and values packed in C
        (``fastpath._kernel.pack_bindings``); returns how many were written. A HoA bound
        twice ends as its last Bind says (the batch writes in order)."""
        keys, values, count = self._k.pack_bindings(actions, self._access, self.gateway)
        if not count:
            return 0
        written: int = self._k.map_update_batch(self._bindings_fd, keys, values, count)
        return written


def _binding(key: int, raw: bytes) -> Binding:
    """A map value (``raw``) as the Binding of ``key`` (a HoA, or a prefix's top 64 bits)."""
    endpoint, mac, _, _, link, flags, packets, octets = BINDING.unpack(raw)
    return Binding(key, endpoint, mac, link, flags, packets, octets)


def _prefix_key(prefix: IPv6Network) -> bytes:
    return PREFIX_KEY.pack(int(prefix.network_address) >> 64)


def _probe(kernel: Any, obj: Any) -> None:
    """Run ``probe_decap`` on an IPv4-in-IPv6 test frame: 0 when the kernel decapsulates."""
    ipv4 = bytes([0x45, 0, 0, 20]) + bytes(16)
    ipv6 = bytes([0x60, 0, 0, 0, 0, 20, 4, 64]) + bytes(32)
    frame = bytes(12) + b"\x86\xdd" + ipv6 + ipv4
    try:
        result, _ = kernel.test_run(obj.prog_fd(PROG_PROBE), frame)
    except OSError as exc:
        raise KernelUnavailable(f"cannot run the probe program ({exc.strerror})") from None
    if result != 0:
        raise KernelUnavailable(
            "the kernel cannot decapsulate in BPF (BPF_F_ADJ_ROOM_DECAP_L3_IPV4 needs Linux 6.3+)"
        )


def _remove(kernel: Any, hooks: Iterable[Hook]) -> list[str]:
    """Detach our filter from each hook (and the qdisc where we made it); what was removed."""
    removed = []
    for hook in hooks:
        try:
            ifindex = socket.if_nametoindex(hook.ifname)
        except OSError:
            continue  # the interface is gone, and everything on it
        with contextlib.suppress(OSError):
            if kernel.tc_detach(ifindex, HANDLE, PRIORITY):
                removed.append(hook.ifname)
        if hook.created:
            with contextlib.suppress(OSError):
                kernel.tc_hook_destroy(ifindex)
    return removed


def _hooks_path(state_dir: Path) -> Path:
    return state_dir / HOOKS_FILE


def _write_hooks(state_dir: Path, hooks: list[Hook]) -> None:
    path = _hooks_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump([asdict(h) for h in hooks], f)
    tmp.replace(path)


def _remove_hooks_file(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        _hooks_path(state_dir).unlink()


def sweep(plan: Plan) -> list[str]:
    """What a crashed run left: our filters on the hooks its file lists and on the interfaces
    the plan hooks (DMPA: access and transport; DLMAP: all but the loopback and its own), and
    the qdiscs that run made. Returns the interfaces a filter was removed from. Nothing to do
    when the binding is not built."""
    try:
        kernel = _binding_module()
    except KernelUnavailable:
        return []
    links, where = _links()
    try:
        interfaces = [h.ifname for h in _targets(plan, links, where)]
    except KernelUnavailable:  # an interface is missing: the ones there are
        interfaces = [name for name in (*plan.access, where.get(plan.address)) if name]
    state_dir = plan.state_dir
    hooks: list[Hook] = []
    path = _hooks_path(state_dir)
    with contextlib.suppress(FileNotFoundError, ValueError, TypeError, KeyError):
        hooks = [Hook(**entry) for entry in json.loads(path.read_text())]
    listed = {h.ifname for h in hooks}
    hooks += [Hook(name, 0, "", False) for name in interfaces if name not in listed]
    removed = _remove(kernel, hooks)
    _remove_hooks_file(state_dir)
    if removed:
        log.info("swept kernel hooks=%s", ",".join(removed))
    return removed
