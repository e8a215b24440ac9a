"""The active/standby DLMAP pair (store = postgresql, ha = pair, keepalived) fails over under
real traffic without losing an address: the CI variant, SIGKILL of the active DLMAP process.
The namespace-loss, split-brain and database variants run with ``make ha`` (tests/ha/).

Ten real MSs (each its own namespace: a DHCP lease, a ping every 10 ms, a TCP session and a
numbered UDP flow to the CN) are registered through lm, and a generator of simulated MSs
registers, refreshes and hands over between two simulated DMPAs; lm's DLMAP is killed;
keepalived moves the DLMAP's address and the HoA network's next hop to lb, whose DLMAP claims
the identity and answers; one real MS hands over meanwhile. The figures are printed (the UDP
gap per MS, kill -> lb active, kill -> first PBA answered, kill -> first MS packet delivered,
the generator's counts); the test asserts only a generous bound that catches a failover that
did not happen."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from netlmm_lab.ha import HALab
from netlmm_lab.poll import wait_until
from netlmm_lab.topology import CN_ADDRESS
from tests.netns import ha_helpers as h

pytestmark = pytest.mark.root


@pytest.fixture
def lab(root: None, postgres_binaries: None) -> Iterator[HALab]:
    with h.ha_lab() as built:
        assert isinstance(built, HALab)
        yield built


def test_sigkill_of_the_active_dlmap_loses_no_address(lab: HALab) -> None:
    with h.pair(lab) as p:
        assert p.domain.active() == "dlmap"
        assert p.domain.ha("dlmap_b")["role"] == "standby"
        epoch = p.domain.ha("dlmap")["epoch"]
        answered = h.heartbeats_answered(p, "dmpa1")
        traffic = h.start_traffic(p)
        try:
            load = h.start_load(p, 8.0)
            time.sleep(1.5)  # the flows and the generator run before the kill
            killed = time.monotonic()
            killed_wall = time.time()
            p.domain.kill("dlmap")
            lab.handover(2, "ms")  # a handover during the failover: DMPA 2's PBU meets lb
            to_active = h.wait_active(p, "dlmap_b", since=killed)
            wait_until(
                lambda: h.binding_dmpa(p, "dlmap_b", "ms@example.org") == h.DMPAS[1],
                20.0,
                "ms registered at DMPA 2 through lb",
            )
            wait_until(lambda: lab.ping_ok("ms", str(CN_ADDRESS)), 20.0, "ms reaching the CN")
            wait_until(
                lambda: h.heartbeats_answered(p, "dmpa1") > answered + 2,
                15.0,
                "DMPA 1's heartbeats answered by the new active",
            )
            generated = h.load_result(p, load, 30.0)
            time.sleep(
                max(0.0, 2.0 - (time.monotonic() - killed - to_active))
            )  # 2 s past lb active
        finally:
            result = h.stop_traffic(traffic)
        records = h.stop_capture(p)
        pbas = h.accepted_pbas(records)
        shown = h.figures(p, result, pbas, killed_wall, generated, "lb")
        shown["ms_handover"] = h.handover_timeline(records, killed_wall)
        shown["kill_to_active_s"] = round(to_active, 3)
        claimed = h.claim_locked_at(p)
        shown["kill_to_claim_s"] = round(claimed - killed_wall, 3)
        shown["claim_lock_wait_ms"] = round((claimed - h.claimed_at(p)) * 1000, 3)
        after = [t for nai, _, _, t in pbas if t >= killed_wall and nai == "ms@example.org"]
        shown["kill_to_handover_pba_s"] = round(min(after) - killed_wall, 3) if after else None
        print("ha-failover sigkill", json.dumps(shown))
        # the failover happened, and the new active holds the next epoch
        assert p.domain.ha("dlmap_b")["epoch"] == epoch + 1
        assert shown["kill_to_handover_pba_s"] is not None, shown  # the handover's PBA, from lb
        assert shown["fault_to_first_pba_s"] is not None, shown
        h.check_all(p, result, pbas, generated, shown)
        assert time.monotonic() - killed < 120
