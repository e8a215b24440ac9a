"""The real appliance (``netlmm run`` in each role, :class:`netlmm_lab.domain.Domain`) against
real third-party servers: a DHCP relay to dnsmasq and to Kea, and FreeRADIUS as the DMPAs' AAA.

Every test builds its own :class:`netlmm_lab.topology.Lab` (torn down even on failure), starts
the servers it needs with :mod:`netlmm_lab.servers` (the same code as ``netlmm lab demo --dhcp
kea|dnsmasq --aaa radius``: :meth:`Lab.popen`, ended by PID here and again by the lab's close),
and polls until deadlines. On failure the message carries the tail of each appliance log and
of the server's log (the lab's work directory is deleted on close, so they are read before).

- Relay: the DLMAP has ``dhcp = relay``, ``dhcp_servers = 198.51.100.2``; the server runs in
  ``cn`` on 198.51.100.2 and answers the relay's giaddr 192.0.2.1 (the CN routes 192.0.2.0/24
  via the DLMAP's uplink) from a range the DLMAP's own pool does not hold, so the MS's address
  proves where it came from.
- RADIUS: ``freeradius -X`` in ``lm`` on the DLMAP's transport address, port 1812; the DMPAs
  (``aaa = radius``) reach it over the IPv6 transport and ask for the MS by its MAC identity
  (``02-4E-4C-00-00-01``: no NAI is known at attach). The users file decides the case: a static
  home address (RFC 6572 PMIP6-Home-IPv4-HoA), a dynamic one (Framed-IP-Address 255.255.255.254,
  the MS asks DHCP through the tunnel) or a reject.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from netlmm_lab.configs import GATEWAY, STATIC_HOA, MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import ROLES, Domain
from netlmm_lab.errors import LabError
from netlmm_lab.poll import wait_until
from netlmm_lab.servers import (
    RADIUS_SECRET,
    SERVER_RANGE,
    Server,
    binary,
    mac_identity,
    radius_endpoint,
    radius_users,
    start_dhcp_server,
    start_freeradius,
    tail,
)
from netlmm_lab.tools import ping
from netlmm_lab.topology import (
    CN_ADDRESS,
    DMPA_ADDRESSES,
    Lab,
)
from tests.conftest import require

pytestmark = pytest.mark.root

NAI = "ms@example.org"
MAC_IDENTITY = mac_identity(Lab.ms_mac())
USERS = {
    case: radius_users(case, nai=NAI, mac=Lab.ms_mac()) for case in ("static", "dynamic", "reject")
}


def _require(*names: str) -> None:
    for name in names:
        path = binary(name) or shutil.which(name)
        require(path is not None, f"{name} is not installed (make test installs it)")


# --- failure reports ---------------------------------------------------------------------------


@contextmanager
def explained(domain: Domain, **logs: Path) -> Iterator[None]:
    """Re-raise any failure with the appliance's and the servers' log tails attached."""
    try:
        yield
    except Exception as exc:
        parts = [f"{type(exc).__name__}: {exc}"]
        for role in ROLES:
            parts.append(f"--- {role} log ---\n{domain.tail(role, 40)}")
        for name, path in logs.items():
            parts.append(f"--- {name} log ---\n{tail(path)}")
        raise AssertionError("\n".join(parts)) from exc


# --- assertions --------------------------------------------------------------------------------


def _attach_by_dhcp(lab: Lab, domain: Domain, nai: str) -> IPv4Address:
    """The MS's udhcpc gets a lease; the DLMAP then binds ``nai`` to that address at DMPA 1."""
    client = DhcpClient(lab)
    client.start(tries=10)
    try:
        lease = client.wait_lease(timeout=20.0)
        wait_until(
            lambda: (domain.binding(nai) or {}).get("hoa") == str(lease.address),
            10.0,
            f"the DLMAP's binding {nai} -> {lease.address}",
        )
        binding = domain.binding(nai)
        assert binding is not None and binding["dmpa"] == str(DMPA_ADDRESSES[1]), binding
        assert lease.router == GATEWAY, lease
        _ping_cn(lab)
        return lease.address
    finally:
        client.stop()


def _ping_cn(lab: Lab) -> None:
    # The first echo may race the DMPA's ARP answer: poll, then one clean measured run.
    lab.wait_ping("ms", str(CN_ADDRESS), timeout=10.0)
    result = ping(lab, "ms", str(CN_ADDRESS), count=3)
    assert result.ok and result.loss_pct == 0, result


def _stop_all(lab: Lab, domain: Domain, *servers: Server) -> dict[str, int | None]:
    codes = domain.stop()
    for server in servers:
        lab.stop(server.process)
    return codes


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["dnsmasq", "kea"])
def test_dhcp_relay_to_a_real_server(root: None, server: str, tmp_path: Path) -> None:
    _require(server, "udhcpc")
    with Lab() as lab:
        dhcpd = start_dhcp_server(lab, server, tmp_path / server)
        dhcpd_log = dhcpd.log
        domain = Domain(
            lab,
            [MobileProfile(NAI, lab.ms_mac(), "dhcp")],
            dhcp="relay",
            dhcp_servers=(str(CN_ADDRESS),),
        )
        with explained(domain, **{server: dhcpd_log}):
            domain.start()
            address = _attach_by_dhcp(lab, domain, NAI)
            first, last = (IPv4Address(a) for a in SERVER_RANGE)
            assert first <= address <= last, f"{address} is not from {server}'s range"
            counters = domain.ask("dlmap", "counters")["dhcp"]
            assert counters.get("learn.recorded", 0) >= 1, counters
            codes = _stop_all(lab, domain, dhcpd)
            assert codes == dict.fromkeys(ROLES, 0), codes


def test_radius_accept_with_static_hoa(root: None, tmp_path: Path) -> None:
    _require("freeradius")
    with Lab() as lab:
        radiusd = start_freeradius(lab, USERS["static"], tmp_path / "radius")
        radius_log = radiusd.log
        # The DLMAP knows the static address too (its local profiles); the DMPAs ask RADIUS.
        profile = MobileProfile(NAI, lab.ms_mac(), "static", str(STATIC_HOA))
        domain = Domain(lab, [profile], radius=(radius_endpoint(), RADIUS_SECRET))
        with explained(domain, freeradius=radius_log):
            domain.start()
            lab.exec("ms", ["ip", "addr", "add", f"{STATIC_HOA}/24", "dev", "ms0"])
            lab.exec("ms", ["ip", "route", "add", "default", "via", str(GATEWAY)])
            _ping_cn(lab)
            binding = domain.binding(NAI)
            assert binding is not None, domain.ask("dlmap", "bindings")
            assert binding["hoa"] == str(STATIC_HOA), binding
            assert binding["dmpa"] == str(DMPA_ADDRESSES[1]), binding
            visitor = domain.visitor("dmpa1", NAI)
            assert visitor is not None and visitor["state"] == "registered", visitor
            aaa = domain.ask("dmpa1", "counters")["aaa"]
            assert aaa.get("accept", 0) >= 1 and not aaa.get("reject"), aaa
            assert f'User-Name = "{MAC_IDENTITY}"' in radius_log.read_text()
            codes = _stop_all(lab, domain, radiusd)
            assert codes == dict.fromkeys(ROLES, 0), codes


def test_radius_accept_with_dynamic_assignment(root: None, tmp_path: Path) -> None:
    _require("freeradius", "udhcpc")
    with Lab() as lab:
        radiusd = start_freeradius(lab, USERS["dynamic"], tmp_path / "radius")
        radius_log = radiusd.log
        domain = Domain(lab, [], radius=(radius_endpoint(), RADIUS_SECRET))
        with explained(domain, freeradius=radius_log):
            domain.start()
            address = _attach_by_dhcp(lab, domain, NAI)
            assert address != STATIC_HOA
            aaa = domain.ask("dmpa1", "counters")["aaa"]
            assert aaa.get("accept", 0) >= 1 and not aaa.get("reject"), aaa
            codes = _stop_all(lab, domain, radiusd)
            assert codes == dict.fromkeys(ROLES, 0), codes


def test_radius_reject_keeps_the_ms_out(root: None, tmp_path: Path) -> None:
    _require("freeradius", "udhcpc")
    with Lab() as lab:
        radiusd = start_freeradius(lab, USERS["reject"], tmp_path / "radius")
        radius_log = radiusd.log
        domain = Domain(lab, [], radius=(radius_endpoint(), RADIUS_SECRET))
        with explained(domain, freeradius=radius_log):
            domain.start()
            mac = lab.ms_mac()

            def visitor() -> dict[str, Any] | None:
                rows = domain.ask("dmpa1", "visitors")
                return next((row for row in rows if row["mac"] == mac), None)

            client = DhcpClient(lab)
            began = time.monotonic()
            # udhcpc -n: three discovers a second apart, then it gives up (bounded, ~3 s).
            with pytest.raises(LabError, match="got no lease"):
                client.once(tries=3, timeout=15.0)
            assert time.monotonic() - began < 15.0
            assert client.lease() is None
            wait_until(
                lambda: (visitor() or {}).get("state") == "rejected",
                5.0,
                "DMPA 1's visitor to be rejected",
            )
            assert domain.ask("dlmap", "bindings") == []
            aaa = domain.ask("dmpa1", "counters")["aaa"]
            assert aaa.get("reject", 0) >= 1 and not aaa.get("accept"), aaa
            assert "Sent Access-Reject" in radius_log.read_text()
            codes = _stop_all(lab, domain, radiusd)
            assert codes == dict.fromkeys(ROLES, 0), codes
