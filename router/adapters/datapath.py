"""The data-path tiers a node programs: what each offers the runtime, and the user-space tier.

The binding cache in the core is the source of truth (architecture.md): every data-path table is
derived from the cores' :class:`~router.core.actions.Bind` and
:class:`~router.core.actions.Unbind` actions, which the node runtime hands to each of its
backends in turn (FRR's "operations, not pokes"). A backend is anything with the four calls of
:class:`DataPath`; the runtime keeps a list of them, so a kernel tier can sit beside the
user-space one.

:class:`UserSpacePath` is the user-space tier every node has: the fastpath (its compiled twin,
or the reference twin) with its HoA table. Its engine's batched pumps are the role's readers; it
also takes the packets the slow path re-injects (fragments it cut to the tunnel MTU) and
encapsulates them like any other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any, Protocol

from fastpath import Binding, Verdict, implementation
from fastpath.common import IO_BUF, IP6_LEN
from router.core.actions import Bind, BindPrefix

#: The largest output of one encapsulation: a frame of the fastpath's per-packet I/O buffer
#: plus the IPv6 header it gains.
ENCAP_BUFFER = IO_BUF + IP6_LEN
#: ``NETLMM_COALESCE=0`` turns off merging TCP segments on the TAP/TUN writes (offload only),
#: for A/B measurements; read once, when a node opens its fastpath.
COALESCE_ENV = "NETLMM_COALESCE"


class DataPath(Protocol):
    """A data-path tier as the node runtime programs and reads it."""

    @property
    def name(self) -> str:
        """Its group in ``show counters`` (and the metrics)."""
        ...

    def bind(self, action: Bind) -> None:
        """Forward ``action.hoa`` through ``action.endpoint`` (DMPA: to ``action.mac`` on
        ``action.link``, and answer ICMP to ``action.gateway``, the MS's own gateway, in the
        slow path); a handover is a bind that replaces the old one."""
        ...

    def unbind(self, hoa: IPv4Address) -> None: ...

    def lookup(self, hoa: IPv4Address) -> Binding | None:
        """The entry of ``hoa`` with what it forwarded, or None."""
        ...

    def counters(self) -> dict[str, int]: ...


def coalesce_enabled() -> bool:
    return os.environ.get(COALESCE_ENV, "1") != "0"


class UserSpacePath:
    """The fastpath and its HoA table: one engine (``Dlmap`` or ``Dmpa``) of one twin."""

    name = "fastpath"

    def __init__(
        self,
        which: str,
        engine: str,
        local: IPv6Address,
        *args: object,
        tunnel_mtu: int,
        peers: Iterable[IPv6Address],
        offload: bool,
    ) -> None:
        """``which``: ``auto``, ``compiled`` or ``reference`` (:func:`fastpath.implementation`);
        ``args``: what the engine takes after our address (the DMPA's pseudo-MAC, gateway)."""
        module = implementation(which)
        self.table: Any = module.HoaTable()
        self.engine: Any = getattr(module, engine)(
            self.table,
            local.packed,
            *args,
            tunnel_mtu=tunnel_mtu,
            peers=[peer.packed for peer in peers],
            vnet_hdr=offload,
            coalesce=coalesce_enabled(),
        )
        self._out = bytearray(ENCAP_BUFFER)

    def bind(self, action: Bind) -> None:
        mac = action.mac.packed if action.mac is not None else bytes(6)
        gateway = int(action.gateway) if action.gateway is not None else 0
        self.table.bind(int(action.hoa), action.endpoint.packed, mac, action.link, gateway=gateway)

    def unbind(self, hoa: IPv4Address) -> None:
        self.table.unbind(int(hoa))

    # IPv6 home network prefixes (dual-stack MSs): IPv6-in-IPv6, next header 41. Only this
    # tier carries them; the kernel tier passes IPv6 up to it (router.adapters.kernelpath).
    def bind_prefix(self, action: BindPrefix) -> None:
        mac = action.mac.packed if action.mac is not None else bytes(6)
        top = int(action.prefix.network_address) >> 64
        self.table.bind_prefix(top, action.endpoint.packed, mac, action.link)

    def unbind_prefix(self, prefix: IPv6Network) -> None:
        self.table.unbind_prefix(int(prefix.network_address) >> 64)

    def lookup(self, hoa: IPv4Address) -> Binding | None:
        entry: Binding | None = self.table.lookup(int(hoa))
        return entry

    def counters(self) -> dict[str, int]:
        counters: dict[str, int] = self.engine.counters()
        return counters

    def encapsulate(self, data: bytes, link: int) -> bytes | None:
        """The IPv6 packet the fastpath makes of ``data`` as if it had just read it: a frame
        from access link ``link`` (DMPA), or an IPv4 packet from the TUN (DLMAP, ``link`` -1);
        None when it does not forward it (counted there like any packet)."""
        out = self._out
        if link < 0:
            verdict, _, length, _ = self.engine.from_tun(data, out)
        else:
            verdict, _, length, _ = self.engine.from_access(data, link, out)
        return bytes(out[:length]) if verdict == Verdict.FORWARD else None
