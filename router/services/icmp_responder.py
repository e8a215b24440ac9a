"""The DMPA answers the ICMP queries to the MS's default gateway itself (seed 5.4).

Seed 5.4: the MS "may send ICMP query message to the default gateway. The TTL of this ICMP
message is 1 ... DMPA should give a echo of this ICMP query to the MS served by it." The gateway
is the DLMAP's address (seed 3.4) and is a hop away through the tunnel, so the DMPA answers in
its name, from the pseudo-MAC. Whatever the request's TTL (1 included: the gateway is on the
MS's link as far as it can tell), the reply leaves with a fresh one. The queries of RFC 792 and
RFC 950 a gateway answers:

* Echo Request: identifier, sequence number and data unchanged (RFC 792);
* Timestamp: identifier, sequence number and originate timestamp unchanged, receive and
  transmit timestamp our wall clock in milliseconds since midnight UT (RFC 792);
* Address Mask Request: the HoA network's mask, ``prefix_length`` (RFC 950 Appendix I; the
  DMPA is authoritative for it, it hands the same mask out by DHCP).

Other ICMP messages to the gateway (replies, errors) are counted and dropped. The request must
come from the address the MS holds (its HoA once known): a reply is never aimed at an address
the MS does not own.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Network

from router.core.actions import SendFrame
from router.core.counters import Declared, Names
from router.core.defaults import PREFIX_LENGTH
from router.core.dmpa import Visitor
from router.services.common import AccessAction, Drops, is_host_address
from router.wire.errors import DecodeError
from router.wire.ethernet import EthernetFrame, EtherType
from router.wire.icmp import (
    IcmpAddressMask,
    IcmpEcho,
    IcmpMessage,
    IcmpTimestamp,
    IcmpType,
    ut_milliseconds,
)
from router.wire.ipv4 import IPProto, IPv4Flags, IPv4Packet

log = logging.getLogger(__name__)

DEFAULT_TTL = 64  # RFC 1700 / RFC 1122 3.2.1.7 recommended default


class IcmpCounter(Names):
    """What the ICMP responder counts (``access`` group)."""

    BAD_SOURCE = "icmp.bad_source"
    ECHO_REPLY = "icmp.echo_reply"
    MALFORMED = "icmp.malformed"
    MASK_REPLY = "icmp.mask_reply"
    NOT_GATEWAY = "icmp.not_gateway"
    NOT_QUERY = "icmp.not_query"
    TIMESTAMP_REPLY = "icmp.timestamp_reply"
    WRONG_SOURCE = "icmp.wrong_source"


_QUERIES = frozenset((IcmpType.ECHO_REQUEST, IcmpType.TIMESTAMP, IcmpType.ADDRESS_MASK_REQUEST))


class IcmpResponder:
    """Query replies in the gateway's name, framed from the pseudo-MAC."""

    def __init__(
        self,
        drops: Drops | None = None,
        *,
        ttl: int = DEFAULT_TTL,
        prefix_length: int = PREFIX_LENGTH,
    ) -> None:
        self.drops = drops if drops is not None else Drops(log)
        self.ttl = ttl
        self.mask = IPv4Network(f"0.0.0.0/{prefix_length}").netmask
        self._identification = 0

    def receive(
        self,
        visitor: Visitor,
        eth: EthernetFrame,
        ip: IPv4Packet,
        message: IcmpMessage,
        now: float,
        wall: float,
    ) -> list[AccessAction]:
        """An ICMP ``message`` (checksum already verified) in ``ip`` from ``visitor``."""
        if ip.dst != visitor.gateway:
            return self._drop(IcmpCounter.NOT_GATEWAY, now, mac=eth.src, dst=ip.dst)
        if message.type not in _QUERIES:
            return self._drop(IcmpCounter.NOT_QUERY, now, mac=eth.src, type=message.type)
        try:
            answer, counter = self._answer(message, wall)
        except DecodeError as exc:
            return self._drop(IcmpCounter.MALFORMED, now, mac=eth.src, error=exc)
        if not is_host_address(ip.src):
            return self._drop(IcmpCounter.BAD_SOURCE, now, mac=eth.src, src=ip.src)
        if visitor.hoa is not None and ip.src != visitor.hoa:
            return self._drop(IcmpCounter.WRONG_SOURCE, now, mac=eth.src, src=ip.src)
        self._identification = (self._identification + 1) & 0xFFFF
        reply = IPv4Packet(
            src=visitor.gateway,
            dst=ip.src,
            protocol=IPProto.ICMP,
            payload=answer,
            ttl=self.ttl,
            tos=ip.tos,  # RFC 1812 4.3.2.5: a reply keeps the request's TOS
            identification=self._identification,
            flags=IPv4Flags.DF,
        )
        frame = EthernetFrame(eth.src, visitor.pseudo_mac, EtherType.IPV4, reply.encode(), eth.vlan)
        self.drops.count(counter)
        return [SendFrame(visitor.link, frame.encode())]

    def _answer(self, message: IcmpMessage, wall: float) -> tuple[bytes, IcmpCounter]:
        """The reply's ICMP bytes and its counter; :class:`DecodeError` for a malformed query."""
        if message.type == IcmpType.TIMESTAMP:
            stamp = IcmpTimestamp.from_message(message)
            return stamp.make_reply(ut_milliseconds(wall)).encode(), IcmpCounter.TIMESTAMP_REPLY
        if message.type == IcmpType.ADDRESS_MASK_REQUEST:
            request = IcmpAddressMask.from_message(message)
            return request.make_reply(self.mask).encode(), IcmpCounter.MASK_REPLY
        echo = IcmpEcho.from_message(message)
        return echo.make_reply().encode(), IcmpCounter.ECHO_REPLY

    def _drop(self, reason: Declared, now: float, **context: object) -> list[AccessAction]:
        self.drops.drop(reason, now, **context)
        return []
