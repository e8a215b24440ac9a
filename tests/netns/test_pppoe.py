"""PPPoE access links end to end (seed 4.1): the real appliance processes in the lab's
namespaces, the DMPAs' access links with ``auth = pppoe`` (PAP at DMPA 1, CHAP-MD5 at DMPA 2),
and two independent PPPoE peers in the MS's namespace: Debian's ``pppoe-discovery`` (ppp
package) for discovery, and a client written with scapy's codec
(``tests/netns/children/pppoe_client.py``) for the whole session. pppd cannot be the MS: this
kernel has no PPP (/dev/ppp).

The MS authenticates with PAP under its NAI, is registered (PBU/PBA) and gets the HoA of the PBA
by IPCP (with the DNS server), pings the CN through the tunnel inside its PPPoE session; moves
to DMPA 2, authenticates with CHAP and gets the same HoA there; its PADT de-registers it. A wrong
password gets neither a binding nor an address. tshark decodes every PPPoE, LCP, PAP, CHAP and
IPCP frame the DMPAs sent without a malformed-packet error (the client writes the frames it
received to a pcap: a tshark capture on the MS's interface loses frames when the handover drops
its carrier).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netlmm_lab.configs import MobileProfile
from netlmm_lab.domain import Domain
from netlmm_lab.poll import wait_until
from netlmm_lab.topology import CN_ADDRESS, MS_IF, Lab
from tests.conftest import require
from tests.netns.children import REPO, child_argv

pytestmark = pytest.mark.root

NAI = "alice@home.example"
SECRET = "alice-ppp-secret"
DNS = "198.51.100.53"
PSEUDO_MAC = "02:00:5e:00:00:01"


def _pppoe_dmpas(domain: Domain) -> None:
    """Each DMPA's access link speaks PPPoE (PAP at 1, CHAP at 2); the profile holds the MS's
    PPP secret and the DNS server IPCP hands out."""
    for index, auth in ((1, "pap"), (2, "chap")):
        path = domain.config(f"dmpa{index}")
        text = path.read_text().replace(
            f"[profile {NAI}]\n", f"[profile {NAI}]\npassword = {SECRET}\n"
        )
        text = text.replace("[dmpa]\n", f"[dmpa]\ndns = {DNS}\n")
        path.write_text(text + f"\n[access acc0]\nauth = pppoe\nppp_auth = {auth}\n")


@pytest.fixture(scope="module")
def bed() -> Iterator[dict[str, Any]]:
    require(os.geteuid() == 0, "needs root for network namespaces and raw sockets")
    require(
        shutil.which("pppoe-discovery") is not None,
        "pppoe-discovery (Debian ppp) is not installed (make test)",
    )
    require(shutil.which("tshark") is not None, "tshark is not installed (make test)")
    with Lab(mobiles=2) as lab:
        profiles = [MobileProfile(NAI, lab.ms_mac("ms"), "dlmap")]
        domain = Domain(lab, profiles)
        _pppoe_dmpas(domain)
        domain.start()
        try:
            yield {"lab": lab, "domain": domain}
        finally:
            domain.stop()


def _client(
    lab: Lab, ms: str, secret: str = SECRET, terminate: bool = False, pcap: Path | None = None
) -> dict[str, Any]:
    spec = {
        "iface": MS_IF,
        "nai": NAI,
        "secret": secret,
        "cn": str(CN_ADDRESS),
        "terminate": terminate,
        "pcap": str(pcap) if pcap is not None else "",
    }
    out = lab.exec(ms, child_argv("pppoe_client", json.dumps(spec)), cwd=REPO, timeout=60).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _decoded(pcap: Path) -> list[tuple[str, str]]:
    """(protocols, expert/malformed marks) of every frame the DMPA sent, as tshark reads them."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-Y", f"eth.src == {PSEUDO_MAC}", "-T", "fields",
         "-e", "frame.protocols", "-e", "_ws.malformed", "-e", "_ws.expert.severity"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    rows = []
    for line in out.splitlines():
        protocols, _, marks = line.partition("\t")
        rows.append((protocols, marks.strip()))
    return rows


def test_pap_ms_gets_its_hoa_by_ipcp_passes_traffic_and_keeps_it_with_chap_at_the_other_dmpa(
    bed: dict[str, Any],
) -> None:
    lab, domain = bed["lab"], bed["domain"]
    pcaps = [lab.workdir / "pppoe1.pcap", lab.workdir / "pppoe2.pcap"]
    # an independent discovery client first: Debian's pppoe-discovery sees our PADO
    found = lab.exec(
        "ms", ["pppoe-discovery", "-I", MS_IF, "-t", "3", "-a", "2"], timeout=20
    ).stdout
    assert "Access-Concentrator: m1" in found and PSEUDO_MAC in found.lower(), found

    first = _client(lab, "ms", pcap=pcaps[0])
    assert first["auth"] == "pap" and first["authenticated"], first
    assert first["ac"] == PSEUDO_MAC and first["ac_name"] == "m1"
    binding = domain.binding(NAI)
    assert binding is not None and binding["hoa"] == first["hoa"], (binding, first)
    assert first["dns"] == DNS and len(first["rtt_ms"]) == 3
    visitor = domain.visitor("dmpa1", NAI)
    assert visitor is not None and visitor["state"] == "registered"
    # the IPCP request waited for the PBA: it came after the authentication
    assert first["times"]["ipcp_request"] >= first["times"]["auth"]

    lab.handover(2, "ms")
    second = _client(lab, "ms", terminate=True, pcap=pcaps[1])
    assert second["auth"] == "chap" and second["authenticated"], second
    assert second["hoa"] == first["hoa"] and len(second["rtt_ms"]) == 3
    # the PADT ended the session: de-registered
    wait_until(lambda: domain.binding(NAI) is None, 10, "the binding removed after the PADT")
    counters = domain.ask("dmpa2", "counters")["pppoe"]
    assert counters["ppp.auth_accept"] == 1 and counters["pppoe.padt"] == 1, counters

    # every frame the DMPAs sent the MS, as it came off the wire, decoded by tshark
    frames = _decoded(pcaps[0]) + _decoded(pcaps[1])
    seen = {
        p
        for protocols, _ in frames
        for p in ("pppoed", "lcp", "pap", "chap", "ipcp")
        if p in protocols.split(":")
    }
    assert seen == {"pppoed", "lcp", "pap", "chap", "ipcp"}, frames
    assert all(marks == "" for _, marks in frames), [f for f in frames if f[1]]


def test_a_wrong_password_gets_no_binding(bed: dict[str, Any]) -> None:
    lab, domain = bed["lab"], bed["domain"]
    got = _client(lab, "ms2", secret="not-the-secret")
    assert got["auth"] == "pap" and not got["authenticated"], got
    assert domain.binding(NAI) is None
    assert domain.ask("dmpa1", "counters")["pppoe"]["ppp.auth_reject"] >= 1
