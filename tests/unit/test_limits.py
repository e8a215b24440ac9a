"""Per-source rate limits (router.core.limits): token buckets in a capped table, the DMPA's
access admission and the DLMAP's limit on PBUs for new NAIs, and their [limits] config."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from router.app.config import KEYS, LIMITS_DLMAP, LIMITS_DMPA, ConfigErrors, loads
from router.app.settings import DLMAPSettings, DMPASettings
from router.core.actions import Action
from router.core.dlmap import DLMAP, DLMAPConfig
from router.core.limits import (
    AccessLimits,
    LimitedDLMAP,
    LimitSettings,
    Rate,
    TokenBuckets,
    pbu_nai,
)
from router.core.pool import HoAPool
from router.services.access import AccessDispatcher
from router.services.arp_proxy import ArpProxy
from router.services.dhcp_dmpa import DhcpDmpa
from router.services.icmp_responder import IcmpResponder
from router.wire.constants import BUFlag
from router.wire.dhcp import DhcpMessageType
from router.wire.dialect import DRAFT
from router.wire.ethernet import MacAddress
from router.wire.mh import BindingUpdate, Heartbeat, MobilityMessage
from router.wire.mh_options import MobileNodeIdentifier
from tests.keys import example
from tests.netns.access_helpers import (
    GATEWAY,
    HOA,
    MS,
    arp_frame,
    authenticate,
    dhcp_client,
    dhcp_frame,
)
from tests.unit.test_config import DLMAP as DLMAP_TEXT
from tests.unit.test_config import DMPA as DMPA_TEXT

ETC = Path(__file__).resolve().parents[2] / "etc"


# --- token buckets --------------------------------------------------------------------------


def test_a_bucket_passes_its_burst_then_its_rate() -> None:
    buckets = TokenBuckets(Rate(2.0, 5))
    assert [buckets.allow("a", 10.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert buckets.allow("a", 10.4) is False  # 0.8 token
    assert buckets.allow("a", 10.5) is True  # 1.0 token
    assert buckets.allow("a", 100.0) is True and buckets.allowed == 7 and buckets.limited == 3
    # the bucket never holds more than the burst, however long it waited
    assert sum(buckets.allow("a", 1000.0) for _ in range(20)) == 5


def test_sources_have_their_own_buckets() -> None:
    buckets = TokenBuckets(Rate(1.0, 2))
    assert [buckets.allow("flood", 0.0) for _ in range(50)].count(True) == 2
    assert buckets.allow("quiet", 0.0) and buckets.allow("quiet", 0.0)


def test_the_table_is_capped_and_evicts_the_least_recently_seen() -> None:
    buckets = TokenBuckets(Rate(1.0, 1), capacity=100)
    buckets.allow("kept", 0.0)
    for n in range(10_000):
        buckets.allow(n, 0.0)
        if n % 50 == 0:
            buckets.allow("kept", 0.0)  # seen often: stays in the table, its bucket empty
    assert len(buckets) == 100 and buckets.evicted == 10_001 - 100
    assert buckets.allow("kept", 0.0) is False
    stats = buckets.stats("arp")  # the names of the limits are declared (core/limits.py)
    assert stats["limit.arp.table"] == 100 and stats["limit.arp.evicted"] == buckets.evicted


def test_rate_zero_turns_the_limit_off_and_remembers_nothing() -> None:
    buckets = TokenBuckets(Rate(0.0, 1))
    assert all(buckets.allow(n, 0.0) for n in range(1000))
    assert len(buckets) == 0 and buckets.limited == 0


def test_a_clock_going_backwards_adds_no_tokens() -> None:
    buckets = TokenBuckets(Rate(1.0, 1))
    assert buckets.allow("a", 50.0)
    assert not buckets.allow("a", 10.0)


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 1), (1.0, 0)])
def test_an_impossible_rate_is_our_bug(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        Rate(rate, burst)


# --- the DMPA's access admission -----------------------------------------------------------


def limited_stack(**rates: Rate) -> tuple[AccessDispatcher, AccessLimits]:
    from router.core.dmpa import DMPA, DMPAConfig
    from tests.netns.access_helpers import DLMAP as DLMAP_ADDRESS
    from tests.netns.access_helpers import PSEUDO, SELF

    node = DMPA(DMPAConfig(SELF, PSEUDO, GATEWAY, {DLMAP_ADDRESS: DRAFT}, 3600))
    limits = AccessLimits(LimitSettings(**rates, table_size=64))  # type: ignore[arg-type]
    dispatch = AccessDispatcher(
        node, ArpProxy(node), IcmpResponder(), DhcpDmpa(node), admission=limits
    )
    return dispatch, limits


def mac(n: int) -> MacAddress:
    return MacAddress(bytes((2, 0xEE, 0, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF)))


def test_a_flood_of_new_macs_draws_from_one_bucket_per_link() -> None:
    dispatch, limits = limited_stack(new_mac=Rate(1.0, 10))
    node = dispatch.host
    for n in range(1000):
        dispatch.receive_frame(arp_frame(mac(n), IPv4Address(0), GATEWAY), 0, 5.0, 1e9)
    assert len(node.visitors) == 10  # the burst; the rest never became visitors
    assert dispatch.counters["limit.new_mac"] == 990
    # another link has its own bucket; a known MAC is no new MAC
    dispatch.receive_frame(arp_frame(mac(5000), IPv4Address(0), GATEWAY), 1, 5.0, 1e9)
    dispatch.receive_frame(arp_frame(mac(0), IPv4Address(0), GATEWAY), 0, 5.0, 1e9)
    assert len(node.visitors) == 11 and dispatch.counters["limit.new_mac"] == 990
    assert limits.new_macs.limited == 990


def test_arp_and_discovers_are_limited_per_mac_and_the_neighbour_keeps_going() -> None:
    dispatch, _ = limited_stack(arp=Rate(1.0, 3), dhcp_discover=Rate(1.0, 2))
    node = dispatch.host
    other = mac(7)
    authenticate(node, MS, "dhcp")
    authenticate(node, other, "dhcp", nai="other@example.net")
    for _ in range(100):
        dispatch.receive_frame(arp_frame(MS, HOA, IPv4Address("192.0.2.77")), 0, 1.0, 1e9)
        frame = dhcp_frame(MS, dhcp_client(DhcpMessageType.DISCOVER, MS))
        dispatch.receive_frame(frame, 0, 1.0, 1e9)
    assert dispatch.counters["limit.arp"] == 97
    assert dispatch.counters["arp.reply"] == 3
    assert dispatch.counters["limit.dhcp_discover"] == 98
    assert dispatch.counters["dhcp.relayed.discover"] == 2
    # the other MS's requests and a REQUEST of the flooder are not limited by it
    answered = dispatch.receive_frame(
        arp_frame(other, IPv4Address("192.0.2.21"), GATEWAY), 0, 1.0, 1e9
    )
    assert answered and dispatch.counters["limit.arp"] == 97
    request = dhcp_frame(MS, dhcp_client(DhcpMessageType.REQUEST, MS, requested=HOA))
    assert dispatch.receive_frame(request, 0, 1.0, 1e9)
    assert dispatch.counters["dhcp.relayed.request"] == 1


# --- the DLMAP's limit on PBUs for new NAIs ------------------------------------------------


class FakeCore:
    def __init__(self) -> None:
        self.bindings: dict[str, object] = {"bound@example.net": object()}
        self.seen: list[MobilityMessage] = []

    def receive(
        self, message: MobilityMessage, src: IPv6Address, now: float, wall: float
    ) -> list[Action]:
        self.seen.append(message)
        return []

    def receive_unknown_type(self, mh_type: int, src: IPv6Address, now: float) -> list[Action]:
        return []

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float, wall: float) -> list[Action]:
        return []


def pbu(nai: str, sequence: int = 1) -> BindingUpdate:
    return BindingUpdate(sequence, BUFlag.P | BUFlag.A, 900, (MobileNodeIdentifier.from_nai(nai),))


def test_pbus_for_new_nais_are_limited_per_dmpa_and_bound_nais_pass() -> None:
    core, counters = FakeCore(), Counter[str]()
    limited = LimitedDLMAP(core, Rate(1.0, 5), 16, counters)
    flooder, honest = IPv6Address("2001:db8::66"), IPv6Address("2001:db8::11")
    for n in range(200):
        limited.receive(pbu(f"new{n}@example.net"), flooder, 3.0, 1e9)
    assert counters["limit.pbu_new_nai"] == 195 and len(core.seen) == 5
    for n in range(20):  # refreshes of a bound NAI, a heartbeat: never limited
        limited.receive(pbu("bound@example.net", n), flooder, 3.0, 1e9)
    limited.receive(Heartbeat(1, 0), flooder, 3.0, 1e9)
    assert len(core.seen) == 26
    limited.receive(pbu("fresh@example.net"), honest, 3.0, 1e9)  # another DMPA: its own bucket
    assert len(core.seen) == 27 and counters["limit.pbu_new_nai"] == 195
    assert limited.buckets.stats("pbu_new_nai")["limit.pbu_new_nai.table"] == 2


def test_the_real_core_fits_the_limited_front() -> None:
    core = DLMAP(
        DLMAPConfig(IPv6Address("2001:db8::1"), IPv4Address("192.0.2.1"), {}),
        HoAPool(((IPv4Address("192.0.2.100"), IPv4Address("192.0.2.110")),)),
    )
    limited = LimitedDLMAP(core, Rate(1.0, 1), 4, Counter())
    src = IPv6Address("2001:db8::66")
    first = limited.receive(pbu("a@example.net"), src, 0.0, 1e9)
    assert first  # the core answered (a PBA refusing the unknown DMPA)
    assert limited.receive(pbu("b@example.net"), src, 0.0, 1e9) == []
    assert limited.get_timer() == core.get_timer()


def test_pbu_nai_reads_the_first_mn_id() -> None:
    assert pbu_nai(pbu("x@example.net")) == "x@example.net"
    assert pbu_nai(BindingUpdate(1, BUFlag.P, 1)) is None
    assert pbu_nai(Heartbeat(1, 0)) is None


# --- [limits] in the config ------------------------------------------------------------------


def test_the_examples_document_their_limits() -> None:
    for role, names in (("dmpa", LIMITS_DMPA), ("dlmap", LIMITS_DLMAP)):
        text = (ETC / f"{role}.ini").read_text()
        for key in (*(f"{n}_{p}" for n in names for p in ("rate", "burst")), "table_size"):
            assert key in KEYS["limits"]
            assert re.search(rf"^;?{key} = ", text, re.M), f"{role}.ini lacks limits.{key}"
        settings, _ = loads(example(f"{role}.ini"))  # with the tests' key file
        assert settings.limits == LimitSettings()


def test_limits_are_read_for_each_role() -> None:
    dmpa, _ = loads(DMPA_TEXT + "\n[limits]\nnew_mac_rate = 0\narp_burst = 7\ntable_size = 9\n")
    assert isinstance(dmpa, DMPASettings)
    assert dmpa.limits.new_mac == Rate(0.0, 100) and dmpa.limits.arp == Rate(20.0, 7)
    assert dmpa.limits.table_size == 9
    dlmap, _ = loads(DLMAP_TEXT + "\n[limits]\npbu_new_nai_rate = 5.5\n")
    assert isinstance(dlmap, DLMAPSettings) and dlmap.limits.pbu_new_nai == Rate(5.5, 1000)
    plain, _ = loads(DLMAP_TEXT)
    assert plain.limits == LimitSettings()


def test_bad_limits_are_all_reported_at_once() -> None:
    text = DMPA_TEXT + (
        "\n[limits]\nnew_mac_rate = -1\narp_burst = 0\ntable_size = lots\n"
        "pbu_new_nai_rate = 3\nsomething = 1\n"
    )
    with pytest.raises(ConfigErrors) as caught:
        loads(text)
    found = [p for p in caught.value.problems if p.startswith("limits.")]
    assert {p.split(":")[0] for p in found} == {
        "limits.new_mac_rate",
        "limits.arp_burst",
        "limits.table_size",
        "limits.pbu_new_nai_rate",
        "limits.something",
    }, found


def test_rejected_strangers_are_forgotten_past_the_cap() -> None:
    from router.core.dmpa import DMPA, DMPAConfig, State
    from tests.netns.access_helpers import DLMAP as DLMAP_ADDRESS
    from tests.netns.access_helpers import PSEUDO, SELF

    node = DMPA(DMPAConfig(SELF, PSEUDO, GATEWAY, {DLMAP_ADDRESS: DRAFT}, 3600))
    dispatch = AccessDispatcher(
        node, ArpProxy(node), IcmpResponder(), DhcpDmpa(node), max_strangers=10
    )
    authenticate(node, MS, "dhcp")  # a real MS, attached long before
    for n in range(100):
        dispatch.receive_frame(arp_frame(mac(n), IPv4Address(0), GATEWAY), 0, 1.0, 1e9)
        if n % 3:
            node.aaa_result(mac(n), None, 1.0, 1e9)  # AAA says no to two in three
    rejected = [v for v in node.visitors.values() if v.state is State.REJECTED]
    waiting = [v for v in node.visitors.values() if v.state is State.AUTHENTICATING]
    assert len(rejected) <= 10 and len(waiting) == 34  # those AAA has not answered are kept
    assert MS in node.visitors
    assert dispatch.counters["limit.rejected_forgotten"] == 66 - len(rejected)


def test_strangers_cannot_evict_a_dmpa_from_the_pbu_new_nai_limit(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """PBUs from addresses that are no DMPA are refused by the core without any state, yet each
    took a slot of the limit's table: a few of them (any IPv6 source will do) evicted a DMPA
    that had spent its burst, which came back with a full bucket (router/core/limits.py,
    Rule 3)."""
    from router.adapters.store import Store
    from router.wire.mh import BindingAck, decode_message
    from router.wire.mh_options import SeedIPv4HomeAddress
    from tests.unit.nodes import DLMAP, DLMAP_INI, DMPA1, dlmap_node, sealed

    ini = DLMAP_INI + "[limits]\npbu_new_nai_rate = 0.001\npbu_new_nai_burst = 2\ntable_size = 4\n"
    settings, _ = loads(ini)
    assert isinstance(settings, DLMAPSettings)
    sent: list[tuple[bytes, IPv6Address]] = []
    node = dlmap_node(
        settings, Store(tmp_path / "lm.sqlite"), loop, lambda d, a: sent.append((d, a))
    )

    def pbu(sequence: int, nai: str, src: IPv6Address) -> list[BindingAck]:
        options = (MobileNodeIdentifier.from_nai(nai), SeedIPv4HomeAddress(0, IPv4Address(0)))
        message = BindingUpdate(sequence, DRAFT.pbu_flags(), 900, options)
        # A configured DMPA signs (protected by default); a stranger cannot: the core refuses it.
        data = sealed(message, src, DLMAP, node.clock.wall()) if src == DMPA1 else message.encode()
        node.on_mh(data, src)
        node.runner.flush()
        replies = [decode_message(data, DRAFT) for data, dst in sent if dst == src]
        sent.clear()
        return [r for r in replies if isinstance(r, BindingAck)]

    try:
        assert [a.status for a in pbu(1, "ms1@x", DMPA1) + pbu(2, "ms2@x", DMPA1)] == [0, 0]
        assert pbu(3, "ms3@x", DMPA1) == []  # burst spent: dropped unanswered
        for n in range(8):  # strangers: refused (154), whatever the limit says
            stranger = IPv6Address(f"2001:db8:666::{n + 1:x}")
            assert [a.status for a in pbu(1, f"x{n}@x", stranger)] == [154]
        assert pbu(4, "ms4@x", DMPA1) == []  # still no token for the DMPA
        assert node.counters["limit.pbu_new_nai"] == 2
    finally:
        node.store.close()
