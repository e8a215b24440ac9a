"""Issue 18: the ICMPv6 errors the DMPA owes a dual-stack MS (RFC 4443), seen by a real Linux
MS and decoded by tshark on its link. A ping with hop limit 1 gets Time Exceeded, a ping larger
than the tunnel MTU (1400 here) Packet Too Big with MTU 1400, both from the DMPA's router
link-local address (the pseudo-MAC's); the MS's kernel then keeps that path MTU and fragments
the next large pings itself, which get through (the MS ignores the RA's MTU option here, or it
would never send too much). The compiled fastpath punts, the slow path
answers (router/services/ipv6_slowpath.py)."""

from __future__ import annotations

import subprocess

import pytest

from netlmm_lab import dualstack, servers
from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import capture_open, ping
from netlmm_lab.topology import MS_IF, Lab
from tests.conftest import require

pytestmark = [pytest.mark.root, pytest.mark.tshark]

NAI = "dual@example.org"
TUNNEL_MTU = 1400
FIELDS = [
    "ipv6.src",
    "ipv6.dst",
    "icmpv6.type",
    "icmpv6.code",
    "icmpv6.checksum.status",
    "icmpv6.mtu",
]


def test_the_ms_hears_time_exceeded_and_packet_too_big_from_the_router_link_local(
    root: None, tshark_path: str
) -> None:
    require(servers.binary("udhcpc") is not None, "udhcpc is not installed (make test)")
    with Lab() as lab:
        dualstack.enable(lab)
        # The RA's MTU option (the tunnel's) would keep the MS from ever sending too much; it
        # ignores it here, as a host that does not take it (or one routed behind the MS) would.
        lab.sysctl("ms", f"net.ipv6.conf.{MS_IF}.accept_ra_mtu=0")
        profile = MobileProfile(NAI, lab.ms_mac(), "dhcp", ipv6=True)
        domain = Domain(
            lab,
            [profile],
            fastpath="compiled",
            ipv6_pool=str(dualstack.IPV6_POOL),
            tunnel_mtu=TUNNEL_MTU,
        )
        try:
            domain.start()
            client = DhcpClient(lab)
            client.start(tries=10)
            client.wait_lease(timeout=30.0)
            wait_until(lambda: domain.binding(NAI) is not None, 10.0, "the DLMAP's binding")
            slaac = dualstack.wait_slaac(lab, timeout=20.0)
            cn6 = str(dualstack.CN6)
            assert ping(lab, "ms", cn6, count=3).ok
            # tshark on the MS's link: the ICMPv6 errors (types 2 and 3) it receives
            errors = lab.workdir / "tshark.err"
            with errors.open("w") as err_file:
                capture = lab.popen(
                    "ms",
                    [
                        tshark_path,
                        "-n",
                        "-l",
                        "-i",
                        MS_IF,
                        "-a",
                        "duration:20",
                        "-c",
                        "2",
                        "-f",
                        "icmp6 and (ip6[40] == 2 or ip6[40] == 3)",
                        "-T",
                        "fields",
                        "-E",
                        "separator=|",
                        *[arg for f in FIELDS for arg in ("-e", f)],
                    ],
                    stdout=subprocess.PIPE,
                    stderr=err_file.fileno(),
                )
            wait_until(lambda: capture_open(errors), 10.0, "the capture open")
            late = ping(lab, "ms", cn6, count=1, ttl=1)
            big = ping(lab, "ms", cn6, count=1, size=TUNNEL_MTU, df=True)
            out, _ = capture.communicate(timeout=25.0)
            err = errors.read_text()
            # the error's own fields first, then the quoted packet's (IPv6 header, echo request)
            rows = [
                {f: v.split(",")[0] for f, v in zip(FIELDS, line.split("|"), strict=True)}
                for line in out.splitlines()
            ]
            assert len(rows) == 2, f"tshark saw {out!r} ({err[-300:]!r})"
            kinds = {row["icmpv6.type"]: row for row in rows}
            assert set(kinds) == {"2", "3"}, rows
            for row in rows:
                assert row["ipv6.src"] == str(slaac.router)  # the RA's router
                assert row["ipv6.dst"] == str(slaac.address)
                assert (row["icmpv6.code"], row["icmpv6.checksum.status"]) == ("0", "1")
            assert kinds["2"]["icmpv6.mtu"] == str(TUNNEL_MTU)
            assert not late.ok and not big.ok
            # the MS learned the path MTU: it fragments the next large pings, which pass
            assert ping(lab, "ms", cn6, count=3, size=TUNNEL_MTU).ok
        finally:
            domain.stop()
