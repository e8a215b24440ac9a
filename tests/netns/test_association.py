"""The base station's association report (``netlmm attach``) between real processes.

A Linux MS that moves loses its ARP entries with its carrier, and its first solicitation for
the gateway goes out while its link is down; it retries only after a second. Told of the
arrival, the new DMPA starts AAA at once and completes the MS's pending entry with an
unsolicited ARP reply from the gateway, so the MS's own packets register it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import UdpStream
from netlmm_lab.topology import DMPA_ADDRESSES, Lab

pytestmark = pytest.mark.root

NAI = "ms@example.org"
GATEWAY = "192.0.2.1"
PSEUDO_MAC = "02:00:5e:00:00:01"


@pytest.fixture
def lab(root: None) -> Iterator[Lab]:
    with Lab() as built:
        yield built


def attach(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "router", "attach", "--socket", socket, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def bound_at(domain: Domain, dmpa: int) -> bool:
    binding = domain.binding(NAI)
    return binding is not None and binding["dmpa"] == str(DMPA_ADDRESSES[dmpa])


def test_a_reported_arrival_is_registered_and_told_the_gateway(lab: Lab) -> None:
    domain = Domain(lab, [MobileProfile(NAI, lab.ms_mac(), "dhcp")])
    domain.start()
    lease = DhcpClient(lab).once(tries=10)
    wait_until(lambda: bound_at(domain, 1), 15.0, "MS bound at DMPA 1")
    stream = UdpStream(lab, interval=0.005, count=1000)
    stream.start()
    try:
        lab.handover(2)
        done = attach(str(domain.configs.sockets["dmpa2"]), lab.ms_mac())
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{lab.ms_mac()} on "), done.stdout
        wait_until(lambda: bound_at(domain, 2), 15.0, "MS bound at DMPA 2")
        # `netlmm attach` returns in about 0.1 s now: let the stream run across the new path
        # before it stops, so its echoes through DMPA 2 are counted (not a timed assertion)
        time.sleep(0.5)
    finally:
        udp = stream.stop()
    assert domain.binding(NAI)["hoa"] == str(lease.address)  # type: ignore[index]
    assert udp.received > 0
    access = domain.ask("dmpa2", "counters")["access"]
    assert access.get("station.associated") == 1, access
    assert access.get("arp.gateway_announced", 0) >= 1, access
    # The MS holds the gateway at the domain's pseudo-MAC (learned from DMPA 2's reply or its
    # own later solicitation: either way it is the pseudo-MAC, seed 5.3).
    neighbours = lab.exec("ms", ["ip", "neigh", "show", GATEWAY]).stdout
    assert PSEUDO_MAC in neighbours, neighbours


def test_attach_refuses_what_it_cannot_act_on(lab: Lab) -> None:
    domain = Domain(lab, [MobileProfile(NAI, lab.ms_mac(), "dhcp")])
    domain.start()
    sockets = domain.configs.sockets
    cases = [
        (sockets["dlmap"], [lab.ms_mac()], "only a DMPA has access links"),
        (sockets["dmpa2"], ["not-a-mac"], "not a MAC address"),
        (sockets["dmpa2"], [lab.ms_mac(), "--link", "wlan9"], "is not an access link"),
    ]
    for socket, args, message in cases:
        done = attach(str(socket), *args)
        assert done.returncode == 1 and message in done.stderr, (args, done.stderr)
    access = domain.ask("dmpa2", "counters")["access"]
    assert access.get("station.associated", 0) == 0, access
