"""The DMPA answers ICMP echo to the MS's default gateway itself (seed 5.4).

Seed 5.4: the MS "may send ICMP query message to the default gateway. The TTL of this ICMP
message is 1 ... DMPA should give a echo of this ICMP query to the MS served by it." The gateway
is the DLMAP's address (seed 3.4) and is a hop away through the tunnel, so the DMPA answers in
its name, from the pseudo-MAC, with identifier, sequence number and data unchanged (RFC 792).
Whatever the request's TTL (1 included: the gateway is on the MS's link as far as it can tell),
the reply leaves with a fresh one.

Only Echo Request is answered; other ICMP messages to the gateway are counted and dropped. The
request must come from the address the MS holds (its HoA once known): a reply is never aimed at
an address the MS does not own.
"""

from __future__ import annotations

import logging

from router.core.actions import SendFrame
from router.core.counters import Declared, Names
from router.core.dmpa import Visitor
from router.services.common import AccessAction, Drops, is_host_address
from router.wire.errors import DecodeError
from router.wire.ethernet import EthernetFrame, EtherType
from router.wire.icmp import IcmpEcho, IcmpMessage, IcmpType
from router.wire.ipv4 import IPProto, IPv4Flags, IPv4Packet

log = logging.getLogger(__name__)

DEFAULT_TTL = 64  # RFC 1700 / RFC 1122 3.2.1.7 recommended default


class IcmpCounter(Names):
    """What the ICMP responder counts (``access`` group)."""

    BAD_SOURCE = "icmp.bad_source"
    ECHO_REPLY = "icmp.echo_reply"
    MALFORMED = "icmp.malformed"
    NOT_ECHO = "icmp.not_echo"
    NOT_GATEWAY = "icmp.not_gateway"
    WRONG_SOURCE = "icmp.wrong_source"


class IcmpResponder:
    """Echo replies in the gateway's name, framed from the pseudo-MAC."""

    def __init__(self, drops: Drops | None = None, *, ttl: int = DEFAULT_TTL) -> None:
        self.drops = drops if drops is not None else Drops(log)
        self.ttl = ttl
        self._identification = 0

    def receive(
        self,
        visitor: Visitor,
        eth: EthernetFrame,
        ip: IPv4Packet,
        message: IcmpMessage,
        now: float,
    ) -> list[AccessAction]:
        """An ICMP ``message`` (checksum already verified) in ``ip`` from ``visitor``."""
        if ip.dst != visitor.gateway:
            return self._drop(IcmpCounter.NOT_GATEWAY, now, mac=eth.src, dst=ip.dst)
        if message.type != IcmpType.ECHO_REQUEST:
            return self._drop(IcmpCounter.NOT_ECHO, now, mac=eth.src, type=message.type)
        try:
            echo = IcmpEcho.from_message(message)
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
            payload=echo.make_reply().encode(),
            ttl=self.ttl,
            tos=ip.tos,  # RFC 1812 4.3.2.5: a reply keeps the request's TOS
            identification=self._identification,
            flags=IPv4Flags.DF,
        )
        frame = EthernetFrame(eth.src, visitor.pseudo_mac, EtherType.IPV4, reply.encode(), eth.vlan)
        self.drops.count(IcmpCounter.ECHO_REPLY)
        return [SendFrame(visitor.link, frame.encode())]

    def _drop(self, reason: Declared, now: float, **context: object) -> list[AccessAction]:
        self.drops.drop(reason, now, **context)
        return []
