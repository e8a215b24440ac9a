"""RFC 5213 5.5 message ordering by timestamp (the rfc5844 dialect) across a handover.

Both DMPAs stamp their PBUs from their own clocks, which RFC 5213 only asks to be adequately
synchronised (the DLMAP takes a new binding's timestamp within ``TimestampValidityWindow`` of
its own time). A handover therefore meets the stored timestamp of another DMPA's clock: equal
is not "lower than the previously accepted" (157 is for a lower one), and a new DMPA whose
clock is a little behind is answered 157 once, then registers with its next PBU, as the first
PBU of a new attachment must not leave the MS without service (in the draft dialect the seed's
per-MS sequence 0, "accept always", plays that part).
"""

from __future__ import annotations

from router.core.dmpa import Profile, State
from router.wire.constants import Status
from router.wire.dialect import RFC5844
from router.wire.ethernet import MacAddress
from router.wire.mh import BindingAck, BindingRevocationIndication
from router.wire.mh_options import Timestamp
from tests.pair.harness import DLMAP_ADDRESS, DMPA1, DMPA2, Pair

MS = MacAddress.parse("02:00:00:00:00:01")
NAI = "020000000001@example.net"


def at_dmpa1(pair: Pair) -> None:
    pair.profiles[MS] = Profile(NAI, "dlmap", DLMAP_ADDRESS)
    pair.attach(MS, DMPA1)
    assert pair.dlmap.bindings[NAI].dmpa == DMPA1


def statuses(pair: Pair, dst: object) -> list[int]:
    return [m.status for m in pair.messages(BindingAck, dst)]  # type: ignore[arg-type]


def test_a_handover_with_an_equal_timestamp_is_accepted() -> None:
    """Two DMPAs, one clock, one instant: the new DMPA's timestamp equals the stored one."""
    pair = Pair(RFC5844)
    at_dmpa1(pair)
    stored = pair.dlmap.bindings[NAI].timestamp
    hoa = pair.dmpas[DMPA1].visitors[MS].hoa
    pair.attach(MS, DMPA2, address=hoa)
    assert Timestamp.from_unix(pair.wall).value == stored  # equal, not lower
    assert statuses(pair, DMPA2) == [Status.ACCEPTED]
    assert pair.dlmap.bindings[NAI].dmpa == DMPA2
    assert pair.dmpas[DMPA2].visitors[MS].state is State.REGISTERED
    assert pair.messages(BindingRevocationIndication, DMPA1)


def test_a_new_dmpa_whose_clock_is_behind_registers_with_its_next_pbu() -> None:
    """DMPA 2's clock is 200 ms behind (inside the 300 ms window): 50 ms after DMPA 1's PBU,
    its first PBU is older than the stored timestamp. 157 (RFC 5213 5.5), then its next PBU,
    stamped later, takes the binding; the MS does not stay refused."""
    pair = Pair(RFC5844, skew={"dmpa2": -0.2})
    at_dmpa1(pair)
    hoa = pair.dmpas[DMPA1].visitors[MS].hoa
    pair.advance(0.05)
    pair.attach(MS, DMPA2, address=hoa)
    assert statuses(pair, DMPA2) == [Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED]
    visitor = pair.dmpas[DMPA2].visitors[MS]
    assert visitor.state is State.REGISTERING  # not refused for good
    pair.advance(5.0)
    assert statuses(pair, DMPA2)[-1] == Status.ACCEPTED
    assert pair.dlmap.bindings[NAI].dmpa == DMPA2 and visitor.state is State.REGISTERED
    assert pair.fastpath["dlmap"][hoa][0] == DMPA2
    assert MS not in pair.dmpas[DMPA1].visitors  # revoked there (BRI, RFC 5846)
    counters = pair.dmpas[DMPA2].counters
    assert counters["pba.status.157"] == 1


def test_a_stale_refresh_from_the_former_dmpa_is_still_refused() -> None:
    """The retry is for a new attachment only: the former DMPA's refresh with an older
    timestamp than the new DMPA's stays refused (and it forgets the MS)."""
    pair = Pair(RFC5844, skew={"dmpa1": 0.2})  # DMPA 1 ahead: its stamps look newer
    at_dmpa1(pair)
    hoa = pair.dmpas[DMPA1].visitors[MS].hoa
    pair.advance(1.0)
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(5.0)
    assert pair.dlmap.bindings[NAI].dmpa == DMPA2
    assert MS not in pair.dmpas[DMPA1].visitors
