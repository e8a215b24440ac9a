"""The raw IPv6 sockets of the appliance, and the asyncio endpoint for Mobility Header signaling.

Three sockets, all non-blocking, all needing CAP_NET_RAW, all opened in the process's namespace:

* :func:`open_mh_socket`: raw ``IPPROTO_MH`` (135) bound to our address. The kernel fills the
  MH checksum on send and silently drops a bad one on receive (wire-reference 3.2), so the
  codec never computes it here. Keep it open for the whole run: without it the kernel answers
  a peer's PBU with ICMPv6 "unrecognized Next Header".
* :func:`open_tunnel_rx`: raw protocol 4 bound to our address: the kernel strips the outer
  IPv6 header and gives the inner IPv4 packet, the outer source in the sockaddr
  (wire-reference 6.3). The fastpath's ``pump_tunnel(rx_fd, ...)`` reads it.
* :func:`open_raw_tx`: ``IPPROTO_RAW``, so the IPv6 header is ours (header included). The
  fastpath's pumps write whole IPv4-in-IPv6 packets into it; the slow path uses
  :func:`send_ipv6`.

The fastpath takes the fds (``sock.fileno()``); the sockets stay owned by whoever opened them.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv6Address

from fastpath import implementation
from router.core.common import RateLimiter
from router.core.counters import Counters, Family, Names
from router.wire.constants import IPPROTO_IPIP, IPPROTO_IPV6_IN_IPV6, IPPROTO_MH

log = logging.getLogger(__name__)

#: ``IPV6_CHECKSUM`` from linux/in6.h (not exported by the socket module).
IPV6_CHECKSUM = 7
#: Offset of the MH checksum field (RFC 6275 section 6.1.1), for ``IPV6_CHECKSUM``.
MH_CHECKSUM_OFFSET = 4

_IPV6_HEADER = struct.Struct("!IHBB16s16s")
#: ``SO_RCVBUFFORCE`` from asm-generic/socket.h (typeshed does not list it).
SO_RCVBUFFORCE = 33


def _raw(proto: int, address: IPv6Address | None, rcvbuf: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto)
    try:
        sock.setblocking(False)
        if rcvbuf is not None:
            # FORCE: root may exceed net.core.rmem_max (bursts of tunnel traffic).
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        if address is not None:
            sock.bind((str(address), 0))
    except BaseException:
        sock.close()
        raise
    return sock


def open_mh_socket(address: IPv6Address, rcvbuf: int | None = None) -> socket.socket:
    """Raw MH socket bound to ``address``: receives the MH sent to it, sends from it.

    ``IPV6_CHECKSUM`` is set to 4 explicitly (Linux does that by default for protocol 135; RFC
    4584 errata 741 asks applications to set it). No ``IPV6_RECVPKTINFO``: the socket is bound
    to one address, so the local address of every message is ``address``. Raises
    ``OSError(EADDRNOTAVAIL)`` while ``address`` is absent or tentative (see
    :func:`router.adapters.devices.wait_address`).
    """
    sock = _raw(IPPROTO_MH, address, rcvbuf)
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, MH_CHECKSUM_OFFSET)
    return sock


def open_tunnel_rx(address: IPv6Address, rcvbuf: int | None = None) -> socket.socket:
    """Raw protocol-4 socket bound to ``address``: the inner IPv4 packets of the tunnels that
    end here, outer source in the sockaddr. Only packets whose outer destination is ``address``
    are delivered to it."""
    return _raw(IPPROTO_IPIP, address, rcvbuf)


def open_tunnel6_rx(address: IPv6Address, rcvbuf: int | None = None) -> socket.socket:
    """Raw protocol-41 socket bound to ``address``: the inner IPv6 packets of dual-stack MSs
    (IPv6-in-IPv6, RFC 2473), outer source in the sockaddr, as :func:`open_tunnel_rx`."""
    return _raw(IPPROTO_IPV6_IN_IPV6, address, rcvbuf)


def open_raw_tx(address: IPv6Address | None = None) -> socket.socket:
    """``AF_INET6, SOCK_RAW, IPPROTO_RAW``: every send carries its own IPv6 header (on Linux
    ``IPPROTO_RAW`` implies ``IPV6_HDRINCL``); the destination sockaddr picks the route.

    Bound to ``address`` (our own, the source of everything sent on it), the kernel's route
    lookup per send starts from a known source and skips source address selection."""
    return _raw(socket.IPPROTO_RAW, address, None)


def ipv6_header(
    src: IPv6Address,
    dst: IPv6Address,
    next_header: int,
    payload_length: int,
    hop_limit: int = 64,
    traffic_class: int = 0,
) -> bytes:
    """A 40-byte IPv6 header (RFC 8200 section 3), flow label 0."""
    if not 0 <= payload_length <= 0xFFFF:
        raise ValueError(f"payload of {payload_length} bytes does not fit an IPv6 packet")
    first = (6 << 28) | ((traffic_class & 0xFF) << 20)
    return _IPV6_HEADER.pack(first, payload_length, next_header, hop_limit, src.packed, dst.packed)


def send_ipv6(
    sock: socket.socket,
    src: IPv6Address,
    dst: IPv6Address,
    next_header: int,
    payload: bytes,
    hop_limit: int = 64,
    traffic_class: int = 0,
) -> None:
    """Send one IPv6 packet on an :func:`open_raw_tx` socket (the slow path's way to send,
    for example, a tunnel packet with next header 4). Raises ``OSError`` as ``sendto`` does
    (``BlockingIOError`` when the send buffer is full); the caller counts it."""
    header = ipv6_header(src, dst, next_header, len(payload), hop_limit, traffic_class)
    sock.sendto(header + payload, (str(dst), 0))


MessageHandler = Callable[[bytes, IPv6Address], None]


class SocketCounter(Names):
    """What the MH socket counts (``mh_socket`` group, with :data:`TX_ERRNO`, :data:`RX_ERRNO`)."""

    RX = "rx"
    RX_ERROR = "rx.error"
    RX_HANDLER_ERROR = "rx.handler_error"
    #: Datagrams longer than any Mobility Header can be (2048 bytes: its length field counts
    #: 8-octet units after the first 8), dropped unread.
    RX_TOO_LONG = "rx.too_long"
    TX = "tx"
    TX_ERROR = "tx.error"


#: Failed sends and receives, by errno name (``ENETUNREACH``, ...).
TX_ERRNO = Family("tx.error.{}", "sends that failed, by errno")
RX_ERRNO = Family("rx.error.{}", "receives that failed, by errno")
_ERRORS = {"tx": (SocketCounter.TX_ERROR, TX_ERRNO), "rx": (SocketCounter.RX_ERROR, RX_ERRNO)}


#: Sources (and destinations) whose parsed form an endpoint keeps; past it, it starts again.
MAX_PEER_CACHE = 4096


class MHEndpoint:
    """Mobility Header signaling on one :func:`open_mh_socket` socket, driven by the loop.

    ``on_message(data, src)`` is called with each MH received (the whole MH, checksum already
    verified by the kernel; the codec does the RFC 6275 9.2 checks). A readiness callback takes
    up to ``batch`` messages, 64 a system call with the compiled fastpath (``recvmmsg``).

    :meth:`send` queues: the queue goes out at :meth:`flush`, which the node's runner calls at
    the end of each loop turn it carries out actions in (after the turn's commit: the
    Persist-before-SendMH contract holds), as a ``sendmmsg`` batch with the compiled fastpath;
    a send outside such a turn is flushed in the next loop turn, or at once while the endpoint
    is not started. Sending never raises: failures (``ENETUNREACH``, a full send buffer, ...)
    are counted in :attr:`counters` as ``tx.error`` and ``tx.error.<ERRNO>`` and logged at most
    once per second per errno. An exception escaping ``on_message`` is counted
    (``rx.handler_error``) and handed to ``on_error`` (called in the ``except`` block: the
    node's dispatch boundary) or else logged, and the endpoint keeps reading.

    ``io``: the fastpath twin doing the system calls (:func:`fastpath.implementation`).

    Counters: ``rx``, ``rx.error``, ``rx.error.<ERRNO>``, ``rx.handler_error``,
    ``rx.too_long``, ``tx``, ``tx.error``, ``tx.error.<ERRNO>``.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_message: MessageHandler,
        *,
        batch: int = 64,
        clock: Callable[[], float] = time.monotonic,
        io: str = "auto",
        on_error: Callable[[], None] | None = None,
        peers: Iterable[IPv6Address] = (),
    ) -> None:
        self.sock = sock
        self.on_message = on_message
        self.on_error = on_error
        self.batch = batch
        self.counters = Counters()
        self._clock = clock
        self._log_limit = RateLimiter(1.0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._io = implementation(io).MessageIO(sock.fileno())
        #: Sends waiting for :meth:`flush`: (data, destination packed).
        self._out: list[tuple[bytes, bytes]] = []
        self._flush_armed = False
        #: Source bytes -> address, and address -> packed: parsed once a peer. The configured
        #: peers' own objects are there from the start (and stay): a message from a peer is
        #: handed over with the very object the node keys its tables by, so its lookups hit by
        #: identity, without a call to ``IPv6Address.__eq__``. (A scoped address is not
        #: equal to what the socket reports, which has no scope: it is left out, as before.)
        self._known = {a.packed: a for a in peers if a.scope_id is None}
        self._sources: dict[bytes, IPv6Address] = dict(self._known)
        self._targets: dict[IPv6Address, bytes] = {a: raw for raw, a in self._known.items()}

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start reading (``loop.add_reader``); call on the loop thread."""
        if self._loop is not None:
            raise RuntimeError("MHEndpoint already started")
        self._loop = loop or asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def stop(self) -> None:
        """Send what is queued and stop reading; the socket stays open (the caller may close
        it)."""
        self.flush()
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None

    def close(self) -> None:
        """Send what is queued, stop reading and close the socket."""
        self.stop()
        self._io.close()
        self.sock.close()

    def _source(self, raw: bytes) -> IPv6Address:
        if len(self._sources) >= MAX_PEER_CACHE:  # a flood of forged sources: start again
            self._sources.clear()
            self._sources.update(self._known)
        src = self._sources[raw] = IPv6Address(raw)
        return src

    def send(self, data: bytes, dst: IPv6Address) -> None:
        """Queue one MH to ``dst`` (the kernel fills the checksum); it leaves at :meth:`flush`."""
        target = self._targets.get(dst)
        if target is None:
            if len(self._targets) >= MAX_PEER_CACHE:
                self._targets.clear()
                self._targets.update((a, raw) for raw, a in self._known.items())
            target = self._targets[dst] = dst.packed
        out = self._out
        out.append((data, target))
        if len(out) == 1 and not self._flush_armed:
            if self._loop is None:
                self.flush()
                return
            self._flush_armed = True  # a send outside a runner's turn: the next loop turn
            self._loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_armed = False
        self.flush()

    def flush(self) -> None:
        """Send the queued messages, in order; count those sent and those that failed."""
        out = self._out
        if not out:
            return
        self._out = []
        failed = self._io.send(out)
        sent = len(out) - len(failed)
        if sent:
            self.counters[SocketCounter.TX] += sent
        for index, number in failed:
            self._count_error("tx", number, IPv6Address(out[index][1]))

    def _count_error(self, direction: str, number: int, peer: object) -> None:
        name = errno.errorcode.get(number, str(number))
        total, by_errno = _ERRORS[direction]
        self.counters[total] += 1
        self.counters[by_errno(name)] += 1
        if self._log_limit.allow((direction, name), self._clock()):
            log.warning("mh_socket_error direction=%s error=%s peer=%s", direction, name, peer)

    def _readable(self) -> None:
        # Everything queued, up to ``batch`` (bounded: the loop runs other work between
        # batches), in one readiness callback: read again after handling what came, until
        # nothing is left, so what arrived meanwhile joins this loop turn (and its commit).
        on_message, sources, counters = self.on_message, self._sources, self.counters
        left = self.batch
        while left > 0:
            messages, too_long, error = self._io.recv(left)
            if too_long:
                counters[SocketCounter.RX_TOO_LONG] += too_long
            if error:
                self._count_error("rx", error, None)
                return
            got = len(messages) + too_long
            if not got:
                return
            counters[SocketCounter.RX] += len(messages)
            for data, raw in messages:
                # The peers are few: parsed once per source (the same object each time makes
                # the cores' dict lookups cheap).
                src = sources.get(raw)
                if src is None:
                    src = self._source(raw)
                try:
                    on_message(data, src)
                except Exception:
                    counters[SocketCounter.RX_HANDLER_ERROR] += 1
                    if self.on_error is not None:
                        self.on_error()
                    elif self._log_limit.allow("handler", self._clock()):
                        log.exception("mh_handler_failed peer=%s", src)
            left -= got


# --- the slow path's sends --------------------------------------------------------------------

#: The slow path's sends that failed (the node's registry: ``node`` group), by exception.
SLOW_TX_ERROR = Family("tunnel.slow_tx_error.{}", "slow-path sends that failed, by error")


def tunnel_sender(sock: socket.socket, counters: Counters) -> Callable[[bytes, IPv6Address], None]:
    """The slow path's tunnel output: a raw protocol-4 socket, the kernel adds the outer header
    (and fragments at the IPv6 level if it must; wire-reference 6.3)."""

    def send(packet: bytes, dst: IPv6Address) -> None:
        try:
            sock.sendto(packet, (str(dst), 0))
        except OSError as exc:
            counters[SLOW_TX_ERROR(type(exc).__name__)] += 1

    return send


def raw_sender(sock: socket.socket, counters: Counters) -> Callable[[bytes], None]:
    """The slow path's way out for a whole IPv6 packet the fastpath built: a raw socket is not
    connected, so each packet goes to the destination its own header names."""

    def send(packet: bytes) -> None:
        try:
            sock.sendto(packet, (str(IPv6Address(packet[24:40])), 0))
        except OSError as exc:
            counters[SLOW_TX_ERROR(type(exc).__name__)] += 1

    return send
