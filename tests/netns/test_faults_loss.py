"""Signaling loss: 20 % of the MH packets dropped each way between the DLMAP
and the DMPAs (nftables ``numgen random`` in the transport bridge), and a fleet of real DHCP
hosts still all registers and is handed over, each keeping its address.

The full figure (100 MSs) is ``bench/lab/test_faults.py``; ten here keep the default suite
short. Nothing is timed: the DMPAs' own retransmission timers (RFC 6275 11.8: 1.5 s for a first
registration, 1 s otherwise, doubling to 32 s, then every 32 s while attached) do the work and
the test polls with a generous deadline.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netlmm_lab.domain import Domain
from netlmm_lab.faults import Fleet, MHLoss, loss_run
from netlmm_lab.topology import Lab

pytestmark = pytest.mark.root

FLEET = 10


@pytest.fixture
def lab(root: None) -> Iterator[Lab]:
    with Lab() as built:
        yield built


def test_twenty_percent_mh_loss_every_ms_registers_and_hands_over(lab: Lab) -> None:
    fleet = Fleet(lab, FLEET)
    fleet.create()
    domain = Domain(lab, fleet.profiles())
    domain.start()
    with MHLoss(lab, 20) as loss:
        run = loss_run(lab, domain, fleet, loss, timeout=240.0)
    assert run.addresses_kept, run
    # The old DMPA forgot every MS: a revocation lost under loss is sent again until it gets
    # through (never left for good).
    assert run.left_at_old_dmpa == 0, run
    assert len(set(fleet.leases().values())) == FLEET  # one address each
    # The loss was real in both directions, and the DMPAs made up for it by retransmitting.
    assert run.mh["to_dlmap_dropped"] > 0 and run.mh["from_dlmap_dropped"] > 0, run
    assert run.mh["to_dlmap_passed"] > 0 and run.mh["from_dlmap_passed"] > 0, run
    assert sum(run.pbu_retransmit.values()) > 0, run
    # Every PBU is either a first one per MS and DMPA or a retransmission (refreshes are an
    # hour away): nothing else was sent.
    for role in ("dmpa1", "dmpa2"):
        assert run.pbu_sent[role] == FLEET + run.pbu_retransmit[role], run
