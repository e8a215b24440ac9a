"""Kernel devices of one appliance process: TAP/TUN, the access bridges, the DLMAP's routes.

Everything acts on the network namespace the process runs in (``ip netns exec`` in the lab),
through netlink (pyroute2) and ``/proc/sys``. Root (CAP_NET_ADMIN) is needed for all of it.

Owner tag (how a crashed run's leftovers are recognised and swept at start-up):

* every link this process creates is named ``nl<name><suffix>``, ``name`` being the node's
  short name from the settings (at most 8 characters) and ``suffix`` one of ``t<i>`` (the TAP
  of access link ``i``), ``br<i>`` (its bridge) or ``tun`` (the DLMAP's TUN): see
  :func:`tap_name`, :func:`bridge_name`, :func:`tun_name`. A sweep matches the whole name
  against exactly these suffixes, so node ``a`` never sweeps node ``ab``'s links.
* every route it adds carries the route protocol :data:`ROUTE_PROTO` (78, ``0x4e``; shown as
  ``proto 78`` by ``ip route``). It is outside the numbers the kernel and the usual daemons use
  (``/etc/iproute2/rt_protos``: 0-4 kernel/boot/static, 8-18 routing daemons and dhcp, 42, 99,
  186-192). The sweep deletes every route of that protocol in the namespace, in every table,
  so run at most one appliance per namespace (the lab gives each node its own).

Calling convention: the functions are synchronous. pyroute2's synchronous ``IPRoute`` runs an
event loop of its own, so it cannot be used from a thread whose asyncio loop is running: from
the appliance's loop call them through ``loop.run_in_executor(None, ...)`` (or
``asyncio.to_thread``); called on the loop thread they raise :class:`RuntimeError` at once.

Typical order (see :class:`Devices`)::

    sweep(name)                                    # a crashed run's leftovers
    dev = Devices(name)
    # DMPA, per access link i:
    fd = dev.create_tap(tap_name(name, i))
    dev.bridge_access(access[i], tap_name(name, i), bridge_name(name, i))
    dev.wait_link_up(bridge_name(name, i), 5.0)
    # DLMAP:
    fd = dev.create_tun(tun_name(name), mtu=tunnel_mtu)
    dev.route_hoa_network(tun_name(name), gateway, network)
    enable_ipv4_forwarding()
    dev.wait_link_up(tun_name(name), 5.0)
    ...
    dev.teardown()                                 # closes the fds, deletes links and routes
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytun
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

#: Route protocol number that marks the routes this appliance adds (rtnetlink ``rtm_protocol``).
ROUTE_PROTO = 0x4E
#: Linux limit on an interface name (IFNAMSIZ - 1).
IFNAME_MAX = 15
#: Longest node name (``nl`` + name + ``br<i>`` must fit :data:`IFNAME_MAX`).
NAME_MAX = 8

_NAME_RE = re.compile(r"[A-Za-z0-9-]{1,8}")
_OWNED_SUFFIX = r"(?:t\d+|br\d+|tun)"

_IFF_UP = 0x1
_IFF_LOWER_UP = 0x10000
_BR_STATE_FORWARDING = 3
_AF_INET, _AF_INET6 = 2, 10
_SYS_NET = Path("/proc/sys/net")
#: ``TUNSETOFFLOAD`` (``_IOW('T', 208, unsigned int)``) and its flags, from linux/if_tun.h.
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
#: Length of the ``struct virtio_net_hdr`` every read and write starts with under offload.
VNET_HDR_LEN = 10


def link_prefix(name: str) -> str:
    """``nl<name>``: the prefix of every link node ``name`` creates (validates ``name``)."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"node name {name!r}: 1 to {NAME_MAX} letters, digits or '-'")
    return f"nl{name}"


def _owned(name: str, suffix: str) -> str:
    ifname = link_prefix(name) + suffix
    if len(ifname) > IFNAME_MAX:
        raise ValueError(f"interface name {ifname!r} is longer than {IFNAME_MAX} characters")
    return ifname


def tap_name(name: str, link: int) -> str:
    """The TAP of access link ``link`` (``nl<name>t<link>``)."""
    return _owned(name, f"t{link}")


def bridge_name(name: str, link: int) -> str:
    """The bridge of access link ``link`` (``nl<name>br<link>``)."""
    return _owned(name, f"br{link}")


def tun_name(name: str) -> str:
    """The DLMAP's TUN (``nl<name>tun``)."""
    return _owned(name, "tun")


def is_owned(name: str, ifname: str) -> bool:
    """Whether ``ifname`` is one of the names node ``name`` gives its links."""
    return re.fullmatch(re.escape(link_prefix(name)) + _OWNED_SUFFIX, ifname) is not None


@contextlib.contextmanager
def _netlink() -> Iterator[Any]:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("netlink calls block: run them in an executor, not on the loop")
    with IPRoute() as ipr:
        yield ipr


def _index(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no interface named {ifname!r}")
    return int(found[0])


def _write_sysctl(path: Path, value: str) -> None:
    path.write_text(value + "\n")


def _disable_ipv6(ifname: str) -> None:
    """No link-local address, DAD, router solicitations or MLD on a link that only bridges."""
    path = _SYS_NET / "ipv6" / "conf" / ifname / "disable_ipv6"
    if path.exists():  # absent when IPv6 is disabled altogether
        _write_sysctl(path, "1")


def enable_ipv4_forwarding() -> None:
    """``net.ipv4.ip_forward = 1`` in this process's namespace (the sysctl is per namespace).

    Writing it sets ``forwarding`` on ``all``, ``default`` and every existing device, so the
    order with respect to creating the TUN does not matter. It is left on at teardown: the
    namespace is the router's, and another user of it may rely on forwarding too.
    """
    _write_sysctl(_SYS_NET / "ipv4" / "ip_forward", "1")


def enable_ipv6_forwarding() -> None:
    """``net.ipv6.conf.all.forwarding = 1`` in this namespace (a DLMAP with an ``ipv6_pool``
    routes its MSs' IPv6 between the TUN and the uplink); left on at teardown, as IPv4's."""
    _write_sysctl(_SYS_NET / "ipv6" / "conf" / "all" / "forwarding", "1")


@dataclass(frozen=True, slots=True)
class Swept:
    """What :func:`sweep` deleted: link names and routes (``"<dst>/<len> table <t>"``)."""

    links: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()


def _route_key(msg: Any) -> dict[str, Any]:
    """The fields that identify one route for an RTM_DELROUTE."""
    key: dict[str, Any] = {
        "family": msg["family"],
        "dst_len": msg["dst_len"],
        "table": msg.get_attr("RTA_TABLE") or msg["table"],
        "proto": msg["proto"],
        "scope": msg["scope"],
        "type": msg["type"],
    }
    for attr, name in (
        ("RTA_DST", "dst"),
        ("RTA_OIF", "oif"),
        ("RTA_GATEWAY", "gateway"),
        ("RTA_PRIORITY", "priority"),
    ):
        value = msg.get_attr(attr)
        if value is not None:
            key[name] = value
    return key


def _describe(key: dict[str, Any]) -> str:
    default = "0.0.0.0" if key["family"] == _AF_INET else "::"
    return f"{key.get('dst', default)}/{key['dst_len']} table {key['table']}"


def sweep(name: str) -> Swept:
    """Delete what a previous run of node ``name`` left behind; call it first, at start-up.

    Deletes every link whose whole name is ``nl<name>`` + an owned suffix (deleting a bridge
    releases its ports, so the access interface is free again) and every IPv4/IPv6 route with
    protocol :data:`ROUTE_PROTO`, in every table. A TAP or TUN whose process died is already
    gone with its fd (they are not persistent), and its routes with it; the bridges are what
    normally remains.
    """
    links: list[str] = []
    routes: list[str] = []
    with _netlink() as ipr:
        for link in ipr.get_links():
            ifname = link.get_attr("IFLA_IFNAME")
            if ifname and is_owned(name, ifname):
                with contextlib.suppress(NetlinkError):  # raced away meanwhile
                    ipr.link("del", index=link["index"])
                    links.append(ifname)
        for family in (_AF_INET, _AF_INET6):
            for msg in ipr.route("dump", family=family):
                if msg["proto"] != ROUTE_PROTO:
                    continue
                key = _route_key(msg)
                try:
                    ipr.route("del", **key)
                except NetlinkError as exc:
                    if exc.code != errno.ESRCH:
                        raise
                    continue  # went with a link deleted above
                routes.append(_describe(key))
    if links or routes:
        log.info("swept links=%s routes=%s", ",".join(links), ",".join(routes))
    return Swept(tuple(links), tuple(routes))


@dataclass(slots=True)
class _Route:
    family: int
    dst: str
    dst_len: int
    oif: int


@dataclass(slots=True)
class Devices:
    """The kernel objects one run creates, so :meth:`teardown` removes exactly those.

    The TAP/TUN fds returned by :meth:`create_tap` / :meth:`create_tun` belong to this object:
    stop using them (remove their readers) before :meth:`teardown`, which closes them; never
    close them yourself.
    """

    name: str
    _taps: dict[str, Any] = field(default_factory=dict)  # ifname -> pytun.TunTapDevice
    _links: list[str] = field(default_factory=list)  # bridges, in creation order
    _routes: list[_Route] = field(default_factory=list)

    def __post_init__(self) -> None:
        link_prefix(self.name)  # validates the name

    # --- TAP / TUN --------------------------------------------------------------------------

    def _tuntap(self, ifname: str, flags: int, mtu: int, offload: bool) -> int:
        if not is_owned(self.name, ifname):
            raise ValueError(f"{ifname!r} does not carry node {self.name!r}'s owner tag")
        if ifname in self._taps:
            raise ValueError(f"{ifname!r} already created")
        if offload:
            flags |= pytun.IFF_VNET_HDR
        dev = pytun.TunTapDevice(name=ifname, flags=flags | pytun.IFF_NO_PI)
        try:
            if offload:
                fcntl.ioctl(dev.fileno(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
            os.set_blocking(dev.fileno(), False)
            dev.mtu = mtu
            # Neither link carries IPv6: the TAP only bridges, the TUN carries IPv4 only.
            _disable_ipv6(ifname)
            dev.up()
        except BaseException:
            dev.close()
            raise
        self._taps[ifname] = dev
        log.info("created ifname=%s mtu=%d offload=%s", ifname, mtu, offload)
        return int(dev.fileno())

    def create_tap(self, ifname: str, mtu: int = 1500, offload: bool = False) -> int:
        """A TAP (``IFF_TAP | IFF_NO_PI``), up, IPv6 off; returns its non-blocking fd.

        Reading the fd gives whole Ethernet frames that reached the TAP; writing one sends it.
        With ``offload``, ``IFF_VNET_HDR`` and ``TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 |
        TUN_F_TSO6)``: every read and write starts with a :data:`VNET_HDR_LEN`-byte ``struct
        virtio_net_hdr``, and reads may give TCP/IPv4 and TCP/IPv6 super-packets and partial
        checksums (``fastpath.segment``).
        """
        return self._tuntap(ifname, pytun.IFF_TAP, mtu, offload)

    def create_tun(self, ifname: str, mtu: int = 1500, offload: bool = False) -> int:
        """A TUN (``IFF_TUN | IFF_NO_PI``), up, IPv6 off; returns its non-blocking fd.

        Reading gives the IPv4 packets the kernel routes into the TUN; writing one injects it
        into the kernel as if received on the TUN. Give it the tunnel MTU, so the kernel
        itself answers oversize DF packets towards an MS with ICMP "fragmentation needed".
        ``offload`` as in :meth:`create_tap`.
        """
        return self._tuntap(ifname, pytun.IFF_TUN, mtu, offload)

    def route_prefix_pool(self, tun_ifname: str, pool: IPv6Network) -> None:
        """Dual-stack MSs (RFC 5213 home network prefixes from ``dlmap.ipv6_pool``): IPv6 on on
        the TUN (no address generation, no RAs taken), and ``pool`` routed into it with
        protocol :data:`ROUTE_PROTO`, so the fastpath tunnels a prefix's downlink to its DMPA.
        """
        conf = _SYS_NET / "ipv6" / "conf" / tun_ifname
        if not conf.exists():
            raise OSError(f"IPv6 is disabled in this kernel: {tun_ifname} cannot carry {pool}")
        for key, value in (("addr_gen_mode", "1"), ("accept_ra", "0"), ("disable_ipv6", "0")):
            _write_sysctl(conf / key, value)
        with _netlink() as ipr:
            tun = _index(ipr, tun_ifname)
            ipr.route(
                "add",
                family=_AF_INET6,
                dst=str(pool.network_address),
                dst_len=pool.prefixlen,
                oif=tun,
                proto=ROUTE_PROTO,
            )
        self._routes.append(_Route(_AF_INET6, str(pool.network_address), pool.prefixlen, tun))
        log.info("routed ipv6_pool=%s dev=%s", pool, tun_ifname)

    # --- DMPA: the access bridge -------------------------------------------------------------

    def bridge_access(self, access_ifname: str, tap_ifname: str, bridge_ifname: str) -> None:
        """Bridge an existing access interface with our TAP, so an MS on that link reaches the
        TAP and what we write to the TAP reaches the MS.

        The bridge forwards at once (no STP, forward delay 0) and has IPv6 off (no RA, DAD or
        MLD noise on the access link). The access interface is enslaved and brought up; its
        own settings are not changed. :meth:`teardown` (or :func:`sweep`) deletes the bridge,
        which releases the access interface.
        """
        if not is_owned(self.name, bridge_ifname):
            raise ValueError(f"{bridge_ifname!r} does not carry node {self.name!r}'s owner tag")
        with _netlink() as ipr:
            access = _index(ipr, access_ifname)
            tap = _index(ipr, tap_ifname)
            ipr.link(
                "add",
                ifname=bridge_ifname,
                kind="bridge",
                br_stp_state=0,
                br_forward_delay=0,
            )
            self._links.append(bridge_ifname)
            bridge = _index(ipr, bridge_ifname)
            _disable_ipv6(bridge_ifname)
            for port in (access, tap):
                ipr.link("set", index=port, master=bridge)
                ipr.link("set", index=port, state="up")
            ipr.link("set", index=bridge, state="up")
        log.info("bridged access=%s tap=%s bridge=%s", access_ifname, tap_ifname, bridge_ifname)

    # --- DLMAP: the HoA network in the TUN ----------------------------------------------------

    def route_hoa_network(
        self, tun_ifname: str, gateway: IPv4Address, network: IPv4Network
    ) -> None:
        """Put the MS's default gateway address on the TUN and route the HoA network into it.

        The gateway is added as ``/32`` (no kernel ``proto kernel`` prefix route appears), and
        ``network`` is routed to the TUN with protocol :data:`ROUTE_PROTO`. Packets to the
        gateway stay local (the local table wins); every other address of the network leaves
        through the TUN to the fastpath.

        Reverse-path filtering: an MS's packet, written into the TUN by the fastpath, has its
        HoA as source, and the route back to that HoA is this TUN route, so it passes even the
        strict ``rp_filter = 1``. Nothing is loosened. (A static HoA outside ``network``
        would need its own route into the TUN to pass strict filtering.)
        """
        with _netlink() as ipr:
            tun = _index(ipr, tun_ifname)
            ipr.addr("add", index=tun, address=str(gateway), prefixlen=32)
            ipr.route(
                "add",
                dst=str(network.network_address),
                dst_len=network.prefixlen,
                oif=tun,
                proto=ROUTE_PROTO,
            )
        self._routes.append(_Route(_AF_INET, str(network.network_address), network.prefixlen, tun))
        log.info("routed network=%s dev=%s gateway=%s", network, tun_ifname, gateway)

    # --- readiness -----------------------------------------------------------------------------

    def wait_link_up(self, ifname: str, timeout: float = 5.0) -> None:
        """Poll until ``ifname`` can pass frames, or raise :class:`TimeoutError`.

        Ready means: administratively up, carrier (``LOWER_UP``), operational state ``UP`` or
        ``UNKNOWN`` (what TUN/TAP report), and, for a bridge port, port state forwarding.
        """
        wait_link_up(ifname, timeout)

    # --- teardown ------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Remove what this run created: routes, bridges, then the TAP/TUN (closing their fds).

        Best effort: each step is tried even if an earlier one failed; failures are logged.
        Idempotent.
        """
        try:
            with _netlink() as ipr:
                for route in reversed(self._routes):
                    try:
                        ipr.route(
                            "del",
                            family=route.family,
                            dst=route.dst,
                            dst_len=route.dst_len,
                            oif=route.oif,
                            proto=ROUTE_PROTO,
                        )
                    except NetlinkError as exc:
                        if exc.code != errno.ESRCH:
                            log.warning(
                                "teardown route=%s/%d error=%s", route.dst, route.dst_len, exc
                            )
                for ifname in reversed(self._links):
                    found = ipr.link_lookup(ifname=ifname)
                    if found:
                        try:
                            ipr.link("del", index=found[0])
                        except NetlinkError as exc:
                            log.warning("teardown link=%s error=%s", ifname, exc)
        finally:
            self._routes.clear()
            self._links.clear()
            for ifname, dev in self._taps.items():
                try:
                    dev.close()  # a non-persistent TAP/TUN disappears with its last fd
                except OSError as exc:
                    log.warning("teardown link=%s error=%s", ifname, exc)
            self._taps.clear()


def _link_ready(link: Any) -> bool:
    flags = int(link["flags"])
    if not flags & _IFF_UP or not flags & _IFF_LOWER_UP:
        return False
    if link.get_attr("IFLA_OPERSTATE") not in ("UP", "UNKNOWN"):
        return False
    info = link.get_attr("IFLA_LINKINFO")
    if info is not None and info.get_attr("IFLA_INFO_SLAVE_KIND") == "bridge":
        data = info.get_attr("IFLA_INFO_SLAVE_DATA")
        if data is None or data.get_attr("IFLA_BRPORT_STATE") != _BR_STATE_FORWARDING:
            return False
    return True


def wait_link_up(ifname: str, timeout: float = 5.0, interval: float = 0.05) -> None:
    """Poll until link ``ifname`` can pass frames (see :meth:`Devices.wait_link_up`)."""
    deadline = time.monotonic() + timeout
    with _netlink() as ipr:
        while True:
            found = ipr.link_lookup(ifname=ifname)
            if found and _link_ready(ipr.get_links(found[0])[0]):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"link {ifname} not up after {timeout:g} s")
            time.sleep(interval)


def wait_address(address: IPv6Address, timeout: float = 5.0, interval: float = 0.05) -> None:
    """Poll until ``address`` is on a link of this namespace and usable (DAD finished).

    Binding a raw socket to a tentative address fails (``EADDRNOTAVAIL``); call this before
    :func:`router.adapters.sockets.open_mh_socket` when the address may be new.
    """
    tentative_or_failed = 0x40 | 0x08  # IFA_F_TENTATIVE | IFA_F_DADFAILED
    deadline = time.monotonic() + timeout
    with _netlink() as ipr:
        while True:
            for msg in ipr.get_addr(family=_AF_INET6):
                if (
                    msg.get_attr("IFA_ADDRESS")
                    and IPv6Address(msg.get_attr("IFA_ADDRESS")) == address
                ):
                    flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
                    if not flags & tentative_or_failed:
                        return
                    if flags & 0x08:
                        raise OSError(errno.EADDRNOTAVAIL, f"duplicate address {address}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"address {address} not usable after {timeout:g} s")
            time.sleep(interval)
