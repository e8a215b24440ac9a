"""The basic appliance test with the DLMAP on ``store = postgresql`` (a real PostgreSQL 15 the
session fixture starts, reached over its unix socket): attach in the three address modes,
DHCP, a handover both ways under a TCP session, and a SIGKILL + restart of the DLMAP that
keeps every address and, the state being in the database, the RFC 5847 restart counter."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from netlmm_lab.configs import STATIC_HOA, MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.faults import configure
from netlmm_lab.poll import wait_until
from netlmm_lab.postgres import PostgresServer
from netlmm_lab.tools import TcpSession
from netlmm_lab.topology import CN_ADDRESS, Lab
from tests.netns.test_appliance import GATEWAY, nai, ping_ok, serving, static_host

pytestmark = pytest.mark.root


@pytest.fixture
def lab(root: None) -> Iterator[Lab]:
    with Lab(mobiles=3) as built:
        yield built


def test_attach_dhcp_handover_and_restart_on_postgresql(
    lab: Lab, pg_dsn: str, postgres: PostgresServer
) -> None:
    modes = {"ms": "dhcp", "ms2": "dlmap", "ms3": "static"}
    profiles = [
        MobileProfile(nai(ms), lab.ms_mac(ms), mode, str(STATIC_HOA) if mode == "static" else None)
        for ms, mode in modes.items()
    ]
    domain = Domain(lab, profiles)
    configure(domain, "dlmap", "node", store="postgresql", store_dsn=pg_dsn)
    configure(domain, "dmpa1", "dmpa", heartbeat_interval=1)
    configure(domain, "dlmap", "dlmap", heartbeat_interval=1)
    domain.start()
    assert domain.ask("dlmap", "ha")["role"] == "active"
    leases = {ms: DhcpClient(lab, ms).once(tries=10) for ms in ("ms", "ms2")}
    static_host(lab, "ms3")
    ping_ok(lab, "ms3", GATEWAY)
    bindings = {ms: serving(domain, ms, 1) for ms in modes}
    assert bindings["ms"]["hoa"] == str(leases["ms"].address)
    assert bindings["ms2"]["hoa"] == str(leases["ms2"].address)
    assert bindings["ms3"]["hoa"] == str(STATIC_HOA)
    for ms in modes:
        ping_ok(lab, ms, str(CN_ADDRESS))
    database = pg_dsn.split("?")[0].rsplit("/", 1)[-1]
    rows = postgres.psql("SELECT nai || ' ' || host(hoa) FROM netlmm_address", database)
    assert set(rows.split("\n")) - {""} == {f"{nai(ms)} {b['hoa']}" for ms, b in bindings.items()}
    session = TcpSession(lab)
    session.start()
    lab.handover(2)
    moved = serving(domain, "ms", 2)
    wait_until(lambda: domain.visitor("dmpa1", nai("ms")) is None, 10.0, "DMPA 1 revoked")
    lab.handover(1)
    back = serving(domain, "ms", 1)
    assert moved["hoa"] == back["hoa"] == str(leases["ms"].address)
    assert session.stop().survived
    counter_before = domain.ask("dmpa1", "counters")["core"].get("heartbeat.response.received", 0)
    domain.stop_one("dlmap", signal.SIGKILL)
    domain.start_one("dlmap")
    domain.wait_ready("dlmap")
    for ms in modes:
        assert serving(domain, ms, 1)["hoa"] == bindings[ms]["hoa"]
        wait_until(lambda ms=ms: lab.ping_ok(ms, str(CN_ADDRESS)), 15.0, f"{ms} to the CN")
    wait_until(
        lambda: (
            domain.ask("dmpa1", "counters")["core"].get("heartbeat.response.received", 0)
            > counter_before + 2
        ),
        15.0,
        "heartbeats answered after the restart",
    )
    core = domain.ask("dmpa1", "counters")["core"]
    assert core.get("heartbeat.peer_restarted", 0) == 0, core  # the state was not lost
