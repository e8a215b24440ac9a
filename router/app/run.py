"""``netlmm run``: one process, one uvloop loop, one role.

Start-up, in order (what :mod:`router.adapters.devices` needs): wait until our IPv6 address is
usable, sweep what a crashed run of this node left in the kernel, create the devices (DMPA: a
TAP per access link bridged with it; DLMAP: the TUN with the gateway address, the HoA network
routed into it, IPv4 forwarding on), open the SQLite state, the MH socket and the tunnel
sockets, start the node, the control socket and the metrics endpoint (``node.metrics``).
SIGTERM or SIGINT stops it in reverse order: the devices and routes it made are removed, the
bindings stay in the database.

SIGHUP (:func:`reload`) re-reads the ini file and applies what can change in a running node,
without touching the bindings: the RFC 4285 keys (``node.key_file``'s content), the log level
and format, and the DMPA's local AAA profiles. Every other changed key is logged as needing a
restart (``reload needs a restart key=...``) and keeps its running value; a file with errors is
refused as a whole (each error logged) and changes nothing.

Netlink calls block and cannot run on the loop's thread: they go through an executor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from router.adapters import devices, sockets
from router.adapters.aaa import AAA, AAAConfig
from router.adapters.control import ControlError, ControlServer
from router.adapters.radius import RadiusConfig, parse_server
from router.adapters.store import Store, StoreError
from router.app import logs
from router.app.dlmap_node import DLMAPNode, DLMAPPorts
from router.app.dmpa_node import DMPANode, DMPAPorts
from router.app.settings import DLMAPSettings, DMPASettings, RadiusSettings, Settings
from router.app.tuning import tune_gc
from router.core.limits import LimitSettings, Rate
from router.core.security import KeyRing

log = logging.getLogger("netlmm")

Node = DMPANode | DLMAPNode


def _radius(settings: RadiusSettings | None, address: IPv6Address) -> RadiusConfig | None:
    if settings is None:
        return None
    servers = tuple(parse_server(spec, secret) for spec, secret in settings.servers)
    return RadiusConfig(
        servers=servers,
        nas_identifier=settings.nas_identifier,
        nas_ipv6_address=address,
        timeout=settings.timeout,
        retries=settings.retries,
    )


async def serve(
    settings: Settings,
    *,
    fastpath: str = "auto",
    config_path: Path | None = None,
    log_format: str | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    node_settings = settings.node
    name, address = node_settings.name, node_settings.address
    run = loop.run_in_executor
    await run(None, devices.wait_address, address, 10.0)
    swept = await run(None, devices.sweep, name)
    if swept.links or swept.routes:
        log.info("swept leftovers links=%s routes=%s", swept.links, swept.routes)
    kernel = devices.Devices(name)
    try:
        store = Store(node_settings.state_dir / "state.sqlite")
    except StoreError as exc:
        log.error("cannot open the state database: %s", exc)
        await run(None, kernel.teardown)
        return 1
    mh = sockets.open_mh_socket(address)
    tunnel_rx = sockets.open_tunnel_rx(address, rcvbuf=4 << 20)
    raw_tx = sockets.open_raw_tx(address)
    node: Node
    relay_transport: asyncio.DatagramTransport | None = None
    try:
        if isinstance(settings, DMPASettings):
            taps = []
            for link, access in enumerate(settings.access):
                tap = devices.tap_name(name, link)
                fd = await run(None, kernel.create_tap, tap, 1500, node_settings.offload)
                await run(None, kernel.bridge_access, access, tap, devices.bridge_name(name, link))
                taps.append(fd)
            for link in range(len(settings.access)):
                await run(None, kernel.wait_link_up, devices.bridge_name(name, link), 10.0)
            aaa = AAA(
                AAAConfig(
                    backend=settings.aaa,
                    profiles=settings.profiles,
                    radius=_radius(settings.radius, address),
                )
            )
            dmpa_ports = DMPAPorts(
                mh_send=None,
                tunnel_send=None,
                tunnel_rx_fd=tunnel_rx.fileno(),
                raw_tx_fd=raw_tx.fileno(),
                tap_fds=taps,
            )
            node = DMPANode(settings, dmpa_ports, store, aaa, loop, fastpath=fastpath)
            try:  # 802.1X links: the RADIUS proxy for hostapd, and hostapd's events
                await node.authenticators.start(_radius(settings.radius, address))
            except OSError as exc:
                log.error("radius proxy cannot listen key=radius.proxy error=%s", exc)
                return 1
            dmpa_ports.tunnel_send = sockets.tunnel_sender(tunnel_rx, node.counters)
            dmpa_ports.raw_send = sockets.raw_sender(raw_tx, node.counters)
        else:
            assert isinstance(settings, DLMAPSettings)
            tun_name = devices.tun_name(name)
            tun = await run(
                None, kernel.create_tun, tun_name, settings.tunnel_mtu, node_settings.offload
            )
            await run(None, kernel.route_hoa_network, tun_name, settings.gateway, settings.network)
            await run(None, devices.enable_ipv4_forwarding)
            await run(None, kernel.wait_link_up, tun_name, 10.0)
            dlmap_ports = DLMAPPorts(
                mh_send=None,
                tunnel_send=None,
                tunnel_rx_fd=tunnel_rx.fileno(),
                raw_tx_fd=raw_tx.fileno(),
                tun_fd=tun,
            )
            node = DLMAPNode(settings, dlmap_ports, store, loop, fastpath=fastpath)
            dlmap_ports.tunnel_send = sockets.tunnel_sender(tunnel_rx, node.counters)
            dlmap_ports.raw_send = sockets.raw_sender(raw_tx, node.counters)
            if settings.dhcp == "relay":
                relay_transport = await _open_relay(loop, node, settings.gateway)
        # a bug in a handler drops the input, not the process (runner.Boundary)
        endpoint = sockets.MHEndpoint(mh, node.runner.boundary.wrap("mh", node.on_mh))
        node.ports.mh_send = endpoint.send
        endpoint.start(loop)
        metrics = None
        if node_settings.metrics is not None:
            from router.adapters.metrics_http import MetricsServer
            from router.app.metrics import registry_for

            registry, observer = registry_for(node, lambda: {"mh_socket": endpoint.counters})
            node.runner.observers.append(observer)
            metrics = MetricsServer(registry, *node_settings.metrics)
            try:  # before the node starts: a busy port fails the start, not a running node
                await metrics.start()
            except OSError as exc:
                host, port = node_settings.metrics
                log.error("metrics cannot listen address=%s port=%d error=%s", host, port, exc)
                return 1
        node.start()
        control = ControlServer(node_settings.control_socket, _control_handler(node, endpoint))
        await control.start()
        tune_gc()
        # SIGHUP: what can be reloaded is, the rest is reported (module docstring).
        loop.add_signal_handler(signal.SIGHUP, lambda: reload(node, config_path, log_format))
        log.info("running role=%s name=%s address=%s", node_settings.role, name, address)
        await _until_signal(loop)
        log.info("stopping")
        if metrics is not None:
            await metrics.close()
        await control.close()
        node.stop()
        endpoint.stop()
        return 0
    finally:
        if relay_transport is not None:
            relay_transport.close()
        for sock in (mh, tunnel_rx, raw_tx):
            sock.close()
        await run(None, kernel.teardown)
        store.close()


async def _open_relay(
    loop: asyncio.AbstractEventLoop, node: DLMAPNode, gateway: IPv4Address
) -> asyncio.DatagramTransport:
    """The relay's UDP socket on the gateway address, port 67 (replies from the DHCP servers)."""

    on_reply = node.runner.boundary.wrap("dhcp_server_reply", node.on_dhcp_from_server)

    class Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            on_reply(data, IPv4Address(addr[0]))

    transport, _ = await loop.create_datagram_endpoint(
        Protocol, local_addr=(str(gateway), 67), reuse_port=False
    )

    def send(payload: bytes, server: IPv4Address, port: int) -> None:
        transport.sendto(payload, (str(server), port))

    node.ports.dhcp_server_send = send
    return transport


def flatten(settings: Settings) -> dict[str, object]:
    """``section.key`` -> value, as the ini file names them (a peer or profile: one entry)."""
    out: dict[str, object] = {}
    role = settings.node.role
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name == "node":
            for nf in dataclasses.fields(value):
                if nf.name != "keys":  # the key file's content: reloaded on every SIGHUP
                    out[f"node.{nf.name}"] = getattr(value, nf.name)
        elif f.name == "peers":
            out.update({f"peer {p.address}": p for p in value})
        elif f.name == "profiles":
            out.update({f"profile {p.nai}": p for p in value})
        elif f.name == "radius":
            out["radius"] = value
        elif f.name == "limits":  # [limits] NAME_rate, NAME_burst of this role, table_size
            out.update(_limit_keys(role, value))
        else:
            out[f"{role}.{f.name}"] = value
    return out


def _limit_keys(role: str, limits: LimitSettings) -> dict[str, object]:
    from router.app.config import LIMITS_DLMAP, LIMITS_DMPA

    out: dict[str, object] = {}
    for name in LIMITS_DMPA if role == "dmpa" else LIMITS_DLMAP:
        rate: Rate = getattr(limits, name)
        out[f"limits.{name}_rate"] = rate.rate
        out[f"limits.{name}_burst"] = rate.burst
    out["limits.table_size"] = limits.table_size
    return out


def redacted(value: object) -> object:
    """Settings as JSON-ready data, secrets out: RADIUS secrets and RFC 4285 keys never leave."""
    if isinstance(value, KeyRing):
        return {"spis": list(value.spis)}
    if isinstance(value, bytes | bytearray):
        return "(secret)"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: redacted(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [redacted(item) for item in value]
    if isinstance(value, dict):
        return {str(k): redacted(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def reload(node: Node, path: Path | None, log_format: str | None = None) -> list[str]:
    """SIGHUP: apply what can change at run time, log the rest; returns the keys applied."""
    from router.app import config

    log.info("reload path=%s", path)
    node.reload_keys()  # RFC 4285 keys: a bad file keeps the old keys (logged)
    if path is None:
        return []
    try:
        new, warnings = config.load(path)
    except config.ConfigErrors as exc:
        for problem in exc.problems:
            log.error("reload refused, nothing changed: problem=%s", logs.quote(problem))
        return []
    for warning in warnings:
        log.warning("reload warning=%s", warning)
    current = node.settings
    if new.node.role != current.node.role:
        log.warning("reload needs a restart key=node.role")
        return []
    old_view, new_view = flatten(current), flatten(new)
    changed = sorted(
        k for k in old_view.keys() | new_view.keys() if old_view.get(k) != new_view.get(k)
    )
    applied: list[str] = []
    node_fields: dict[str, Any] = {}
    if "node.log_level" in changed:
        logs.set_level(new.node.log_level)
        node_fields["log_level"] = new.node.log_level
    if "node.log_format" in changed and log_format is None:
        logs.setup(new.node.log_level, new.node.log_format)
        node_fields["log_format"] = new.node.log_format
    replace: dict[str, Any] = {}
    profiles = [k for k in changed if k.startswith("profile ")]
    if profiles and isinstance(node, DMPANode) and isinstance(new, DMPASettings):
        node.aaa.set_profiles(new.profiles)
        node.runner.submit(node.access.forget_rejected(node.clock.now()))  # they may get in now
        replace["profiles"] = new.profiles
        applied += profiles
    if node_fields:
        replace["node"] = dataclasses.replace(current.node, **node_fields)
        applied += [f"node.{k}" for k in node_fields]
    if replace:
        node.settings = dataclasses.replace(current, **replace)
    for key in changed:
        if key not in applied:
            log.warning("reload needs a restart key=%s", logs.quote(key))
    log.info("reloaded applied=%s", ",".join(applied) or "-")
    return applied


def _control_handler(
    node: Node, endpoint: sockets.MHEndpoint
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def handle(request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        if command == "associated":
            if not isinstance(node, DMPANode):
                raise ControlError("only a DMPA has access links")
            try:
                link = request.get("link")
                mac = str(request.get("mac", ""))
                result = node.associated(mac, None if link is None else str(link))
            except ValueError as exc:
                raise ControlError(str(exc)) from None
            return {"what": command, "role": node.settings.node.role, "result": result}
        if command != "show":
            raise ControlError(f"unknown command {command!r}")
        what = str(request.get("what", ""))
        if what == "config":
            view = {k: redacted(v) for k, v in flatten(node.settings).items()}
            keys = node.settings.node.keys
            view["node.keys"] = redacted(keys) if keys is not None else None
            return {"what": what, "role": node.settings.node.role, "result": view}
        try:
            result = node.show(what)
        except KeyError:
            raise ControlError(f"nothing called {what!r} to show") from None
        if what == "counters" and isinstance(result, dict):
            result["mh_socket"] = dict(endpoint.counters)
        return {"what": what, "role": node.settings.node.role, "result": result}

    return handle


async def _until_signal(loop: asyncio.AbstractEventLoop) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run(
    settings: Settings,
    *,
    fastpath: str = "auto",
    config_path: Path | None = None,
    log_format: str | None = None,
) -> int:
    """Run the appliance until SIGTERM/SIGINT, on uvloop. ``log_format`` (the command line's)
    overrides ``node.log_format``; ``config_path`` is re-read on SIGHUP."""
    import uvloop

    logs.setup(settings.node.log_level, log_format or settings.node.log_format)
    return uvloop.run(
        serve(settings, fastpath=fastpath, config_path=config_path, log_format=log_format)
    )
