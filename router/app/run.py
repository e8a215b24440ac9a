"""``netlmm run``: one process, one uvloop loop, one role.

Start-up, in order (what :mod:`router.adapters.devices` needs): wait until our IPv6 address is
usable, sweep what a crashed run of this node left in the kernel, create the devices (DMPA: a
TAP per access link bridged with it; DLMAP: the TUN with the gateway address, the HoA network
routed into it, IPv4 forwarding on), open the SQLite state, the MH socket and the tunnel
sockets, start the node, the control socket and the metrics endpoint (``node.metrics``).
SIGTERM or SIGINT stops it in reverse order: the devices and routes it made are removed, the
bindings stay in the database.

Before any of that, :func:`router.app.preflight.prepare` takes the node's lock and checks what
can be known (state dir, control socket, privileges, access interfaces): a start that cannot
succeed stops with one ``start_failed key=... problem=... fix=...`` line per cause and exit 2,
and never touches a running node's devices.

SIGHUP and ``netlmm reload``: :class:`router.app.operations.Reloader`.

Netlink calls block and cannot run on the loop's thread: they go through an executor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from router.adapters import devices, sdnotify, sockets
from router.adapters.aaa import AAA, AAAConfig
from router.adapters.control import ControlServer
from router.adapters.kernelpath import KernelPath
from router.adapters.radius import RadiusConfig, parse_server
from router.adapters.store import Store, StoreError
from router.app import logs, preflight, tiers, watch
from router.app.dlmap_node import DLMAPNode, DLMAPPorts
from router.app.dmpa_node import DMPANode, DMPAPorts
from router.app.ha import prepare as prepare_ha
from router.app.operations import Reloader, control_handler
from router.app.preflight import Problem, StartError
from router.app.settings import DLMAPSettings, DMPASettings, RadiusSettings, Settings
from router.app.tuning import tune_gc
from router.services.common import Drops

log = logging.getLogger("netlmm")

Node = DMPANode | DLMAPNode
#: Exit status of a DLMAP fenced by another holder of its identity (store = postgresql): its
#: service unit must not restart it on this status (RestartPreventExitStatus=3).
EXIT_FENCED = 3


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
    """The node until SIGTERM/SIGINT; :class:`StartError` when it cannot start."""
    lock = preflight.prepare(settings)  # before anything touches the kernel
    running = asyncio.Event()
    try:
        return await _serve(
            settings,
            fastpath=fastpath,
            config_path=config_path,
            log_format=log_format,
            running=running,
        )
    except (OSError, LookupError, TimeoutError) as exc:
        if running.is_set():
            raise
        log.debug("start_failed_traceback", exc_info=True)
        problem = f"{type(exc).__name__}: {exc}"
        fix = "see the lines above; node.log_level = debug logs the traceback"
        raise StartError([Problem("-", problem, fix)], exit_status=1) from None
    finally:
        lock.release()


async def _serve(
    settings: Settings,
    *,
    fastpath: str,
    config_path: Path | None,
    log_format: str | None,
    running: asyncio.Event,
) -> int:
    loop = asyncio.get_running_loop()
    node_settings = settings.node
    name, address = node_settings.name, node_settings.address
    run = loop.run_in_executor
    try:  # store = postgresql: the identity claimed (ha = pair: after waiting as the standby)
        network = str(settings.network) if isinstance(settings, DLMAPSettings) else None
        ha = await prepare_ha(node_settings, network)
    except StoreError as exc:
        raise StartError(
            [
                Problem(
                    "node.store_dsn",
                    f"cannot open the state database: {exc}",
                    "check node.store_dsn, node.store_password_file and that the database is up",
                )
            ]
        ) from None
    await run(None, preflight.wait_address, address)
    # tunnel_mtu + 40 must fit every peer's route: warn and run with what fits (watch.py)
    mtus = await run(None, watch.route_mtus, settings)
    configured_mtu = settings.tunnel_mtu
    configured: dict[str, object] = {f"{node_settings.role}.tunnel_mtu": configured_mtu}
    settings = watch.clamp_tunnel_mtu(settings, mtus)
    swept = await run(None, devices.sweep, name)
    if swept.links or swept.routes:
        log.info("swept_leftovers links=%s routes=%s", swept.links, swept.routes)
    await run(None, tiers.sweep_kernel, settings)  # a crashed run's TC filters
    kernel = devices.Devices(name)
    try:
        store = ha.store or Store(node_settings.state_dir / "state.sqlite")
    except StoreError as exc:
        await run(None, kernel.teardown)
        raise StartError(
            [
                Problem(
                    "node.state_dir",
                    f"cannot open the state database: {exc}",
                    "free space or fix the permissions of node.state_dir",
                )
            ]
        ) from None
    mh = sockets.open_mh_socket(address)
    tunnel_rx = sockets.open_tunnel_rx(address, rcvbuf=4 << 20)
    tunnel6_rx = sockets.open_tunnel6_rx(address, rcvbuf=1 << 20)  # dual-stack MSs' IPv6
    raw_tx = sockets.open_raw_tx(address)
    node: Node
    relay_transport: asyncio.DatagramTransport | None = None
    kernel_tier: KernelPath | None = None
    endpoint: sockets.MHEndpoint | None = None
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
                tunnel6_rx_fd=tunnel6_rx.fileno(),
            )
            assert isinstance(store, Store)  # a DMPA's state is its own (config: node.store)
            node = DMPANode(settings, dmpa_ports, store, aaa, loop, fastpath=fastpath)
            node.runner.link_names = Drops.link_names = tuple(settings.access)
            try:  # 802.1X links: the RADIUS proxy for hostapd, and hostapd's events
                await node.authenticators.start(_radius(settings.radius, address))
            except OSError as exc:
                raise StartError(
                    [
                        Problem(
                            "radius.proxy",
                            f"the RADIUS proxy for hostapd cannot listen: {exc.strerror or exc}",
                            "free its port or change radius.proxy",
                        )
                    ]
                ) from None
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
            if settings.ipv6_pool is not None:  # dual-stack MSs: their prefixes into the TUN
                await run(None, kernel.route_prefix_pool, tun_name, settings.ipv6_pool)
                await run(None, devices.enable_ipv6_forwarding)
            await run(None, kernel.wait_link_up, tun_name, 10.0)
            dlmap_ports = DLMAPPorts(
                mh_send=None,
                tunnel_send=None,
                tunnel_rx_fd=tunnel_rx.fileno(),
                raw_tx_fd=raw_tx.fileno(),
                tun_fd=tun,
                tunnel6_rx_fd=tunnel6_rx.fileno(),
            )
            node = DLMAPNode(settings, dlmap_ports, store, loop, fastpath=fastpath)
            node.ha = ha
            node.runner.on_fenced = lambda: os.kill(os.getpid(), signal.SIGTERM)
            dlmap_ports.tunnel_send = sockets.tunnel_sender(tunnel_rx, node.counters)
            dlmap_ports.raw_send = sockets.raw_sender(raw_tx, node.counters)
            if settings.dhcp == "relay":
                relay_transport = await _open_relay(loop, node, settings.gateway)
        try:  # [node] datapath: the kernel tier beside the fastpath, or why not
            kernel_tier = await run(None, tiers.open_kernel_tier, settings)
        except tiers.TierRefused as exc:
            raise StartError(
                [
                    Problem(
                        "node.datapath",
                        str(exc),
                        "set node.datapath = auto or cython, or see docs/kernel-tier.md",
                    )
                ]
            ) from None
        if kernel_tier is not None:
            node.add_backend(kernel_tier)
        # a bug in a handler drops the input, not the process (runner.Boundary)
        boundary = node.runner.boundary
        endpoint = sockets.MHEndpoint(
            mh,
            node.on_mh,
            io=fastpath,
            on_error=lambda: boundary.caught("mh"),
            peers=node.dialects,  # the configured peers' own objects (lookups by identity)
        )
        node.ports.mh_send = endpoint.send
        node.runner.after_flush(endpoint.flush)  # a turn's PBAs: one sendmmsg, after its commit
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
                raise StartError(
                    [
                        Problem(
                            "node.metrics",
                            f"cannot listen on {host} port {port}: {exc.strerror or exc}",
                            "free the port or set node.metrics to another address:port",
                        )
                    ]
                ) from None
        node.start()
        reloader = Reloader(node, config_path, log_format, pinned=configured)
        if reloader.view is not None and settings.tunnel_mtu != configured_mtu:
            key = f"{node_settings.role}.tunnel_mtu"
            reloader.view.notes[key] = (
                f"running with {settings.tunnel_mtu}: cut to the route MTU at start"
            )
        control = ControlServer(
            node_settings.control_socket, control_handler(node, endpoint, reloader)
        )
        await control.start()
        tune_gc()
        # SIGHUP: what can be reloaded is, the rest is reported (module docstring).
        loop.add_signal_handler(signal.SIGHUP, reloader)
        mtu_watch = watch.MtuWatch(settings, mtus)
        watches = [
            asyncio.ensure_future(mtu_watch.run()),
            asyncio.ensure_future(watch.DropLog(_fastpath_counters(node)).run()),
        ]
        try:  # route MTU changes as they happen, beside the 30 s poll
            route_events: watch.RouteEvents | None = watch.RouteEvents(loop, mtu_watch.check)
        except OSError as exc:
            route_events = None
            log.warning(
                "route_events_unavailable error=%s poll_s=%g", exc, watch.MTU_CHECK_INTERVAL
            )
        running.set()
        log.info("running role=%s name=%s address=%s", node_settings.role, name, address)
        systemd = sdnotify.Notifier()
        systemd.notify(ready=1, status=f"{node_settings.role} {name} running", mainpid=os.getpid())
        interval = systemd.watchdog_interval()
        if interval is not None:  # from the loop: a stuck loop stops the pings
            watches.append(asyncio.ensure_future(_watchdog(systemd, interval)))
        await _until_signal(loop)
        systemd.notify(stopping=1)
        log.info("stopping")
        for task in watches:
            task.cancel()
        if route_events is not None:
            route_events.close()
        if metrics is not None:
            await metrics.close()
        await control.close()
        node.stop()
        await node.runner.drain()  # PostgreSQL: the last commit
        endpoint.stop()
        return EXIT_FENCED if node.runner.fenced else 0
    finally:
        if kernel_tier is not None:
            await run(None, kernel_tier.close)
        if relay_transport is not None:
            relay_transport.close()
        if endpoint is not None:
            endpoint.close()  # what is still queued, then the socket
        for sock in (mh, tunnel_rx, tunnel6_rx, raw_tx):
            sock.close()
        await run(None, kernel.teardown)
        store.close()


def _fastpath_counters(node: Node) -> Callable[[], dict[str, int]]:
    def counters() -> dict[str, int]:
        group = node.show_counters().get("fastpath", {})
        return dict(group) if isinstance(group, dict) else {}

    return counters


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


async def _watchdog(systemd: sdnotify.Notifier, interval: float) -> None:
    while True:
        systemd.notify(watchdog=1)
        await asyncio.sleep(interval)


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
    os.umask(0o077)  # state files 0600, directories 0700, with or without systemd
    try:
        return uvloop.run(
            serve(settings, fastpath=fastpath, config_path=config_path, log_format=log_format)
        )
    except StartError as exc:
        exc.log()
        return exc.exit_status
