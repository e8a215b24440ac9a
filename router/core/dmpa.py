"""The DMPA (MAG role): visitor list, registration, retransmission, refresh, revocation.

Sans-I/O like :mod:`router.core.dlmap`. The life of a visitor (seed 3.2, 5.1):

    attach ──AAARequest──> AUTHENTICATING ──profile──> WAIT_ADDRESS (mode dhcp, no address yet)
                                 │ reject                   │ DHCP ACK / address seen
                                 v                          v
                             REJECTED           REGISTERING ──PBA ok──> REGISTERED ──refresh──┐
                                                  ^  │ PBA refused             │   ^──────────┘
                                                  │  v                         │ detach
                                                  │ REJECTED                   v
                                                  └── BRI from the DLMAP: removed, BRA sent

When to register: mode ``dlmap`` at once with 0.0.0.0 (seed 6); ``static`` at once
with the profile's address; ``dhcp`` after the DHCP ACK carried through the DLMAP (seed 5.2);
and an MS that arrives already holding an address (its frames or ARP show one) at once with it,
whatever the mode, since it will not ask DHCP again after a handover.

Retransmission (RFC 6275 11.8, wire-reference 7.2): 1.5 s for a first registration, 1 s
otherwise, doubling up to 32 s; after the cap the DMPA keeps trying every 32 s while the MS is
attached. Every PBU has a new BU sequence number (one counter per DMPA, seed 3.1.3).

Peer restart (RFC 5847, :mod:`router.core.heartbeat`): when a DLMAP's Restart Counter changes,
every visitor registered there is registered again at once (the DLMAP may have lost its cache);
the PBU carries the address the visitor holds, so it keeps it. A DLMAP that stops answering is
reported (``peer_unreachable``); its visitors keep retrying on their own timers. A Heartbeat
Request from a DLMAP shows it is there (the new active of a pair announces itself so, heartbeat
rule 6): every registration still waiting for its PBA there is sent again at once, not at its
backed-off retransmission time (``pbu.resent``); not one sent less than
:data:`RESEND_GUARD` s ago (still in flight), and at most once per :data:`RESEND_INTERVAL` per
DLMAP.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any

from router.core.actions import (
    AAARequest,
    Action,
    Bind,
    BindPrefix,
    Persist,
    SendMH,
    Unbind,
    UnbindPrefix,
    event,
)
from router.core.common import (
    BRA_STATUS,
    PBA_STATUS,
    RateLimiter,
    SignalingCounter,
    Unhandled,
    earliest,
)
from router.core.counters import Counters
from router.core.heartbeat import HeartbeatMonitor, PeerChange
from router.core.sequence import seq_after, seq_max, seq_next
from router.core.timers import TimerHeap
from router.core.visitor import (
    AddressMode,
    DMPAConfig,
    DMPACounter,
    Profile,
    State,
    Visitor,
)
from router.wire.constants import (
    LIFETIME_UNIT_SECONDS,
    BAFlag,
    BRAStatus,
    BRFlag,
    HandoffIndicator,
    HeartbeatFlag,
    Status,
)
from router.wire.ethernet import MacAddress
from router.wire.mh import (
    BindingAck,
    BindingRevocationAck,
    BindingRevocationIndication,
    BindingUpdate,
    Heartbeat,
    MobilityMessage,
)
from router.wire.mh_options import (
    AccessTechnologyTypeOption,
    HandoffIndicatorOption,
    HomeNetworkPrefix,
    IPv4DefaultRouterAddress,
    IPv4HomeAddressReply,
    IPv4HomeAddressRequest,
    LinkLocalAddress,
    MNLinkLayerIdentifier,
    MobileNodeIdentifier,
    MobilityOption,
    SeedIPv4HomeAddress,
    Timestamp,
)
from router.wire.nd import link_local_from_mac

__all__ = ["DMPA", "AddressMode", "DMPAConfig", "DMPACounter", "Profile", "State", "Visitor"]

UNSPECIFIED = IPv4Address("0.0.0.0")
#: Seconds: a PBU sent this recently is still in flight (not resent when the DLMAP is heard).
#: Short: a new active's request comes tens of milliseconds after its MH socket opened, and a
#: PBU sent before that was lost; one answered meanwhile only costs an unmatched PBA.
RESEND_GUARD = 0.02
#: Seconds: the shortest time between two such resends for one DLMAP.
RESEND_INTERVAL = 0.1
_BA_P = int(BAFlag.P)
#: PBA statuses that refuse the IPv6 part of a V=0 PBU: the DMPA registers IPv4 only instead.
_NO_IPV6 = frozenset(
    {
        Status.ADMINISTRATIVELY_PROHIBITED,
        Status.MISSING_HOME_NETWORK_PREFIX_OPTION,
        Status.NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE,
        Status.INSUFFICIENT_RESOURCES,
        Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
    }
)
#: An HNP option asking the DLMAP to allocate (RFC 5213 6.9.1.1: ALL_ZERO).
ASK_PREFIX = HomeNetworkPrefix(0, IPv6Address("::"))


class DMPA:
    def __init__(self, config: DMPAConfig) -> None:
        self.config = config
        self.visitors: dict[MacAddress, Visitor] = {}
        self.counters = Counters()
        self.bu_sequence = 0
        #: (DLMAP, BU sequence number) of each PBU in flight -> the visitor's MAC.
        self._in_flight: dict[tuple[IPv6Address, int], MacAddress] = {}
        #: Waiting PBUs sent again because a DLMAP asked for a heartbeat: at most so often.
        self._resend_limit = RateLimiter(RESEND_INTERVAL)
        self._timers: TimerHeap[tuple[str, MacAddress]] = TimerHeap()
        self._unhandled = Unhandled(self.counters)
        self._last_timestamp = 0
        self.heartbeat = HeartbeatMonitor(config.heartbeat, config.peers, self.counters)
        self._link_local = LinkLocalAddress(link_local_from_mac(config.pseudo_mac))

    # --- what the access services see (router.services.common.AccessHost) ---------------

    @property
    def pseudo_mac(self) -> MacAddress:
        return self.config.pseudo_mac

    @property
    def binding_lifetime(self) -> int:
        return self.config.lifetime

    def visitor(self, mac: MacAddress) -> Visitor | None:
        return self.visitors.get(mac)

    def visitor_list(self) -> Collection[Visitor]:
        return self.visitors.values()

    # --- access-side events ---------------------------------------------------------------

    def attach(
        self, mac: MacAddress, link: int, now: float, address: IPv4Address | None = None
    ) -> list[Action]:
        """The first frame from ``mac`` on access link ``link`` (``address``: its source IPv4)."""
        visitor = self.visitors.get(mac)
        if visitor is not None:  # a known MS on another of our ports: its binding follows
            if address is not None and visitor.address_seen is None:
                visitor.address_seen = address
            return self._move(visitor, link)
        visitor = Visitor(
            mac, link, self.config.pseudo_mac, self.config.address, self.config.gateway
        )
        visitor.address_seen = address if address != UNSPECIFIED else None
        self.visitors[mac] = visitor
        self.counters[DMPACounter.ATTACH] += 1
        return [AAARequest(mac, link), event("attach", mac=mac, link=link)]

    def authorized(
        self, mac: MacAddress, link: int, profile: Profile, now: float, wall: float
    ) -> list[Action]:
        """The access link's authenticator (802.1X: hostapd's EAP success) says ``mac`` on
        ``link`` is ``profile.nai``: the visitor entry is made with that profile, without an
        :class:`AAARequest` (the EAP exchange was the authentication, seed 3.2 step 2).

        Again for a visitor already here under the same NAI (a re-authentication, or the MS
        moved to another port of ours): its link follows, its registration stands. Under
        another NAI: the old visitor is detached (de-registered) first."""
        visitor = self.visitors.get(mac)
        actions: list[Action] = []
        if visitor is not None:
            settled = visitor.state not in (State.DEREGISTERING, State.REJECTED)
            if visitor.nai == profile.nai and settled:
                actions += self._move(visitor, link)
                return [*actions, event("reauthorized", mac=mac, nai=profile.nai, link=link)]
            if visitor.state is not State.DEREGISTERING:
                actions += self.detach(mac, now, wall)
            if mac in self.visitors:  # de-registering: its PBA (or its timer) ends it first
                visitor.next_authorization = (link, profile)  # then this one is taken up
                return [*actions, event("authorized_busy", mac=mac, nai=profile.nai)]
        visitor = Visitor(
            mac, link, self.config.pseudo_mac, self.config.address, self.config.gateway
        )
        self.visitors[mac] = visitor
        self.counters[DMPACounter.ATTACH] += 1
        actions.append(event("attach", mac=mac, link=link, nai=profile.nai))
        return actions + self.aaa_result(mac, profile, now, wall)

    def _move(self, visitor: Visitor, link: int) -> list[Action]:
        """``visitor`` seen on access link ``link``. On another port than before, what the
        fastpath binds follows it (it checks the port both ways): the HoA with its gateway and
        the IPv6 prefix, and the stored row says the new port (a restart binds it there)."""
        if visitor.link == link:
            return []
        visitor.link = link
        dlmap = visitor.tunnel_dst
        if dlmap is None or (visitor.bound is None and visitor.bound_prefix is None):
            return []
        mac = visitor.mac
        actions: list[Action] = []
        if visitor.bound is not None:
            actions += [Unbind(visitor.bound)]
            actions += [Bind(visitor.bound, dlmap, mac, link, visitor.gateway)]
        if visitor.bound_prefix is not None:
            actions += [UnbindPrefix(visitor.bound_prefix)]
            actions += [BindPrefix(visitor.bound_prefix, dlmap, mac, link)]
        actions.append(self._persist(visitor))
        return actions

    def aaa_result(
        self,
        mac: MacAddress,
        profile: Profile | None,
        now: float,
        wall: float,
        why: str | None = None,
    ) -> list[Action]:
        """AAA's answer; ``why``: the backend's reason for a reject (for the log line)."""
        visitor = self.visitors.get(mac)
        if visitor is None or visitor.state is not State.AUTHENTICATING:
            return []
        if profile is None or profile.dlmap not in self.config.peers:
            visitor.state = State.REJECTED
            self.counters[DMPACounter.AAA_REJECT] += 1
            if profile is not None:
                why = f"its DLMAP {profile.dlmap} is not a [peer]"
            return [event("aaa_reject", mac=mac, why=why or "access-reject")]
        self.counters[DMPACounter.AAA_ACCEPT] += 1
        visitor.nai, visitor.mode, visitor.tunnel_dst = profile.nai, profile.mode, profile.dlmap
        visitor.ipv6 = profile.ipv6
        if profile.gateway is not None:
            visitor.gateway = profile.gateway
        address = visitor.address_seen
        if address is None and profile.mode == "static":
            address = profile.hoa
        if address is None and profile.mode == "dlmap":
            address = UNSPECIFIED
        if address is None:  # mode dhcp: wait for the ACK that comes back through the DLMAP
            visitor.state = State.WAIT_ADDRESS
            return [event("wait_address", mac=mac, nai=profile.nai)]
        return self._register(visitor, address, now, wall)

    def address_seen(
        self, mac: MacAddress, address: IPv4Address, now: float, wall: float
    ) -> list[Action]:
        """The MS used ``address`` as a source (IPv4 or ARP) before it was registered."""
        visitor = self.visitors.get(mac)
        if visitor is None or address == UNSPECIFIED:
            return []
        if visitor.state is State.AUTHENTICATING:
            visitor.address_seen = address
            return []
        if visitor.state is State.WAIT_ADDRESS:
            visitor.address_seen = address
            return self._register(visitor, address, now, wall)
        return []

    def dhcp_ack(
        self, mac: MacAddress, address: IPv4Address, now: float, wall: float
    ) -> list[Action]:
        """A DHCP ACK for the MS came back from the DLMAP (seed 5.2): register that address."""
        visitor = self.visitors.get(mac)
        if visitor is None or visitor.state in (State.AUTHENTICATING, State.REJECTED):
            return []
        if visitor.state is State.REGISTERED and visitor.hoa == address:
            return []  # a renewal of the address we registered: the binding refresh covers it
        return self._register(visitor, address, now, wall)

    def detach(self, mac: MacAddress, now: float, wall: float) -> list[Action]:
        """The MS left (or released its address): de-register and forget it."""
        visitor = self.visitors.get(mac)
        if visitor is None:
            return []
        visitor.next_authorization = None  # one that came during a de-registration: void now
        actions = self._unbind(visitor)
        self._timers.cancel(("refresh", visitor.mac))
        # De-register whenever a PBU went out: the DLMAP may have accepted it even though its
        # PBA has not arrived, and would otherwise keep the binding for its whole lifetime.
        sent = visitor.registered_once or visitor.pending is not None
        if sent and visitor.tunnel_dst is not None:
            visitor.state = State.DEREGISTERING
            visitor.deregistrations_left = self.config.deregistration_attempts
            visitor.timeout = self.config.timeout
            actions += self._send_pbu(visitor, now, wall, lifetime=0)
            return actions
        return actions + self._forget(visitor, "detached")

    # --- signaling ------------------------------------------------------------------------

    def receive(
        self, message: MobilityMessage, src: IPv6Address, now: float, wall: float
    ) -> list[Action]:
        if isinstance(message, BindingAck):
            return self._on_pba(message, src, now, wall)
        if isinstance(message, BindingRevocationIndication):
            return self._on_bri(message, src)
        if isinstance(message, Heartbeat):
            actions, changes = self.heartbeat.receive(message, src, now)
            for peer, change in changes:
                if change is PeerChange.RESTARTED:
                    actions += self._reregister_at(peer, now, wall)
            if not message.flags & HeartbeatFlag.R and src in self.config.peers:
                actions += self._resend_waiting(src, now, wall)
            return actions
        return self._unhandled.unexpected(message, src)

    def receive_unknown_type(self, mh_type: int, src: IPv6Address, now: float) -> list[Action]:
        return self._unhandled.unknown_type(mh_type, src, now)

    def get_timer(self) -> float | None:
        return earliest(self._timers.next_deadline(), self.heartbeat.get_timer())

    def handle_timer(self, now: float, wall: float) -> list[Action]:
        actions, _ = self.heartbeat.handle_timer(now)  # unreachable: reported, visitors retry
        for kind, mac in self._timers.pop_due(now):
            visitor = self.visitors.get(mac)
            if visitor is None:
                continue
            if kind == "retransmit":
                actions += self._retransmit(visitor, now, wall)
            elif kind == "refresh" and visitor.state is State.REGISTERED:
                self.counters[DMPACounter.PBU_REFRESH] += 1
                visitor.state = State.REGISTERING
                visitor.timeout = self.config.timeout
                actions += self._send_pbu(visitor, now, wall, lifetime=self.config.lifetime)
        return actions

    def _reregister_at(self, dlmap: IPv6Address, now: float, wall: float) -> list[Action]:
        """The DLMAP restarted: refresh every binding we hold there now, with its address, and
        send again at once every registration still waiting for its PBA there (one backing off
        while the DLMAP was away would otherwise wait up to the backoff's cap)."""
        actions: list[Action] = []
        for visitor in list(self.visitors.values()):
            if visitor.tunnel_dst != dlmap or visitor.state not in (
                State.REGISTERED,
                State.REGISTERING,
            ):
                continue
            self.counters[DMPACounter.PBU_PEER_RESTARTED] += 1
            self._timers.cancel(("refresh", visitor.mac))
            visitor.state = State.REGISTERING
            visitor.reregistering = visitor.registered_once
            visitor.timeout = (
                self.config.timeout if visitor.registered_once else self.config.first_timeout
            )
            actions += self._send_pbu(visitor, now, wall, lifetime=self.config.lifetime)
        return actions

    def _register(
        self, visitor: Visitor, address: IPv4Address, now: float, wall: float
    ) -> list[Action]:
        visitor.state = State.REGISTERING
        visitor.hoa = address if address != UNSPECIFIED else None
        visitor.timeout = (
            self.config.timeout if visitor.registered_once else self.config.first_timeout
        )
        return self._send_pbu(visitor, now, wall, lifetime=self.config.lifetime)

    def _send_pbu(
        self, visitor: Visitor, now: float, wall: float, *, lifetime: int
    ) -> list[Action]:
        assert visitor.tunnel_dst is not None and visitor.nai is not None
        dlmap = visitor.tunnel_dst
        dialect = self.config.peers[dlmap]
        if visitor.pending is not None:
            self._in_flight.pop((dlmap, visitor.pending), None)
        self.bu_sequence = seq_next(self.bu_sequence)
        visitor.pending = self.bu_sequence
        self._in_flight[(dlmap, self.bu_sequence)] = visitor.mac
        hoa = visitor.hoa or UNSPECIFIED
        options: list[MobilityOption] = [MobileNodeIdentifier.from_nai(visitor.nai)]
        if dialect.name == "draft":
            carrier = dialect.seed_option_type or 18
            options.append(SeedIPv4HomeAddress(visitor.sequence, hoa, carrier))
        else:
            options += [
                HandoffIndicatorOption(self._handoff(visitor, lifetime)),
                AccessTechnologyTypeOption(self.config.access_type),
                self._timestamp(wall),
                IPv4HomeAddressRequest(hoa),
                MNLinkLayerIdentifier(visitor.mac.packed),
            ]
        if visitor.ipv6:
            # RFC 5213 6.9.1.1: the prefix held, or ALL_ZERO to ask; our link-local address
            # (the pseudo-MAC's, the same on every DMPA) in the Link-local Address option.
            held = visitor.prefix
            options.append(
                HomeNetworkPrefix(held.prefixlen, held.network_address) if held else ASK_PREFIX
            )
            options.append(self._link_local)
        pbu = BindingUpdate(
            sequence=self.bu_sequence,
            flags=dialect.pbu_flags(v=not visitor.ipv6),
            lifetime=lifetime // LIFETIME_UNIT_SECONDS,
            options=tuple(options),
        )
        self._timers.schedule(("retransmit", visitor.mac), now + visitor.timeout)
        self.counters[DMPACounter.PBU_SENT] += 1
        return [
            Persist("meta", "bu_sequence", {"key": "bu_sequence", "value": self.bu_sequence}),
            SendMH(dlmap, pbu),
        ]

    def _timestamp(self, wall: float) -> Timestamp:
        """RFC 5213 ordering needs strictly increasing timestamps, even within one clock tick."""
        value = max(Timestamp.from_unix(wall).value, self._last_timestamp + 1)
        self._last_timestamp = value
        return Timestamp(value)

    def _handoff(self, visitor: Visitor, lifetime: int) -> int:
        if visitor.registered_once or lifetime == 0:
            return HandoffIndicator.HANDOFF_STATE_NOT_CHANGED
        if visitor.address_seen is not None:
            # It came with an address: probably a handover from another DMPA; we cannot know.
            return HandoffIndicator.HANDOFF_STATE_UNKNOWN
        return HandoffIndicator.ATTACHMENT_OVER_NEW_INTERFACE

    def _resend_waiting(self, dlmap: IPv6Address, now: float, wall: float) -> list[Action]:
        """``dlmap`` asked for a heartbeat: it is there. Registrations waiting for its PBA are
        sent again now; their retransmission timeout stays where the backoff had it."""
        if not self._resend_limit.allow(dlmap, now):
            return []
        actions: list[Action] = []
        for (peer, sequence), mac in list(self._in_flight.items()):  # the PBUs in flight
            visitor = self.visitors.get(mac)
            if (
                peer != dlmap
                or visitor is None
                or visitor.state is not State.REGISTERING
                or visitor.pending != sequence
            ):
                continue
            due = self._timers.deadline(("retransmit", visitor.mac))
            if due is None or now - (due - visitor.timeout) < RESEND_GUARD:
                continue  # no retransmission pending, or the PBU just left
            self.counters[DMPACounter.PBU_RESENT] += 1
            actions += self._send_pbu(visitor, now, wall, lifetime=self.config.lifetime)
        return actions

    def _retransmit(self, visitor: Visitor, now: float, wall: float) -> list[Action]:
        if visitor.pending is None:
            return []
        if visitor.state is State.DEREGISTERING:
            visitor.deregistrations_left -= 1
            if visitor.deregistrations_left <= 0:
                self.counters[DMPACounter.DEREGISTRATION_UNANSWERED] += 1
                forgotten = self._forget(visitor, "deregistration unanswered")
                return forgotten + self._then(visitor, now, wall)
            visitor.timeout = min(visitor.timeout * 2, self.config.max_timeout)
            return self._send_pbu(visitor, now, wall, lifetime=0)
        if visitor.state is not State.REGISTERING:
            return []
        # Doubling up to the cap, then every cap interval while the MS is attached. The
        # first timeout and each step of the backoff are events (the cap is said once).
        waited = visitor.timeout
        visitor.timeout = min(visitor.timeout * 2, self.config.max_timeout)
        self.counters[DMPACounter.PBU_RETRANSMIT] += 1
        actions: list[Action] = []
        if visitor.timeout != waited:
            actions.append(
                event(
                    "pbu_timeout",
                    nai=visitor.nai,
                    peer=visitor.tunnel_dst,
                    waited_s=waited,
                    next_s=visitor.timeout,
                )
            )
        return actions + self._send_pbu(visitor, now, wall, lifetime=self.config.lifetime)

    def _on_pba(
        self, message: BindingAck, src: IPv6Address, now: float, wall: float
    ) -> list[Action]:
        if message.status == Status.SEQUENCE_NUMBER_OUT_OF_WINDOW:
            return self._resynchronise(message, src, now, wall)
        mac = self._in_flight.get((src, message.sequence))
        visitor = self.visitors.get(mac) if mac is not None else None
        if visitor is None or visitor.pending != message.sequence:
            self._in_flight.pop((src, message.sequence), None)
            self.counters[DMPACounter.PBA_UNMATCHED] += 1
            return [event("unmatched_pba", peer=src, sequence=message.sequence)]
        if self._reordered(visitor, message):
            # RFC 5213 5.5: a PBU of a new attachment stamped before the binding's last one (our
            # clock a little behind the former DMPA's). The MS is here: as if no answer had
            # come, the next PBU, stamped later, goes at the retransmission time.
            self.counters[PBA_STATUS(message.status)] += 1
            return [event("pba_reordered", nai=visitor.nai, peer=src, status=message.status)]
        hoa, gateway, ms_sequence = self._granted_address(message, src)
        if message.accepted:
            invalid = self._invalid(visitor, message, src, hoa)
            if invalid is not None:
                # Not an answer we can take: as if none had come, the PBU is sent again.
                self.counters[invalid] += 1
                return [event("invalid_pba", nai=visitor.nai, peer=src, why=invalid)]
        self._in_flight.pop((src, message.sequence), None)
        visitor.pending = None
        self._timers.cancel(("retransmit", visitor.mac))
        if visitor.state is State.DEREGISTERING:
            self.counters[DMPACounter.DEREGISTERED] += 1
            return self._forget(visitor, "deregistered") + self._then(visitor, now, wall)
        if not message.accepted:
            return self._refused(visitor, message, now, wall)
        if hoa is None:
            self.counters[DMPACounter.PBA_NO_ADDRESS] += 1
            return [
                *self._refused(visitor, message, now, wall),
                event("pba_without_address", nai=visitor.nai, peer=src),
            ]
        actions: list[Action] = []
        if visitor.bound is not None and visitor.bound != hoa:
            actions += self._unbind(visitor)
        prefix = _granted_prefix(message) if visitor.ipv6 else None
        if visitor.bound_prefix is not None and visitor.bound_prefix != prefix:
            actions.append(UnbindPrefix(visitor.bound_prefix))
            visitor.bound_prefix = None
        visitor.hoa, visitor.prefix = hoa, prefix
        if ms_sequence is not None:
            visitor.sequence = ms_sequence
        # A new default router in the PBA (RFC 5844) moves what the fastpath answers for.
        regateway = gateway is not None and gateway != visitor.gateway
        if gateway is not None:
            visitor.gateway = gateway
        visitor.state = State.REGISTERED
        visitor.lifetime = message.lifetime_seconds
        first = not visitor.registered_once
        visitor.registered_once = True
        if visitor.lifetime > 0:
            refresh = now + visitor.lifetime * self.config.refresh_at
            self._timers.schedule(("refresh", visitor.mac), refresh)
        self.counters[SignalingCounter.PBA_ACCEPTED] += 1
        actions.append(self._persist(visitor))
        if visitor.bound != hoa or regateway:
            visitor.bound = hoa
            actions.append(Bind(hoa, src, visitor.mac, visitor.link, visitor.gateway))
        if prefix is not None and visitor.bound_prefix != prefix:
            visitor.bound_prefix = prefix
            actions.append(BindPrefix(prefix, src, visitor.mac, visitor.link))
        if first:
            actions.append(event("registered", nai=visitor.nai, hoa=hoa, prefix=prefix, dlmap=src))
        elif visitor.reregistering:  # the DLMAP restarted: say it is registered again
            actions.append(event("registered", nai=visitor.nai, hoa=hoa, dlmap=src, again=True))
        visitor.reregistering = False
        return actions

    def _granted_address(
        self, message: BindingAck, src: IPv6Address
    ) -> tuple[IPv4Address | None, IPv4Address | None, int | None]:
        """What a PBA grants: the HoA, the default router and the per-MS sequence number."""
        dialect = self.config.peers[src]
        if dialect.name == "draft":
            seed = message.find(SeedIPv4HomeAddress)
            if seed is None or seed.address == UNSPECIFIED:
                return None, None, None
            return seed.address, None, seed.sequence
        reply = message.find(IPv4HomeAddressReply)
        router = message.find(IPv4DefaultRouterAddress)
        if reply is None or reply.status >= 128 or reply.address == UNSPECIFIED:
            return None, None, None
        return reply.address, router.address if router is not None else None, None

    def _invalid(
        self, visitor: Visitor, message: BindingAck, src: IPv6Address, hoa: IPv4Address | None
    ) -> DMPACounter | None:
        """Why an accepting PBA cannot be taken, or None. Seed 3.1.2: a PBA for an IPv4 MS has
        P ("SHOULD be 1") and, in the seed's dialect, V (set when the PBU's was); and it grants
        the address the PBU asked for, when it asked for one (static, DHCP lease, refresh)."""
        dialect = self.config.peers[src]
        if not message.flags & _BA_P or (
            dialect.name == "draft" and dialect.ba_has_v(message.flags) == visitor.ipv6
        ):
            return DMPACounter.PBA_NOT_PROXY
        asked = visitor.hoa
        if visitor.state is not State.DEREGISTERING and None not in (asked, hoa) and hoa != asked:
            return DMPACounter.PBA_OTHER_ADDRESS
        return None

    @staticmethod
    def _reordered(visitor: Visitor, message: BindingAck) -> bool:
        """A 157 to the first registration of an MS that attached here: its PBU lost the
        timestamp order to the former DMPA's. (In the draft dialect a new attachment's per-MS
        sequence 0 is accepted always; a refused refresh is another matter: the MS moved.)"""
        return (
            message.status == Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED
            and visitor.state is State.REGISTERING
            and not visitor.registered_once
        )

    def _refused(
        self, visitor: Visitor, message: BindingAck, now: float, wall: float
    ) -> list[Action]:
        self.counters[PBA_STATUS(message.status)] += 1
        if visitor.ipv6 and message.status in _NO_IPV6 and not visitor.registered_once:
            # A DLMAP without IPv6 service (seed 3.1.1's V=0 refused): IPv4 only, at once.
            visitor.ipv6 = False
            actions = self._send_pbu(visitor, now, wall, lifetime=self.config.lifetime)
            return [*actions, event("ipv6_refused", nai=visitor.nai, status=message.status)]
        actions = self._unbind(visitor)
        if visitor.registered_once:
            # A refresh (or re-registration) refused: the DLMAP no longer has the MS here (it
            # moved, and the revocation never reached us). Forgotten, not kept as refused: if
            # the MS is in fact here, its next frame attaches it afresh.
            self.counters[DMPACounter.REFRESH_REFUSED] += 1
            actions += self._forget(visitor, "refresh_refused")
            return actions
        visitor.state = State.REJECTED
        self._timers.cancel(("refresh", visitor.mac))
        actions.append(Persist("visitor", str(visitor.mac), None))
        actions.append(event("registration_refused", nai=visitor.nai, status=message.status))
        return actions

    def _resynchronise(
        self, message: BindingAck, src: IPv6Address, now: float, wall: float
    ) -> list[Action]:
        """135: the DLMAP's last accepted BU sequence number is ahead of ours; jump past it and
        resend the refused visitor's PBU (named by the MN-ID the PBA echoes)."""
        self.counters[PBA_STATUS(int(Status.SEQUENCE_NUMBER_OUT_OF_WINDOW))] += 1
        if src not in self.config.peers:
            return [event("unmatched_pba", peer=src, sequence=message.sequence)]
        self.bu_sequence = seq_max(self.bu_sequence, message.sequence)
        mn_id = message.find(MobileNodeIdentifier)
        nai = mn_id.nai if mn_id is not None else None
        for visitor in self.visitors.values():
            if visitor.pending is not None and visitor.tunnel_dst == src and visitor.nai == nai:
                lifetime = 0 if visitor.state is State.DEREGISTERING else self.config.lifetime
                return self._send_pbu(visitor, now, wall, lifetime=lifetime)
        return []

    def _on_bri(self, message: BindingRevocationIndication, src: IPv6Address) -> list[Action]:
        """RFC 5846 6.2, seed figure 7 steps 3-4: remove the visitor the BRI names and answer
        with a BRA naming it back (its MN-ID and IPv4 HoA option, in the peer's dialect).

        Removing it also ends its PBU retransmissions: one still going after the revocation
        (per-MS sequence 0, "accept always") would take the binding back from the DMPA the MS
        moved to."""
        mn_id = message.find(MobileNodeIdentifier)
        nai = mn_id.nai if mn_id is not None else None
        seed = message.find(SeedIPv4HomeAddress)
        request = message.find(IPv4HomeAddressRequest)
        hoa = seed.address if seed is not None else request.address if request else None
        status = BRAStatus.SUCCESS
        actions: list[Action] = []
        if nai is None:
            status = BRAStatus.REVOKED_MN_IDENTITY_REQUIRED
        elif message.flags & BRFlag.V and hoa is None:
            status = BRAStatus.IPV4_HOA_OPTION_REQUIRED  # RFC 5846: V=1 needs the HoA option
        else:
            visitor = next(
                (
                    v
                    for v in self.visitors.values()
                    if v.nai == nai and v.tunnel_dst == src and _names(v, hoa)
                ),
                None,
            )
            if visitor is None:
                status = BRAStatus.BINDING_DOES_NOT_EXIST
            elif seed is not None and seed.sequence and seq_after(visitor.sequence, seed.sequence):
                # Seed 5.1: the per-MS number orders "the MS related proxy MIPv6 messages". This
                # BRI revoked a registration older than ours (a late copy of an earlier one).
                self.counters[DMPACounter.BRI_STALE] += 1
                status = BRAStatus.REVOCATION_FAILED_MN_ATTACHED
            else:
                self.counters[DMPACounter.REVOKED] += 1
                actions += self._unbind(visitor)
                actions += self._forget(visitor, "revoked")
        self.counters[BRA_STATUS(status)] += 1
        # The BRA names what the BRI named, as the BRI carried it (so in the peer's dialect).
        echo = tuple(o for o in (mn_id, seed or request) if o is not None)
        bra = BindingRevocationAck(status, message.sequence, message.flags, echo)
        actions.append(SendMH(src, bra))
        return actions

    # --- state helpers --------------------------------------------------------------------

    def _unbind(self, visitor: Visitor) -> list[Action]:
        actions: list[Action] = []
        if visitor.bound_prefix is not None:
            actions.append(UnbindPrefix(visitor.bound_prefix))
            visitor.bound_prefix = None
        if visitor.bound is not None:
            actions.append(Unbind(visitor.bound))
            visitor.bound = None
        return actions

    def _forget(self, visitor: Visitor, why: str) -> list[Action]:
        self.visitors.pop(visitor.mac, None)
        if visitor.pending is not None and visitor.tunnel_dst is not None:
            self._in_flight.pop((visitor.tunnel_dst, visitor.pending), None)
        self._timers.cancel(("retransmit", visitor.mac))
        self._timers.cancel(("refresh", visitor.mac))
        return [
            Persist("visitor", str(visitor.mac), None),
            event(why, mac=visitor.mac, nai=visitor.nai, hoa=visitor.hoa),
        ]

    def _then(self, visitor: Visitor, now: float, wall: float) -> list[Action]:
        """After a de-registration ends: the authentication that came meanwhile, if any."""
        waiting = visitor.next_authorization
        if waiting is None:
            return []
        link, profile = waiting
        return self.authorized(visitor.mac, link, profile, now, wall)

    def _persist(self, visitor: Visitor) -> Persist:
        return Persist("visitor", str(visitor.mac), visitor.row())

    def restore(
        self, tables: Mapping[str, Iterable[Mapping[str, Any]]], now: float, wall: float
    ) -> list[Action]:
        """Reload the visitor list and re-register every visitor (a restarted DMPA
        re-registers its visitors); the fastpath is bound again from the new PBAs."""
        stored_counter: int | None = None
        for row in tables.get("meta", ()):
            if row["key"] == "bu_sequence":
                self.bu_sequence = int(row["value"])
            elif row["key"] == "restart_counter":
                stored_counter = int(row["value"])
        counter = self.heartbeat.next_restart_counter(stored_counter, wall)
        actions: list[Action] = [
            Persist("meta", "restart_counter", {"key": "restart_counter", "value": counter})
        ]
        self.heartbeat.start(now)
        for row in tables.get("visitor", ()):
            if not row.get("hoa") or not row.get("tunnel_dst") or not row.get("nai"):
                continue
            mac = MacAddress.parse(str(row["mac"]))
            visitor = Visitor(
                mac,
                int(row["link"]),
                MacAddress.parse(str(row["pseudo_mac"])),
                IPv6Address(str(row["tunnel_src"])),
                IPv4Address(str(row["gateway"])),
                nai=str(row["nai"]),
                hoa=IPv4Address(str(row["hoa"])),
                tunnel_dst=IPv6Address(str(row["tunnel_dst"])),
                sequence=int(row["sequence"]),
                mode=row.get("mode"),
                registered_once=True,
                ipv6=bool(row.get("ipv6")),
                prefix=IPv6Network(str(row["prefix"])) if row.get("prefix") else None,
            )
            if visitor.tunnel_dst not in self.config.peers:
                continue
            self.visitors[mac] = visitor
            visitor.state = State.REGISTERING
            visitor.timeout = self.config.timeout
            # The fastpath is rebuilt from the database at once; the re-registration confirms it.
            assert visitor.hoa is not None and visitor.tunnel_dst is not None
            visitor.bound = visitor.hoa
            actions.append(
                Bind(visitor.hoa, visitor.tunnel_dst, mac, visitor.link, visitor.gateway)
            )
            if visitor.prefix is not None:
                visitor.bound_prefix = visitor.prefix
                actions.append(BindPrefix(visitor.prefix, visitor.tunnel_dst, mac, visitor.link))
            actions += self._send_pbu(visitor, now, wall, lifetime=self.config.lifetime)
        return actions


def _granted_prefix(message: BindingAck) -> IPv6Network | None:
    """The home network prefix a PBA grants (RFC 5213 6.9.1.2), or None."""
    option = message.find(HomeNetworkPrefix)
    if option is None or not 1 <= option.prefix_length <= 128:
        return None
    try:
        return IPv6Network((option.prefix, option.prefix_length))
    except ValueError:  # host bits set: not a prefix
        return None


def _names(visitor: Visitor, hoa: IPv4Address | None) -> bool:
    """Whether a revocation of ``hoa`` (None: of the NAI, whatever its address) is this
    visitor's. A visitor whose first PBA has not come does not know its HoA yet (mode dlmap
    asks for 0.0.0.0): its registration may still be the one revoked, so the NAI decides."""
    if hoa is None or visitor.hoa == hoa:
        return True
    return visitor.hoa is None and visitor.pending is not None
