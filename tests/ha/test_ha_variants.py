"""The long failover variants (``make ha``; CI runs only tests/netns/test_ha_failover.py):
the active DLMAP's whole namespace cut off (every link down), and a split brain (the two
DLMAP hosts no longer hear each other's VRRP but both still reach the DMPAs and the
database). Both end with the old active fenced: it sends no accepted PBA after the new
active's claim, and it stops (exit status 3) at its first write. And the database primary
killed and restarted: registrations wait for it, traffic does not."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from netlmm_lab.ha import DB_IF, HALab
from netlmm_lab.poll import TimedOut, wait_until
from netlmm_lab.topology import CN_ADDRESS, TRANSPORT_IF, UPLINK_IF
from tests.netns import ha_helpers as h

pytestmark = pytest.mark.root

GENEROUS_GAP_MS = 15_000
EXIT_FENCED = 3


@pytest.fixture
def lab(root: None, postgres_binaries: None) -> Iterator[HALab]:
    with HALab(mobiles=2) as built:
        yield built


def _wait_fenced(p: h.Pair, timeout: float) -> None:
    old = p.domain.processes["dlmap"]
    try:
        wait_until(lambda: old.poll() is not None, timeout, "lm's DLMAP fenced and stopped")
    except TimedOut:
        raise AssertionError(f"lm still runs:\n{p.domain.tail('dlmap', 40)}") from None
    assert old.returncode == EXIT_FENCED, p.domain.tail("dlmap")


def _finish(
    p: h.Pair, traffic: h.Traffic, name: str, began_wall: float, *, takeover: bool = True
) -> tuple[dict[str, object], list[tuple[str, str, str, float]]]:
    udp = traffic.udp.stop()
    tcp = traffic.tcp.stop()
    for ping in traffic.pings:
        ping.stop()
    pbas = h.stop_capture(p)
    lm_mac = h.mac_of(p, "lm")
    claimed = h.claimed_at(p)
    stale = [(n, a, t) for n, a, mac, t in pbas if mac == lm_mac and t > claimed]
    after = [t for n, _, _, t in pbas if t >= began_wall and n == "ms@example.org"]
    figures = {
        "udp_gap_ms": round(udp.max_gap_ms, 1),
        "udp_lost": udp.lost,
        "first_pba_s": round(min(after) - began_wall, 3) if after else None,
        "tcp_survived": tcp.survived,
        "pbas_accepted": len(pbas),
    }
    print(f"ha-failover {name}", json.dumps(figures))
    if takeover:
        assert stale == [], "the fenced old active accepted a registration"
    assert udp.max_gap_ms < GENEROUS_GAP_MS, figures
    assert tcp.survived, figures
    assert p.all_leases() == p.leases
    h.check_one_address_per_ms(p, pbas)
    h.check_no_restart_seen(p)
    return figures, pbas


def test_the_active_namespace_cut_off(lab: HALab) -> None:
    with h.pair(lab) as p:
        traffic = h.start_traffic(p)
        time.sleep(1.0)
        began = time.time()
        for dev in (TRANSPORT_IF, UPLINK_IF, DB_IF):
            lab.link("lm", "set", dev, "down")
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
        _finish(p, traffic, "namespace-cut", began)


def test_a_split_brain_fences_the_old_active(lab: HALab) -> None:
    with h.pair(lab) as p:
        traffic = h.start_traffic(p)
        time.sleep(1.0)
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
        lab.handover(2, "ms")
        wait_until(
            lambda: h.binding_dmpa(p, "dlmap_b", "ms@example.org") == h.DMPAS[1],
            20.0,
            "ms registered at DMPA 2 through lb",
        )
        wait_until(lambda: lab.ping_ok("ms", str(CN_ADDRESS)), 20.0, "ms reaching the CN")
        lab.exec("lm", ["nft", "delete", "table", "inet", "netlmm_sb"])
        _finish(p, traffic, "split-brain", began)


def test_the_database_killed_holds_registrations_not_traffic(lab: HALab) -> None:
    """The database primary is SIGKILLed and started again (crash recovery) under traffic: the
    active keeps forwarding for the bindings it has (ms's UDP, TCP and pings), holds the PBAs
    of the MSs handing over meanwhile (ms2 and the fleet on its link) until their bindings are
    written, and keeps its epoch."""
    with h.pair(lab) as p:
        epoch = p.domain.ha("dlmap")["epoch"]
        traffic = h.start_traffic(p)
        time.sleep(1.0)
        began = time.time()
        assert p.domain.db is not None
        p.domain.db.kill()
        lab.handover(2, "ms2")  # ms2 and the fleet on its link: their PBAs need a write
        time.sleep(3.0)
        assert not _registered_at_dmpa2(p)  # its PBA waits for the write
        assert lab.ping_ok("ms", str(CN_ADDRESS))  # the others' traffic goes on
        restarted = time.time()
        p.domain.db.restart()
        wait_until(lambda: _registered_at_dmpa2(p), 30.0, "ms2 at DMPA 2 with the database back")
        assert p.domain.ha("dlmap")["epoch"] == epoch and p.domain.active() == "dlmap"
        figures, pbas = _finish(p, traffic, "database-killed", began, takeover=False)
        moved = [t for n, _, _, t in pbas if n == "ms2@example.org" and t > began]
        assert moved and min(moved) >= restarted, figures  # no PBA before its write


def _registered_at_dmpa2(p: h.Pair) -> bool:
    visitor = p.domain.visitor("dmpa2", "ms2@example.org")
    return visitor is not None and visitor.get("state") == "registered"
