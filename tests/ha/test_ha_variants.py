"""The long failover variants (``make ha``; CI runs only tests/netns/test_ha_failover.py), each
under the whole proof of issue 19: ten real MSs (DHCP, a ping every 10 ms, a TCP session and a
numbered UDP flow each) and the generator of simulated MSs registering and handing over
between two simulated DMPAs through the fault.

- The active DLMAP's whole namespace cut off (every link down), then back.
- A split brain: the two DLMAP hosts no longer hear each other's VRRP but both still reach the
  DMPAs and the database.
- The database primary killed and restarted: registrations wait for it, traffic does not.

The first two end with the old active fenced: it sends no accepted PBA after the new active's
claim, and it stops (exit status 3) at its first write. Each variant prints its figures (the UDP
gap per MS, fault -> first PBA answered, fault -> first MS packet delivered, the generator's)
and asserts only generous bounds that catch a failover that did not happen."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from netlmm_lab.ha import DB_IF, DB_LINK, HALab
from netlmm_lab.poll import TimedOut, wait_until
from netlmm_lab.topology import BRIDGE, CN_ADDRESS, DLMAP_ADDRESS, TRANSPORT_IF, UPLINK_IF
from tests.netns import ha_helpers as h

pytestmark = pytest.mark.root

EXIT_FENCED = 3
LOAD_SECONDS = 10.0


@pytest.fixture
def lab(root: None, postgres_binaries: None) -> Iterator[HALab]:
    with h.ha_lab() as built:
        assert isinstance(built, HALab)
        yield built


def _wait_fenced(p: h.Pair, timeout: float) -> None:
    old = p.domain.processes["dlmap"]
    try:
        wait_until(lambda: old.poll() is not None, timeout, "lm's DLMAP fenced and stopped")
    except TimedOut:
        raise AssertionError(f"lm still runs:\n{p.domain.tail('dlmap', 40)}") from None
    assert old.returncode == EXIT_FENCED, p.domain.tail("dlmap")


def _finish(
    p: h.Pair,
    traffic: h.Traffic,
    load: Any,
    name: str,
    began: float,
    *,
    answering: str,
    takeover: bool = True,
) -> tuple[dict[str, Any], list[tuple[str, str, str, float]]]:
    generated = h.load_result(p, load, LOAD_SECONDS + 30)
    result = h.stop_traffic(traffic)
    records = h.stop_capture(p)
    pbas = h.accepted_pbas(records)
    shown = h.figures(p, result, pbas, began, generated, answering)
    shown["ms_handover"] = h.handover_timeline(records, began)
    lm_mac = h.mac_of(p, "lm")
    if takeover:
        begun, claimed = h.claimed_at(p), h.claim_locked_at(p)
        late = [r for r in records if r.time > claimed]
        # PBUs that reached the old active after the claim had the lock: the writes they need
        # begin after it, so no accepted PBA of the old active may answer one of them
        after = {(r.src, r.sequence) for r in late if r.kind == "pbu" and r.dst_mac == lm_mac}
        answered = [
            (r.nai, r.hoa, round((r.time - claimed) * 1000, 3))
            for r in late
            if r.kind == "pba"
            and r.src_mac == lm_mac
            and r.status == 0
            and (r.dst, r.sequence) in after
        ]
        shown["fenced"] = {
            "claim_lock_wait_ms": round((claimed - begun) * 1000, 3),
            "pbus_to_it_after_claim": len(after),
            "pbas_from_it_after_claim": sum(r.kind == "pba" and r.src_mac == lm_mac for r in late),
            "accepted_for_pbus_after_claim": answered,
            "pbus_to_it_after_its_last_pba": _unanswered(records, lm_mac),
            "exit_status": p.domain.processes["dlmap"].returncode,
            "log": [line for line in p.domain.tail("dlmap", 60).splitlines() if "fenced" in line],
        }
        shown["fault_to_claim_s"] = round(claimed - began, 3)
    print(f"ha-failover {name}", json.dumps(shown))
    if takeover:
        assert answered == [], "the fenced old active accepted a registration"
    h.check_all(p, result, pbas, generated, shown)
    return shown, pbas


def test_the_active_namespace_cut_off(lab: HALab) -> None:
    """lm's every link goes down at once. The generator keeps 16 PBUs in flight (40 MSs), so
    lm is most likely cut in the middle of a write: its transaction then stays open on the
    database with the lock every claim needs, until the server ends it (reported: how many of
    lm's transactions were open just after the cut)."""
    with h.pair(lab) as p:
        traffic = h.start_traffic(p)
        load = h.start_load(p, LOAD_SECONDS, window=16, nais=40)
        time.sleep(1.5)
        began = time.time()
        for dev in (DB_IF, TRANSPORT_IF, UPLINK_IF):
            lab.link("lm", "set", dev, "down")
        orphaned = h.open_writes(p, DB_LINK["lm"][0])
        lab.handover(2, "ms")
        h.wait_active(p, "dlmap_b")
        wait_until(
            lambda: h.binding_dmpa(p, "dlmap_b", "ms@example.org") == h.DMPAS[1],
            20.0,
            "ms registered at DMPA 2 through lb",
        )
        wait_until(lambda: lab.ping_ok("ms", str(CN_ADDRESS)), 20.0, "ms reaching the CN")
        # lm comes back: its next write meets the new epoch, and it stops
        for dev in (TRANSPORT_IF, UPLINK_IF, DB_IF):
            lab.link("lm", "set", dev, "up")
        _wait_fenced(p, 60.0)
        assert lab.vip_holder() == "lb"
        print("ha-failover namespace-cut lm's sessions, open transactions after the cut:", orphaned)
        _finish(p, traffic, load, "namespace-cut", began, answering="lb")


def test_a_split_brain_fences_the_old_active(lab: HALab) -> None:
    """lm and lb stop hearing each other's VRRP: both hold the DLMAP's address, lb claims the
    identity. The generator's DMPAs keep lm's link-layer address for the DLMAP's (a DMPA
    whose neighbour entry still points at the old active), so lm keeps receiving PBUs after
    the claim: it must not answer any with an address, and stops at its first write."""
    with h.pair(lab) as p:
        traffic = h.start_traffic(p)
        load = h.start_load(p, LOAD_SECONDS)
        time.sleep(1.5)
        lm_mac = h.mac_of(p, "lm")
        pin = ["ip", "-6", "neigh", "replace", str(DLMAP_ADDRESS), "lladdr", lm_mac]
        lab.exec("tr", [*pin, "dev", BRIDGE, "nud", "permanent"])
        began = time.time()
        rules = (
            "table inet netlmm_sb {\n"
            "  chain i { type filter hook input priority 0; meta l4proto 112 drop; }\n"
            "  chain o { type filter hook output priority 0; meta l4proto 112 drop; }\n"
            "}\n"
        )
        lab.exec("lm", ["nft", "-f", "-"], input=rules)  # lm and lb stop hearing each other
        h.wait_active(p, "dlmap_b")
        _wait_fenced(p, 30.0)
        wait_until(lambda: lab.vip_holder() == "lb", 30.0, "lm's keepalived giving up the VIP")
        lab.exec("tr", ["ip", "-6", "neigh", "del", str(DLMAP_ADDRESS), "dev", BRIDGE])
        lab.handover(2, "ms")
        wait_until(
            lambda: h.binding_dmpa(p, "dlmap_b", "ms@example.org") == h.DMPAS[1],
            20.0,
            "ms registered at DMPA 2 through lb",
        )
        wait_until(lambda: lab.ping_ok("ms", str(CN_ADDRESS)), 20.0, "ms reaching the CN")
        lab.exec("lm", ["nft", "delete", "table", "inet", "netlmm_sb"])
        shown, _ = _finish(p, traffic, load, "split-brain", began, answering="lb")
        # the check was not idle: PBUs reached lm that it never answered (fenced at their write)
        assert shown["fenced"]["pbus_to_it_after_its_last_pba"] > 0, shown


def test_the_database_killed_holds_registrations_not_traffic(lab: HALab) -> None:
    """The database primary is SIGKILLed and started again (crash recovery) under traffic: the
    active keeps forwarding for the bindings it has (the MSs' UDP, TCP and pings), holds the
    PBAs of the MS handing over meanwhile (ms2) and the generator's until their bindings are
    written, and keeps its epoch."""
    with h.pair(lab) as p:
        epoch = p.domain.ha("dlmap")["epoch"]
        traffic = h.start_traffic(p)
        load = h.start_load(p, LOAD_SECONDS)
        time.sleep(1.5)
        began = time.time()
        assert p.domain.db is not None
        p.domain.db.kill()
        lab.handover(2, "ms2")  # ms2's PBA needs a write
        time.sleep(3.0)
        assert not _registered_at_dmpa2(p)  # its PBA waits for the write
        assert lab.ping_ok("ms", str(CN_ADDRESS))  # the others' traffic goes on
        restarted = time.time()
        p.domain.db.restart()
        back = time.time()
        wait_until(lambda: _registered_at_dmpa2(p), 30.0, "ms2 at DMPA 2 with the database back")
        assert p.domain.ha("dlmap")["epoch"] == epoch and p.domain.active() == "dlmap"
        shown, pbas = _finish(
            p, traffic, load, "database-killed", began, answering="lm", takeover=False
        )
        moved = [t for n, _, _, t in pbas if n == "ms2@example.org" and t > began]
        after = [t for _, _, _, t in pbas if t >= restarted]
        print(
            "ha-failover database-killed restart",
            json.dumps(
                {
                    "database_down_s": round(restarted - began, 3),
                    "restart_command_s": round(back - restarted, 3),
                    "restart_to_first_pba_s": round(min(after) - restarted, 3) if after else None,
                    "restart_to_ms2_pba_s": round(min(moved) - restarted, 3) if moved else None,
                }
            ),
        )
        assert moved and min(moved) >= restarted, shown  # no PBA before its write
        # the generator's PBAs too: none accepted while the database was down
        lm_mac = h.mac_of(p, "lm")
        held = [t for n, _, m, t in pbas if m == lm_mac and began + 0.5 < t < restarted]
        assert held == [], f"{len(held)} PBAs accepted with the database down"


def _unanswered(records: list[h.Captured], mac: str) -> int:
    """PBUs sent to ``mac`` after the last PBA it sent."""
    last = max((r.time for r in records if r.kind == "pba" and r.src_mac == mac), default=0.0)
    return sum(r.kind == "pbu" and r.dst_mac == mac and r.time > last for r in records)


def _registered_at_dmpa2(p: h.Pair) -> bool:
    visitor = p.domain.visitor("dmpa2", "ms2@example.org")
    return visitor is not None and visitor.get("state") == "registered"
