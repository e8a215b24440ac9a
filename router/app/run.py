"""``netlmm run``: one process, one uvloop loop, one role.

Start-up, in order (what :mod:`router.adapters.devices` needs): wait until our IPv6 address is
usable, sweep what a crashed run of this node left in the kernel, create the devices (DMPA: a
TAP per access link bridged with it; DLMAP: the TUN with the gateway address, the HoA network
routed into it, IPv4 forwarding on), open the SQLite state, the MH socket and the tunnel
sockets, start the node and the control socket. SIGHUP re-reads the RFC 4285 key file
(``node.key_file``) without touching the bindings. SIGTERM or SIGINT stops it in reverse order:
the devices and routes it made are removed, the bindings stay in the database.

Netlink calls block and cannot run on the loop's thread: they go through an executor.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from router.adapters import devices, sockets
from router.adapters.aaa import AAA, AAAConfig
from router.adapters.control import ControlError, ControlServer
from router.adapters.radius import RadiusConfig, parse_server
from router.adapters.store import Store, StoreError
from router.app.dlmap_node import DLMAPNode, DLMAPPorts
from router.app.dmpa_node import DMPANode, DMPAPorts
from router.app.runtime import tune_gc
from router.app.settings import DLMAPSettings, DMPASettings, RadiusSettings, Settings

log = logging.getLogger("netlmm")

Node = DMPANode | DLMAPNode


def tunnel_sender(sock: socket.socket, counters: Any) -> Callable[[bytes, IPv6Address], None]:
    """The slow path's tunnel output: a raw protocol-4 socket, the kernel adds the outer header
    (and fragments at the IPv6 level if it must; wire-reference 6.3)."""

    def send(packet: bytes, dst: IPv6Address) -> None:
        try:
            sock.sendto(packet, (str(dst), 0))
        except OSError as exc:
            counters[f"tunnel.slow_tx_error.{type(exc).__name__}"] += 1

    return send


def raw_sender(sock: socket.socket, counters: Any) -> Callable[[bytes], None]:
    """The slow path's way out for a whole IPv6 packet the fastpath built: a raw socket is not
    connected, so each packet goes to the destination its own header names."""

    def send(packet: bytes) -> None:
        try:
            sock.sendto(packet, (str(IPv6Address(packet[24:40])), 0))
        except OSError as exc:
            counters[f"tunnel.slow_tx_error.{type(exc).__name__}"] += 1

    return send


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


async def serve(settings: Settings, *, fastpath: str = "auto") -> int:
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
            dmpa_ports.tunnel_send = tunnel_sender(tunnel_rx, node.counters)
            dmpa_ports.raw_send = raw_sender(raw_tx, node.counters)
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
            dlmap_ports.tunnel_send = tunnel_sender(tunnel_rx, node.counters)
            dlmap_ports.raw_send = raw_sender(raw_tx, node.counters)
            if settings.dhcp == "relay":
                relay_transport = await _open_relay(loop, node, settings.gateway)
        endpoint = sockets.MHEndpoint(mh, node.on_mh)
        node.ports.mh_send = endpoint.send
        endpoint.start(loop)
        node.start()
        control = ControlServer(node_settings.control_socket, _control_handler(node, endpoint))
        await control.start()
        tune_gc()
        # SIGHUP: re-read the RFC 4285 key file; bindings stay, a bad file keeps the old keys.
        loop.add_signal_handler(signal.SIGHUP, node.guard.reload)
        log.info("running role=%s name=%s address=%s", node_settings.role, name, address)
        await _until_signal(loop)
        log.info("stopping")
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

    class Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            node.on_dhcp_from_server(data, IPv4Address(addr[0]))

    transport, _ = await loop.create_datagram_endpoint(
        Protocol, local_addr=(str(gateway), 67), reuse_port=False
    )

    def send(payload: bytes, server: IPv4Address, port: int) -> None:
        transport.sendto(payload, (str(server), port))

    node.ports.dhcp_server_send = send
    return transport


def _control_handler(
    node: Node, endpoint: sockets.MHEndpoint
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def handle(request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        if command != "show":
            raise ControlError(f"unknown command {command!r}")
        what = str(request.get("what", ""))
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


def run(settings: Settings, *, fastpath: str = "auto") -> int:
    """Run the appliance until SIGTERM/SIGINT, on uvloop."""
    import uvloop

    logging.basicConfig(
        level=getattr(logging, settings.node.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("pyroute2", "asyncio"):  # their debug output is per netlink message
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    return uvloop.run(serve(settings, fastpath=fastpath))
