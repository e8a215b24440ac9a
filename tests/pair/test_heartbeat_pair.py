"""RFC 5847 between a DMPA and a DLMAP in memory: a DLMAP restart is noticed within one
heartbeat interval and every MS registered there is registered again with its address, long
before the refresh (80 % of an hour) would have found out."""

from __future__ import annotations

from ipaddress import IPv6Address

from router.core.dlmap import DLMAP
from router.core.dmpa import DMPA, DMPAConfig, Profile, State
from router.core.heartbeat import HeartbeatConfig
from router.wire.ethernet import MacAddress
from router.wire.mh import Heartbeat
from tests.pair.harness import DLMAP_ADDRESS, DMPA1, GATEWAY, PSEUDO_MAC, Pair

MACS = [MacAddress.parse(f"02:00:00:00:00:{i:02x}") for i in range(1, 4)]


class HeartbeatPair(Pair):
    def _new_dmpa(self, address: IPv6Address) -> DMPA:
        config = DMPAConfig(
            address,
            PSEUDO_MAC,
            GATEWAY,
            {DLMAP_ADDRESS: self.dialect},
            heartbeat=HeartbeatConfig(interval=5.0, missing_allowed=3),
        )
        return DMPA(config)

    def start(self) -> None:
        """What the processes do at start: restore (nothing yet), which starts the heartbeats."""
        nodes: list[DLMAP | DMPA] = [self.dlmap, *self.dmpas.values()]
        for node in nodes:
            self.apply(node, node.restore({}, self.now, self.wall))


def nai(mac: MacAddress) -> str:
    return f"{mac}@example.net".replace(":", "")


def registered_fleet(pair: HeartbeatPair) -> dict[str, object]:
    pair.start()
    for mac in MACS:
        pair.profiles[mac] = Profile(nai(mac), "dlmap", DLMAP_ADDRESS)
        pair.attach(mac, DMPA1)
    dmpa = pair.dmpas[DMPA1]
    hoas = {nai(v.mac): v.hoa for v in dmpa.visitors.values() if v.state is State.REGISTERED}
    assert len(hoas) == 3
    pair.advance(6)  # the heartbeat at start and one round: the DMPA knows the restart counter
    assert dmpa.counters["heartbeat.response.received"] == 2
    return hoas


def test_a_restarted_dlmap_gets_every_binding_confirmed_with_its_address() -> None:
    pair = HeartbeatPair()
    hoas = registered_fleet(pair)
    dmpa = pair.dmpas[DMPA1]
    pair.advance(100)
    pair.restart_dlmap()  # a new process, from its database
    pair.advance(6)  # the next heartbeat answer carries the next restart counter
    assert dmpa.counters["heartbeat.peer_restarted"] == 1
    assert dmpa.counters["pbu.peer_restarted"] == 3
    assert pair.dlmap.counters["pba.accepted"] == 3  # the re-registrations, accepted
    assert {n: b.hoa for n, b in pair.dlmap.bindings.items()} == hoas
    assert all(v.state is State.REGISTERED for v in dmpa.visitors.values())
    assert all(pair.fastpath["dlmap"][hoa] == (DMPA1, None) for hoa in hoas.values())


def test_a_dlmap_back_without_its_database_is_detected_and_refuses_unknown_addresses() -> None:
    """The restart counter starts from the clock when none is stored, so even this restart is
    seen. The DLMAP then refuses addresses it has no record of (143, rule 6): the DMPA drops
    those bindings at once instead of forwarding into a void until the refresh."""
    pair = HeartbeatPair()
    registered_fleet(pair)
    dmpa = pair.dmpas[DMPA1]
    pair.advance(100)
    pair.memory_db["dlmap"] = {}
    pair.restart_dlmap()
    pair.advance(6)
    assert dmpa.counters["heartbeat.peer_restarted"] == 1
    assert pair.dlmap.counters["pba.status.143"] == 3
    assert all(v.state is State.REJECTED for v in dmpa.visitors.values())
    assert pair.fastpath["dmpa1"] == {}


def test_heartbeats_keep_going_and_a_silent_dlmap_is_only_reported() -> None:
    pair = HeartbeatPair()
    pair.start()
    pair.profiles[MACS[0]] = Profile(nai(MACS[0]), "dlmap", DLMAP_ADDRESS)
    pair.attach(MACS[0], DMPA1)
    pair.lose = lambda wire: isinstance(wire.message, Heartbeat)
    pair.advance(5 * 5 + 1)
    dmpa = pair.dmpas[DMPA1]
    assert dmpa.counters["heartbeat.peer_unreachable"] == 1
    assert dmpa.visitors[MACS[0]].state is State.REGISTERED
    pair.lose = lambda wire: False
    pair.advance(5)
    assert dmpa.counters["heartbeat.peer_reachable"] == 1
    assert dmpa.counters["heartbeat.peer_restarted"] == 0
