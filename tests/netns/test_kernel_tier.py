"""The kernel tier end to end (docs/kernel-tier.md): real ``netlmm run`` processes in a lab,
``[node] datapath`` set, real hosts; what the kernel forwarded is read from the nodes'
``kernel`` counters."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest

from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import capture_open, ping, tcp_transfer
from netlmm_lab.topology import CN_ADDRESS, TRANSPORT_IF, Lab
from tests.netns.children import run_child
from tests.oracle.tshark import TCP_CHECKSUM_FIELDS, fields, tcp_checksum_valid

pytestmark = pytest.mark.root

GATEWAY = "192.0.2.1"
#: The lab's tunnel MTU (the Domain's default): the largest inner IPv4 packet.
TUNNEL_MTU = 1500


@pytest.fixture
def lab(root: None) -> Iterator[Lab]:
    with Lab(mobiles=1) as built:
        yield built


def start(
    lab: Lab, datapath: str, roles: tuple[str, ...] = ("dlmap", "dmpa1", "dmpa2"), **options: object
) -> Domain:
    profile = MobileProfile("ms@example.org", lab.ms_mac("ms"), "dhcp", None)
    domain = Domain(lab, [profile], datapath=datapath, **options)  # type: ignore[arg-type]
    domain.start(roles)
    return domain


NFT_COUNT = """table inet nlkt {
    chain pre {
        type filter hook prerouting priority 0;
        iifname "nllmtun" ip saddr 192.0.2.0/24 counter
    }
}
"""


def test_kernel_tier_carries_a_bound_ms(lab: Lab) -> None:
    """Through the kernel tier both ways; at the DLMAP the decapsulated packets enter the stack
    on the TUN, as the Cython tier's do: strict reverse-path filtering passes them and a
    netfilter rule on the TUN's input sees them."""
    lab.sysctl("lm", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1")
    rules = lab.workdir / "count.nft"
    rules.write_text(NFT_COUNT)
    lab.exec("lm", ["nft", "-f", str(rules)])
    domain = start(lab, "kernel")
    DhcpClient(lab).once(tries=10)
    assert ping(lab, "ms", str(CN_ADDRESS), count=3).ok
    transfer = tcp_transfer(lab, nbytes=20_000_000, seconds=10.0)
    assert transfer.bytes_acknowledged == 20_000_000
    counted = json.loads(lab.exec("lm", ["nft", "-j", "list", "table", "inet", "nlkt"]).stdout)
    octets = [
        e["counter"]["bytes"]
        for item in counted["nftables"]
        for e in item.get("rule", {}).get("expr", [])
        if "counter" in e
    ]
    assert octets and octets[0] >= 20_000_000, counted  # the TCP data came in on the TUN
    for role in ("dlmap", "dmpa1"):
        counters = domain.ask(role, "counters")
        assert counters["datapath"] == {"tier.kernel": 1, "tier.cython": 0}
        kernel = counters["kernel"]
        assert kernel["uplink.forwarded"] > 0 and kernel["downlink.forwarded"] > 0, kernel
        # the TCP transfer's bytes went through the kernel, not the user-space fastpath
        assert kernel["uplink.forwarded.bytes"] > 20_000_000, kernel
        assert counters["fastpath"]["uplink.bytes"] < 1_000_000, counters["fastpath"]


def _filters(lab: Lab, ns: str, ifname: str) -> str:
    return lab.exec(ns, ["tc", "filter", "show", "dev", ifname, "ingress"]).stdout


def _qdiscs(lab: Lab, ns: str, ifname: str) -> str:
    return lab.exec(ns, ["tc", "qdisc", "show", "dev", ifname]).stdout


def test_stopping_removes_every_hook_and_a_crash_is_swept(lab: Lab) -> None:
    domain = start(lab, "kernel", roles=("dlmap", "dmpa1"))
    assert "dmpa_access" in _filters(lab, "m1", "acc0")
    assert "dmpa_transport" in _filters(lab, "m1", "tr0")
    assert "dlmap_ingress" in _filters(lab, "lm", "tr0")
    assert "dlmap_ingress" in _filters(lab, "lm", "up0")
    domain.stop_one("dmpa1")  # SIGTERM: the node removes what it made
    assert _filters(lab, "m1", "acc0") == _filters(lab, "m1", "tr0") == ""
    assert "clsact" not in _qdiscs(lab, "m1", "acc0") + _qdiscs(lab, "m1", "tr0")
    domain.stop_one("dlmap", signal.SIGKILL)  # a crash leaves the hooks ...
    assert "dlmap_ingress" in _filters(lab, "lm", "up0")
    domain.start(("dlmap",))  # ... and the next start sweeps them before attaching its own
    domain.stop_one("dlmap")
    assert _filters(lab, "lm", "tr0") == _filters(lab, "lm", "up0") == ""
    assert "clsact" not in _qdiscs(lab, "lm", "tr0") + _qdiscs(lab, "lm", "up0")


def test_a_failing_probe_falls_back_or_refuses(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented knob: NETLMM_BPF_OBJECT naming a file that is not there."""
    monkeypatch.setenv("NETLMM_BPF_OBJECT", str(lab.workdir / "missing.bpf.o"))
    domain = start(lab, "auto", roles=("dlmap",))
    counters = domain.ask("dlmap", "counters")
    assert counters["datapath"] == {"tier.kernel": 0, "tier.cython": 1}
    assert "kernel" not in counters
    log = domain.logs["dlmap"].read_text()
    fallback = [line for line in log.splitlines() if "datapath tier=cython" in line]
    assert len(fallback) == 1, log
    assert "kernel tier unavailable: cannot open the BPF object" in fallback[0]
    assert "datapath=cython" in log  # the start line says which tier runs
    assert _filters(lab, "lm", "up0") == ""
    domain.stop_one("dlmap")
    refused = Domain(lab, domain.profiles, datapath="kernel")
    refused.start_one("dlmap")
    process = refused.processes["dlmap"]
    assert process.wait(30) == 2  # a start failure: exit 2, one start_failed line
    lines = refused.logs["dlmap"].read_text().splitlines()
    cannot = [line for line in lines if "start_failed" in line]
    assert len(cannot) == 1, lines
    assert "key=node.datapath" in cannot[0]
    assert "the kernel tier cannot run: cannot open" in cannot[0]
    refused.stop_one("dlmap")


def test_with_offloads_off_every_tunnel_packet_fits_and_checks(lab: Lab, tshark_path: str) -> None:
    """The kernel tier keeps TCP super-packets whole (SKB_GSO_IPXIP6); with the transport's
    transmit offloads off the kernel cuts them: every IPv4-in-IPv6 packet on the wire within
    the tunnel MTU, every inner IPv4 and TCP checksum valid (tshark), both directions."""
    domain = start(lab, "kernel", roles=("dlmap", "dmpa1"))
    hoa = str(DhcpClient(lab).once(tries=10).address)
    for ns in ("lm", "m1"):
        on = json.loads(run_child(lab.ns(ns), "offloads", TRANSPORT_IF))
        assert not [f for f in on if "segmentation" in f or f.startswith("tx-checksum")], on
    pcap, errors = lab.workdir / "tunnel.pcap", lab.workdir / "dumpcap.err"
    with errors.open("w") as err:
        dumpcap = lab.popen(
            "lm", ["dumpcap", "-q", "-i", TRANSPORT_IF, "-w", str(pcap)], stderr=err.fileno()
        )
    wait_until(lambda: capture_open(errors), 10.0, "the capture open")
    up = tcp_transfer(lab, nbytes=5_000_000, seconds=10.0)
    down = tcp_transfer(
        lab, client_ns="cn", server_ns="ms", server=hoa, nbytes=5_000_000, seconds=10.0
    )
    lab.stop(dumpcap)
    assert up.bytes_acknowledged == down.bytes_acknowledged == 5_000_000
    names = ["ipv6.plen", "ip.len", "ip.checksum.status", *TCP_CHECKSUM_FIELDS, "tcp.len"]
    checks = {"ip.check_checksum": "TRUE", "tcp.check_checksum": "TRUE"}
    rows = fields(tshark_path, pcap, names, "ipv6.nxt == 4 && tcp", checks)
    carried = sum(int(row["tcp.len"]) for row in rows)
    # both transfers crossed this link in the tunnel (a busy machine's capture may miss some)
    assert carried >= 8_000_000, carried
    too_big = [row for row in rows if int(row["ip.len"]) > TUNNEL_MTU]
    assert not too_big, too_big[:3]
    assert all(int(row["ipv6.plen"]) == int(row["ip.len"]) for row in rows)
    # The transport's software checksum writes 0xffff for a sum of 0 (tcp_checksum_valid).
    bad = [row for row in rows if row["ip.checksum.status"] != "1" or not tcp_checksum_valid(row)]
    assert not bad, (len(bad), bad[:3])
    kernel = domain.ask("dmpa1", "counters")["kernel"]
    assert (
        kernel["uplink.forwarded.bytes"] > 5_000_000
        and kernel["downlink.forwarded.bytes"] > 5_000_000
    )
