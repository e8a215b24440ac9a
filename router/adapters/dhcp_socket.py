"""The relay's UDP socket: an asyncio datagram endpoint bound to the relay address, port 67.

It feeds :meth:`DhcpRelay.receive_from_server` with what the servers send and carries out the
actions: :class:`SendToServer` on this socket; :class:`SendTunnel`, :class:`Persist` and events
through the callbacks the application gives (the tunnel is the fastpath's, the store is the
store's). Requests from the DMPAs come in through :meth:`RelayEndpoint.from_dmpa`, called by the
slow path with what the fastpath punted.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import cast

from router.core.actions import Event, Persist, SendTunnel
from router.core.common import RateLimiter
from router.services.dhcp_relay import DhcpRelay, DhcpRelayCounter, RelayAction, SendToServer

log = logging.getLogger(__name__)

TunnelSend = Callable[[IPv6Address, bytes], None]
PersistSink = Callable[[list[Persist]], None]


class RelayEndpoint(asyncio.DatagramProtocol):
    """The relay core behind one UDP socket. ``clock`` is monotonic, ``wall_clock`` wall time."""

    def __init__(
        self,
        relay: DhcpRelay,
        send_tunnel: TunnelSend,
        persist: PersistSink | None = None,
        on_event: Callable[[Event], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.relay = relay
        self.send_tunnel = send_tunnel
        self.persist = persist
        self.on_event = on_event
        self.clock = clock
        self.wall_clock = wall_clock
        self.transport: asyncio.DatagramTransport | None = None
        self._log_limit = RateLimiter(10.0)
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's transport (the selector loop's class is not a subclass of
        # asyncio.DatagramTransport on every Python version, so no isinstance check).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            source = IPv4Address(str(addr[0]))
        except ValueError:
            self.relay.counters[DhcpRelayCounter.REPLY_BAD_SOURCE] += 1
            return
        now = self.clock()
        self.run(self.relay.receive_from_server(data, source, now, self.wall_clock()))

    def error_received(self, exc: Exception) -> None:
        self.relay.counters[DhcpRelayCounter.SOCKET_ERROR] += 1
        if self._log_limit.allow("error", self.clock()):
            log.warning("dhcp_relay_socket_error error=%s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()

    # --- the slow path's side --------------------------------------------------------------

    def from_dmpa(self, packet: bytes, dmpa: IPv6Address) -> None:
        """An IPv4 packet with DHCP that the tunnel of ``dmpa`` carried (punted by the fastpath)."""
        self.run(self.relay.receive_from_dmpa(packet, dmpa, self.clock()))

    def run(self, actions: Iterable[RelayAction]) -> None:
        """Carry out the actions in order: persistence first, as the cores expect."""
        batch = list(actions)
        persists = [a for a in batch if isinstance(a, Persist)]
        if persists and self.persist is not None:
            self.persist(persists)
        for action in batch:
            if isinstance(action, SendToServer):
                if self.transport is not None:
                    self.transport.sendto(action.payload, (str(action.server), action.port))
            elif isinstance(action, SendTunnel):
                self.send_tunnel(action.peer, action.packet)
            elif isinstance(action, Event) and self.on_event is not None:
                self.on_event(action)
        self._arm()

    def _arm(self) -> None:
        deadline = self.relay.get_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - self.clock())
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.run(self.relay.handle_timer(self.clock()))


async def open_relay_socket(
    endpoint: RelayEndpoint, host: IPv4Address | None = None, port: int = 67
) -> asyncio.DatagramTransport:
    """Bind ``endpoint`` to ``host`` (default: the relay's giaddr) and ``port``."""
    address = endpoint.relay.config.giaddr if host is None else host
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(address), port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
    return transport
