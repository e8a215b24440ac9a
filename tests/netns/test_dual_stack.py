"""Issue 18's proof: a real Linux MS (accept_ra, SLAAC with duplicate-address detection, udhcpc,
no agent) gets IPv4 by DHCP and IPv6 by SLAAC through the appliance, holds a TCP session over
each to a dual-stack CN, moves to the other DMPA and keeps both addresses and both sessions.

The IPv6 session is expected to stall while the MS repeats duplicate-address detection on the
new link (its address is tentative again: 1 s here with one probe): that stall is measured and
printed, not failed on. Run in each data-path tier that carries IPv6: the kernel tier
(IPv6-in-IPv6 in the TC programs, the compiled twin beside it) and the Cython tier alone, in
its reference twin (the compiled twin's IPv6 is compared to the kernel's in
test_kernel_ipv6.py).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from netlmm_lab import dualstack, servers
from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import TcpSession, ping
from netlmm_lab.topology import CN_ADDRESS, DMPA_ADDRESSES, Lab
from tests.conftest import require

pytestmark = pytest.mark.root

NAI = "dual@example.org"
V6_PORT_OFFSET = 1


def _binding(domain: Domain) -> dict[str, Any]:
    binding = domain.binding(NAI)
    assert binding is not None
    return binding


@pytest.mark.parametrize(
    ("fastpath", "datapath"), [("compiled", "kernel"), ("reference", "cython")]
)
def test_a_dual_stack_ms_keeps_both_addresses_and_sessions_across_a_handover(
    root: None, fastpath: str, datapath: str
) -> None:
    require(servers.binary("udhcpc") is not None, "udhcpc is not installed (make test)")
    report: dict[str, Any] = {"fastpath": fastpath, "datapath": datapath}
    with Lab() as lab:
        dualstack.enable(lab)
        profile = MobileProfile(NAI, lab.ms_mac(), "dhcp", ipv6=True)
        domain = Domain(
            lab,
            [profile],
            fastpath=fastpath,
            datapath=datapath,
            ipv6_pool=str(dualstack.IPV6_POOL),
        )
        try:
            domain.start()
            client = DhcpClient(lab)
            client.start(tries=10)
            lease = client.wait_lease(timeout=30.0)
            wait_until(lambda: domain.binding(NAI) is not None, 10.0, "the DLMAP's binding")
            binding = _binding(domain)
            assert binding["hoa"] == str(lease.address)
            assert binding["prefix"] is not None and binding["dmpa"] == str(DMPA_ADDRESSES[1])
            slaac = dualstack.wait_slaac(lab, timeout=20.0)
            # The RA came from the pseudo-MAC's link-local address, the one every DMPA uses.
            assert str(slaac.router) == "fe80::5eff:fe00:1" or slaac.router.is_link_local
            assert slaac.address in dualstack.IPV6_POOL
            assert str(slaac.address).startswith(binding["prefix"].split("/")[0].rstrip(":"))
            report["ipv4"] = str(lease.address)
            report["ipv6"] = str(slaac.address)
            report["router"] = str(slaac.router)
            report["slaac_s"] = slaac.seconds
            for dst in (str(CN_ADDRESS), str(dualstack.CN6)):
                result = ping(lab, "ms", dst, count=3)
                assert result.ok, f"ping {dst}: {result.loss_pct}% loss"
            v4 = TcpSession(lab, interval=0.02, reply_timeout=15.0)
            v6 = TcpSession(
                lab,
                server=str(dualstack.CN6),
                port=v4.port + V6_PORT_OFFSET,
                interval=0.02,
                reply_timeout=15.0,
            )
            v4.start()
            v6.start()
            time.sleep(0.5)
            dad: dict[str, float] = {}
            watch = threading.Thread(  # the MS's DAD on the new link, polled from the move on
                target=lambda: dad.update(s=dualstack.tentative_seconds(lab, slaac.address, 15.0)),
                daemon=True,
            )
            moved = lab.handover(2)
            watch.start()
            domain.associated("dmpa2", lab.ms_mac())
            wait_until(
                lambda: (domain.binding(NAI) or {}).get("dmpa") == str(DMPA_ADDRESSES[2]),
                15.0,
                "the binding to move to DMPA 2",
                interval=0.02,
            )
            watch.join(20.0)
            report["dad_after_move_s"] = dad.get("s")
            time.sleep(1.5)
            r4, r6 = v4.stop(), v6.stop()
            after = _binding(domain)
            report["handover"] = {
                "link_move_ms": moved.move_ms,
                "ipv4_session": r4.to_json(),
                "ipv6_session": r6.to_json(),
                "binding": after,
            }
            # Both addresses kept, both sessions survived (the IPv6 one may stall for DAD).
            assert after["hoa"] == str(lease.address) and after["prefix"] == binding["prefix"]
            assert any(info["local"] == str(slaac.address) for info in dualstack.addresses(lab)), (
                "the MS lost its SLAAC address"
            )
            assert r4.survived, r4.error
            assert r6.survived, r6.error
            for dst in (str(CN_ADDRESS), str(dualstack.CN6)):
                assert ping(lab, "ms", dst, count=3).ok, f"ping {dst} after the move"
            counters = domain.ask("dmpa2", "counters")
            assert counters["datapath"][f"tier.{datapath}"] == 1, counters["datapath"]
            if datapath == "kernel":  # both sessions' packets after the move: in the kernel
                kernel, user = counters["kernel"], counters["fastpath"]
                for way in ("uplink", "downlink"):
                    forwarded = kernel[f"{way}.forwarded"]
                    assert forwarded > 10 * user[f"{way}.forwarded"], (way, kernel, user)
            report["dmpa2_nd"] = {
                k: v for k, v in counters.get("access", {}).items() if k.startswith("nd.") and v
            }
            assert report["dmpa2_nd"].get("nd.ra_sent", 0) >= 1
        except BaseException:
            report["logs"] = {role: domain.tail(role, 40) for role in domain.logs}
            print(json.dumps(report, indent=1, default=str))
            raise
        finally:
            domain.stop()
    # The stall of the IPv6 session is reported, not failed on (issue 18).
    print(
        f"\ndual-stack handover ({fastpath}, {datapath}): IPv4 max RTT {r4.max_rtt_ms} ms, "
        f"IPv6 max RTT {r6.max_rtt_ms} ms, DAD after the move {report['dad_after_move_s']} s, "
        f"SLAAC at attach {report['slaac_s']} s"
    )
    print(json.dumps(report, default=str))
