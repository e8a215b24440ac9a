"""The DMPA's ARP proxy (seed 5.3): every address an MS asks for is at the domain's pseudo-MAC.

Seed 5.3: "the ARP entries for default gateway and other hosts could be set to be a common MAC
address for all the DMPA in current domain". Every DMPA of a domain answers with the same
pseudo-MAC (``AccessHost.pseudo_mac``, kept in each visitor entry), so an MS that moves, and
whose kernel flushes its neighbour cache when the carrier drops, re-learns the very same MAC for
its gateway at the new DMPA.

The rest is what a real router does with the ARP packets of its hosts (RFC 826, RFC 5227):

Rule 1. A request is answered with the pseudo-MAC, whatever address it asks for (the gateway,
        another MS, an Internet host: all of it goes through the DLMAP), except an address the
        asking MS holds itself and addresses no host can hold (0/8, multicast, class E, ...).
Rule 2. A probe (sender IP 0.0.0.0, RFC 5227 2.1.1) is never answered for the MS's own or a free
        address: answering would make the MS think its address is taken. A probe for the
        gateway is answered: the router defends its own address (RFC 5227 2.4).
Rule 3. An announcement (gratuitous ARP, either op) is never answered; it tells us the MS's
        address, like the sender IP of any of its ARP packets (learning, ``DMPA.address_seen``).
Rule 4. A packet claiming (as sender IP, or as a probed address) an address bound to another MS
        of this DMPA is a conflict: counted, reported as an ``arp_conflict`` event (rate-limited),
        never learned and never answered; in particular nothing is ever said to the claimant
        on behalf of the victim's address.
Rule 5. A packet claiming the gateway address is answered by a broadcast announcement of the
        gateway at the pseudo-MAC (at most once per 10 s per link, RFC 5227 DEFEND_INTERVAL), so
        caches the claim may have changed on the link are put right.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address

from router.core.actions import Action, SendFrame, event
from router.core.common import RateLimiter
from router.core.counters import Declared, Names
from router.core.dmpa import State, Visitor
from router.services.common import AccessAction, AccessHost, Drops, is_host_address
from router.wire.arp import ArpOp, ArpPacket, reply_to
from router.wire.ethernet import BROADCAST_MAC, EthernetFrame, EtherType, MacAddress

log = logging.getLogger(__name__)

DEFEND_INTERVAL = 10.0  # RFC 5227 section 1.1: "DEFEND_INTERVAL 10 seconds"

_UNSPECIFIED = IPv4Address(0)
_LEARNING = (State.AUTHENTICATING, State.WAIT_ADDRESS)


class ArpCounter(Names):
    """What the ARP proxy counts (``access`` group)."""

    ANNOUNCEMENT = "arp.announcement"
    BAD_OP = "arp.bad_op"
    BOGUS_TARGET = "arp.bogus_target"
    CONFLICT = "arp.conflict"
    GATEWAY_CLAIMED = "arp.gateway_claimed"
    LEARNED = "arp.learned"
    OWN_ADDRESS = "arp.own_address"
    PROBE_DEFENDED = "arp.probe_defended"
    PROBE_SILENT = "arp.probe_silent"
    REPLY = "arp.reply"
    REPLY_RECEIVED = "arp.reply_received"
    SENDER_MISMATCH = "arp.sender_mismatch"


class ArpProxy:
    """Answers the ARP of the DMPA's visitors; learns their addresses; spots conflicts."""

    def __init__(
        self, host: AccessHost, drops: Drops | None = None, *, index_age: float = 1.0
    ) -> None:
        self.host = host
        self.drops = drops if drops is not None else Drops(log)
        #: How old (seconds) the address -> MAC index may get before it is rebuilt.
        self.index_age = index_age
        self._index: dict[IPv4Address, MacAddress] = {}
        self._index_built = float("-inf")
        self._index_size = -1
        self._defend = RateLimiter(DEFEND_INTERVAL)

    # --- address ownership ----------------------------------------------------------------

    def owner_of(self, address: IPv4Address, now: float) -> MacAddress | None:
        """The MS whose visitor entry holds ``address`` as its HoA (registered or being
        registered), or None.

        The index is rebuilt from the visitor list when it is older than ``index_age`` or the
        list changed size, and every hit is checked against the visitor entry, so it never
        names a wrong owner; a HoA granted less than ``index_age`` ago may be missed.
        """
        visitors = self.host.visitor_list()
        if now >= self._index_built + self.index_age or len(visitors) != self._index_size:
            self._index = {v.hoa: v.mac for v in visitors if v.hoa is not None}
            self._index_built, self._index_size = now, len(visitors)
        mac = self._index.get(address)
        if mac is None:
            return None
        visitor = self.host.visitor(mac)
        return mac if visitor is not None and visitor.hoa == address else None

    def learn(
        self, visitor: Visitor, address: IPv4Address, now: float, wall: float
    ) -> list[Action]:
        """``address`` is what the MS uses as its own: tell the DMPA core while the MS is not
        registered yet (the core registers it), unless no host may hold it or it is taken."""
        if visitor.state not in _LEARNING or not is_host_address(address):
            return []
        if address == visitor.gateway or address == visitor.address_seen:
            return []
        if self.owner_of(address, now) not in (None, visitor.mac):
            return []
        self.drops.count(ArpCounter.LEARNED)
        return self.host.address_seen(visitor.mac, address, now, wall)

    # --- ARP ------------------------------------------------------------------------------

    def receive(
        self, visitor: Visitor, eth: EthernetFrame, arp: ArpPacket, now: float, wall: float
    ) -> list[AccessAction]:
        """One ARP packet from ``visitor`` (carried by ``eth``)."""
        if arp.sender_mac != eth.src:
            # The Ethernet source is who the visitor entry is; a packet speaking for another
            # MAC is either a bridge we do not support or an attempt to poison caches.
            return self._drop(ArpCounter.SENDER_MISMATCH, now, mac=eth.src, sender=arp.sender_mac)
        if arp.op not in (ArpOp.REQUEST, ArpOp.REPLY):
            return self._drop(ArpCounter.BAD_OP, now, mac=eth.src, op=arp.op)
        actions: list[AccessAction] = []
        sender = arp.sender_ip
        if sender != _UNSPECIFIED:
            if sender == visitor.gateway:  # Rule 5
                return self._defend_gateway(visitor, eth, now)
            conflict = self._conflict(visitor, sender, now)  # Rule 4
            if conflict is not None:
                return conflict
            actions += self.learn(visitor, sender, now, wall)  # Rule 3
        if arp.op == ArpOp.REPLY:
            self.drops.count(ArpCounter.REPLY_RECEIVED)  # we never ask: nothing to answer
            return actions
        target = arp.target_ip
        if arp.is_probe:  # Rule 2
            if target == visitor.gateway:
                self.drops.count(ArpCounter.PROBE_DEFENDED)
                return [self._frame(visitor, eth, reply_to(arp, visitor.pseudo_mac))]
            conflict = self._conflict(visitor, target, now)
            if conflict is not None:
                return conflict
            self.drops.count(ArpCounter.PROBE_SILENT)
            return []
        if arp.is_gratuitous:  # Rule 3
            self.drops.count(ArpCounter.ANNOUNCEMENT)
            return actions
        if not is_host_address(target):  # Rule 1
            return actions + self._drop(ArpCounter.BOGUS_TARGET, now, mac=eth.src, target=target)
        if target in (visitor.hoa, visitor.address_seen):
            self.drops.count(ArpCounter.OWN_ADDRESS)
            return actions
        self.drops.count(ArpCounter.REPLY)
        return [*actions, self._frame(visitor, eth, reply_to(arp, visitor.pseudo_mac))]

    def _conflict(
        self, visitor: Visitor, address: IPv4Address, now: float
    ) -> list[AccessAction] | None:
        """Rule 4: None when ``address`` is free or the visitor's own; else what to do about
        the conflict (nothing but an event, and that at most once per log interval)."""
        owner = self.owner_of(address, now)
        if owner is None or owner == visitor.mac:
            return None
        if self.drops.drop(ArpCounter.CONFLICT, now, mac=visitor.mac, address=address, owner=owner):
            return [event("arp_conflict", mac=visitor.mac, address=address, owner=owner)]
        return []

    def _defend_gateway(
        self, visitor: Visitor, eth: EthernetFrame, now: float
    ) -> list[AccessAction]:
        self.drops.drop(ArpCounter.GATEWAY_CLAIMED, now, mac=eth.src, gateway=visitor.gateway)
        if not self._defend.allow(visitor.link, now):
            return []
        announcement = ArpPacket.announcement(visitor.pseudo_mac, visitor.gateway)
        frame = EthernetFrame(
            BROADCAST_MAC, visitor.pseudo_mac, EtherType.ARP, announcement.encode(), eth.vlan
        )
        return [SendFrame(visitor.link, frame.encode())]

    def _frame(self, visitor: Visitor, eth: EthernetFrame, arp: ArpPacket) -> SendFrame:
        """``arp`` sent to the MS from the pseudo-MAC, on its link, with its VLAN tag if any."""
        frame = EthernetFrame(eth.src, visitor.pseudo_mac, EtherType.ARP, arp.encode(), eth.vlan)
        return SendFrame(visitor.link, frame.encode())

    def _drop(self, reason: Declared, now: float, **context: object) -> list[AccessAction]:
        self.drops.drop(reason, now, **context)
        return []
