"""RFC 5847 heartbeats between real processes, through the RFC 4285 guard:
signed both ways and answered, so a signed domain detects restarts too. The kill-and-restart
cases are in ``test_appliance.py`` (``test_killed_and_restarted_under_traffic_...``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netlmm_lab.configs import MobileProfile
from netlmm_lab.domain import Domain
from netlmm_lab.faults import configure
from netlmm_lab.poll import wait_until
from netlmm_lab.topology import Lab

pytestmark = pytest.mark.root


@pytest.fixture
def lab(root: None) -> Iterator[Lab]:
    with Lab() as built:
        yield built


def test_signed_heartbeats_are_answered_both_ways(lab: Lab) -> None:
    domain = Domain(lab, [MobileProfile("ms@example.org", lab.ms_mac("ms"), "dhcp")], auth=True)
    for role in ("dmpa1", "dmpa2"):
        configure(domain, role, "dmpa", heartbeat_interval=1)
    configure(domain, "dlmap", "dlmap", heartbeat_interval=1)
    domain.start()

    def answered(role: str, count: int) -> bool:
        core = domain.ask(role, "counters")["core"]
        return int(core.get("heartbeat.response.received", 0)) >= count

    for role in ("dmpa1", "dmpa2", "dlmap"):
        wait_until(lambda role=role: answered(role, 2), 15.0, f"{role}'s heartbeats answered")
    for role in ("dmpa1", "dmpa2", "dlmap"):
        counters = domain.ask(role, "counters")
        rejected = [k for k in counters["node"] if k.startswith("auth.rx.") and k != "auth.rx.ok"]
        assert not rejected, counters["node"]
        assert counters["node"].get("auth.rx.ok", 0) >= 2
        core = counters["core"]
        assert core.get("heartbeat.peer_restarted", 0) == 0, core  # nobody restarted
        assert core.get("heartbeat.peer_unreachable", 0) == 0, core
