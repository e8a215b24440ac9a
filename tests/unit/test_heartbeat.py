"""RFC 5847 heartbeats in the sans-I/O monitor, and what each role does with a peer's restart."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address, IPv6Address

from router.core.actions import Action, Persist, SendMH
from router.core.counters import Counters
from router.core.dlmap import DLMAP, DLMAPConfig
from router.core.dmpa import DMPA, DMPAConfig, Profile, State
from router.core.heartbeat import HeartbeatConfig, HeartbeatMonitor, PeerChange
from router.core.pool import HoAPool
from router.wire.constants import HeartbeatFlag
from router.wire.dialect import DRAFT
from router.wire.ethernet import MacAddress
from router.wire.mh import BindingAck, BindingUpdate, Heartbeat
from router.wire.mh_options import MobileNodeIdentifier, RestartCounter, SeedIPv4HomeAddress

PEER = IPv6Address("2001:db8:2::1")
OTHER = IPv6Address("2001:db8:2::99")


def monitor(interval: float = 10.0, missing: int = 3) -> HeartbeatMonitor:
    hb = HeartbeatMonitor(HeartbeatConfig(interval, missing), [PEER], Counter())
    hb.start(0.0)
    return hb


def requests(actions: list[Action]) -> list[Heartbeat]:
    return [
        a.message for a in actions if isinstance(a, SendMH) and isinstance(a.message, Heartbeat)
    ]


def response(sequence: int, counter: int | None = None, flags: int = HeartbeatFlag.R) -> Heartbeat:
    options = () if counter is None else (RestartCounter(counter),)
    return Heartbeat(sequence, flags, options)


def test_a_request_is_answered_with_its_sequence_and_our_restart_counter() -> None:
    hb = monitor()
    hb.restart_counter = 7
    actions, changes = hb.receive(Heartbeat(0xFFFFFFFF), OTHER)  # anyone may ask
    assert changes == []
    assert actions == [SendMH(OTHER, Heartbeat(0xFFFFFFFF, HeartbeatFlag.R, (RestartCounter(7),)))]


def test_interval_zero_sends_nothing() -> None:
    hb = monitor(interval=0)
    assert hb.get_timer() is None


def test_requests_go_every_interval_with_growing_sequence_numbers() -> None:
    hb = monitor(interval=10)
    assert hb.get_timer() == 0.0  # the first at start
    first, _ = hb.handle_timer(10.0)
    assert [m.sequence for m in requests(first)] == [1]
    assert not requests(first)[0].flags & HeartbeatFlag.R
    hb.receive(response(1, 0), PEER)
    second, _ = hb.handle_timer(20.0)
    assert [m.sequence for m in requests(second)] == [2]
    assert hb.counters["heartbeat.missed"] == 0


def test_missing_heartbeats_make_the_peer_unreachable_once_then_reachable() -> None:
    hb = monitor(interval=10, missing=3)
    changes = []
    for tick in range(1, 7):  # request 1 at t=10; 2, 3, 4 each find one unanswered
        _, new = hb.handle_timer(tick * 10.0)
        changes += new
    assert changes == [(PEER, PeerChange.UNREACHABLE)]
    assert hb.counters["heartbeat.missed"] == 5
    assert not hb.peers[PEER].reachable
    _, stale = hb.receive(response(1), PEER)  # a late answer to an old request: ignored
    assert stale == [] and hb.counters["heartbeat.response.unmatched"] == 1
    _, back = hb.receive(response(6), PEER)
    assert back == [(PEER, PeerChange.REACHABLE)]
    assert hb.peers[PEER].missed == 0


def test_two_misses_with_threshold_three_is_still_reachable() -> None:
    hb = monitor(interval=10, missing=3)
    for tick in range(1, 4):
        _, changes = hb.handle_timer(tick * 10.0)
        assert changes == []
    assert hb.peers[PEER].reachable


def test_a_changed_restart_counter_means_the_peer_restarted() -> None:
    hb = monitor()
    hb.handle_timer(10.0)
    _, first = hb.receive(response(1, 4), PEER)
    assert first == []  # the first value seen is only remembered
    hb.handle_timer(20.0)
    _, same = hb.receive(response(2, 4), PEER)
    assert same == []
    hb.handle_timer(30.0)
    _, changed = hb.receive(response(3, 0), PEER)  # restarted with its state lost: 0 again
    assert changed == [(PEER, PeerChange.RESTARTED)]
    # An unsolicited response (U=1) needs no request outstanding.
    _, unsolicited = hb.receive(response(99, 1, HeartbeatFlag.R | HeartbeatFlag.U), PEER)
    assert unsolicited == [(PEER, PeerChange.RESTARTED)]
    assert hb.counters["heartbeat.peer_restarted"] == 2


def test_responses_from_unknown_peers_are_counted_and_ignored() -> None:
    hb = monitor()
    hb.handle_timer(10.0)
    actions, changes = hb.receive(response(1, 3), OTHER)
    assert (actions, changes) == ([], [])
    assert hb.counters["heartbeat.response.unknown_peer"] == 1


def test_restart_counter_grows_by_one_per_start_wraps_and_starts_from_the_clock() -> None:
    hb = monitor()
    assert hb.next_restart_counter(None, 1_700_000_000.5) == 1_700_000_000  # nothing stored
    assert hb.next_restart_counter(5, 1e9) == 6
    assert hb.next_restart_counter(0xFFFFFFFF, 1e9) == 0


# --- the roles -------------------------------------------------------------------------------

SELF = IPv6Address("2001:db8:1::1")
MS = MacAddress.parse("02:00:00:00:00:01")
HOA = IPv4Address("192.0.2.20")
GATEWAY = IPv4Address("192.0.2.1")


def registered_dmpa() -> DMPA:
    config = DMPAConfig(
        SELF,
        MacAddress.parse("02:00:5e:00:00:01"),
        GATEWAY,
        {PEER: DRAFT},
        heartbeat=HeartbeatConfig(5.0, 3),
    )
    node = DMPA(config)
    restored = node.restore({"meta": [{"key": "restart_counter", "value": 2}]}, 0.0, 1e9)
    assert Persist("meta", "restart_counter", {"key": "restart_counter", "value": 3}) in restored
    node.attach(MS, 1, 0.0)
    actions = node.aaa_result(MS, Profile("ms@example.net", "static", PEER, HOA), 0.0, 1e9)
    (pbu,) = [a.message for a in actions if isinstance(a, SendMH)]
    options = (MobileNodeIdentifier.from_nai("ms@example.net"), SeedIPv4HomeAddress(4, HOA))
    node.receive(
        BindingAck(0, DRAFT.pba_flags(ipv4=True), pbu.sequence, 900, options), PEER, 0.1, 1e9
    )
    assert node.visitors[MS].state is State.REGISTERED
    return node


def test_dmpa_registers_its_visitors_again_when_the_dlmap_restarted() -> None:
    node = registered_dmpa()
    (request,) = requests(node.handle_timer(5.0, 1e9 + 5))
    node.receive(response(request.sequence, 8), PEER, 5.1, 1e9 + 5)
    (request,) = requests(node.handle_timer(10.0, 1e9 + 10))
    actions = node.receive(response(request.sequence, 9), PEER, 10.1, 1e9 + 10)
    (pbu,) = [a.message for a in actions if isinstance(a, SendMH)]
    assert isinstance(pbu, BindingUpdate) and pbu.lifetime > 0
    seed = pbu.find(SeedIPv4HomeAddress)
    assert seed is not None and seed.address == HOA  # it keeps its address
    assert node.visitors[MS].state is State.REGISTERING
    assert node.counters["pbu.peer_restarted"] == 1


def test_dmpa_does_not_reregister_on_an_unreachable_dlmap() -> None:
    node = registered_dmpa()
    sent: list[Action] = []
    for tick in range(1, 6):
        sent += node.handle_timer(tick * 5.0, 1e9)
    assert all(isinstance(a.message, Heartbeat) for a in sent if isinstance(a, SendMH))
    assert node.counters["heartbeat.peer_unreachable"] == 1
    assert node.visitors[MS].state is State.REGISTERED


def test_dlmap_answers_with_a_counter_one_above_the_stored_one() -> None:
    dlmap = DLMAP(
        DLMAPConfig(IPv6Address("2001:db8:2::1"), GATEWAY, {SELF: DRAFT}),
        HoAPool([(IPv4Address("192.0.2.2"), IPv4Address("192.0.2.9"))], {}, 600),
    )
    assert dlmap.get_timer() is None  # interval 0 by default: only answers
    dlmap.restore({"meta": [{"key": "restart_counter", "value": 41}]}, 0.0, 1e9)
    actions = dlmap.receive(Heartbeat(12), SELF, 1.0, 1e9)
    assert actions == [SendMH(SELF, Heartbeat(12, HeartbeatFlag.R, (RestartCounter(42),)))]


# --- rule 6: a DLMAP that keeps its identity announces itself; its DMPAs resend at once ------


def test_announce_asks_every_peer_now_and_a_one_off_is_never_missed() -> None:
    counters = Counters()
    hb = HeartbeatMonitor(HeartbeatConfig(0.0, 3), [PEER, OTHER], counters)
    actions = hb.announce(3.0)
    assert [a.peer for a in actions if isinstance(a, SendMH)] == [PEER, OTHER]
    assert [m.sequence for m in requests(actions)] == [1, 1]
    assert hb.get_timer() is None  # interval 0: a one-off, no schedule
    _, changes = hb.receive(response(1, 5), PEER, 3.1)
    assert changes == [] and counters["heartbeat.response.unmatched"] == 0
    assert counters["heartbeat.missed"] == 0


def test_announce_with_an_interval_goes_on_from_now() -> None:
    hb = HeartbeatMonitor(HeartbeatConfig(10.0, 3), [PEER], Counters())
    assert [m.sequence for m in requests(hb.announce(2.0))] == [1]
    assert hb.get_timer() == 12.0


def kept_identity_dlmap(keep: bool) -> tuple[DLMAP, list[Action]]:
    dlmap = DLMAP(
        DLMAPConfig(
            IPv6Address("2001:db8:2::1"), GATEWAY, {SELF: DRAFT}, keep_restart_counter=keep
        ),
        HoAPool([(IPv4Address("192.0.2.2"), IPv4Address("192.0.2.9"))], {}, 600),
    )
    actions = dlmap.restore({"meta": [{"key": "restart_counter", "value": 41}]}, 0.0, 1e9)
    return dlmap, actions


def test_a_dlmap_keeping_its_identity_asks_every_dmpa_after_storing_its_counter() -> None:
    _, actions = kept_identity_dlmap(keep=True)
    stored = actions.index(
        Persist("meta", "restart_counter", {"key": "restart_counter", "value": 41})
    )
    sent = [(i, a.message) for i, a in enumerate(actions) if isinstance(a, SendMH)]
    assert [message for _, message in sent] == [Heartbeat(1)]
    assert all(i > stored for i, _ in sent)
    _, fresh = kept_identity_dlmap(keep=False)  # a restart: a new counter, nothing announced
    assert requests(fresh) == []


def registering_dmpa() -> tuple[DMPA, BindingUpdate]:
    """A DMPA whose MS waits for its first PBA (sent at 0.0; retransmission due at 1.5)."""
    node = DMPA(DMPAConfig(SELF, MacAddress.parse("02:00:5e:00:00:01"), GATEWAY, {PEER: DRAFT}))
    node.restore({}, 0.0, 1e9)
    node.attach(MS, 1, 0.0)
    actions = node.aaa_result(MS, Profile("ms@example.net", "static", PEER, HOA), 0.0, 1e9)
    (pbu,) = [a.message for a in actions if isinstance(a, SendMH)]
    assert isinstance(pbu, BindingUpdate) and node.get_timer() == 1.5
    return node, pbu


def pbus(actions: list[Action]) -> list[BindingUpdate]:
    return [
        a.message for a in actions if isinstance(a, SendMH) and isinstance(a.message, BindingUpdate)
    ]


def test_a_request_from_the_dlmap_resends_a_waiting_registration_at_once() -> None:
    node, first = registering_dmpa()
    actions = node.receive(Heartbeat(7), PEER, 1.0, 1e9 + 1)
    assert Heartbeat(7, HeartbeatFlag.R, (RestartCounter(node.heartbeat.restart_counter),)) in [
        a.message for a in actions if isinstance(a, SendMH)
    ]
    (again,) = pbus(actions)
    assert again.sequence != first.sequence and again.find(MobileNodeIdentifier) is not None
    assert node.counters["pbu.resent"] == 1 and node.counters["pbu.retransmit"] == 0
    assert node.get_timer() == 2.5  # the same timeout, from now
    options = (MobileNodeIdentifier.from_nai("ms@example.net"), SeedIPv4HomeAddress(4, HOA))
    flags = DRAFT.pba_flags(ipv4=True)
    node.receive(BindingAck(0, flags, again.sequence, 900, options), PEER, 1.01, 1e9 + 1)
    assert node.visitors[MS].state is State.REGISTERED


def test_no_resend_for_a_pbu_in_flight_a_repeated_request_or_another_sender() -> None:
    node, _ = registering_dmpa()
    assert pbus(node.receive(Heartbeat(1), PEER, 0.01, 1e9)) == []  # sent 10 ms ago: in flight
    assert pbus(node.receive(Heartbeat(2), OTHER, 1.0, 1e9)) == []  # not our DLMAP
    assert len(pbus(node.receive(Heartbeat(3), PEER, 1.1, 1e9))) == 1
    assert pbus(node.receive(Heartbeat(4), PEER, 1.15, 1e9)) == []  # at most one per 0.1 s
    response_only = Heartbeat(5, HeartbeatFlag.R, (RestartCounter(3),))
    assert pbus(node.receive(response_only, PEER, 2.2, 1e9)) == []  # a response is not a request
    assert node.counters["pbu.resent"] == 1


def test_a_dlmap_restart_sends_a_waiting_registration_again_at_once() -> None:
    """A refresh unanswered while the DLMAP was away backs off (up to 32 s); when the DLMAP is
    heard again with a new restart counter it is sent at once, as the registered ones are, and
    its PBA is a ``registered ... again=true`` line. An ordinary refresh's PBA is no such line."""
    node = registered_dmpa()
    (request,) = requests(node.handle_timer(5.0, 1e9 + 5))
    node.receive(response(request.sequence, 8), PEER, 5.1, 1e9 + 5)
    now, refreshes = 5.1, []
    for _ in range(3000):  # to the refresh (heartbeats every 5 s), then its retransmissions
        due = node.get_timer()
        assert due is not None
        now = due
        for action in node.handle_timer(now, 1e9 + now):
            if isinstance(action, SendMH) and isinstance(action.message, Heartbeat):
                continue  # the heartbeats go unanswered too: the DLMAP is away
            if isinstance(action, SendMH):
                refreshes.append(action.message)
        if node.visitors[MS].timeout >= 16.0:
            break
    visitor = node.visitors[MS]
    assert visitor.state is State.REGISTERING and len(refreshes) >= 4
    waiting = node.heartbeat.peers[PEER].outstanding
    assert waiting is not None
    actions = node.receive(response(waiting, 9), PEER, now + 0.5, 1e9 + now)
    (pbu,) = [a.message for a in actions if isinstance(a, SendMH)]
    assert isinstance(pbu, BindingUpdate) and pbu.lifetime > 0
    assert node.counters["pbu.peer_restarted"] == 1
    options = (MobileNodeIdentifier.from_nai("ms@example.net"), SeedIPv4HomeAddress(5, HOA))
    ack = BindingAck(0, DRAFT.pba_flags(ipv4=True), pbu.sequence, 900, options)
    done = node.receive(ack, PEER, now + 0.6, 1e9 + now)
    lines = [a for a in done if getattr(a, "kind", None) == "registered"]
    assert len(lines) == 1 and lines[0].fields.get("again") is True  # type: ignore[attr-defined]
