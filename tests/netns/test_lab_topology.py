"""The lab topology and its measurement tools, without the appliance.

Builds the whole domain in namespaces and checks what the appliance will rely on: the IPv4 side
(CN <-> DLMAP uplink), the IPv6 transport (DLMAP <-> DMPAs, MTU 1600 without fragmentation),
the MS's frames reaching DMPA 1's ``acc0`` and, after a handover, DMPA 2's; the MS's DHCP client
with the lab's script (against busybox udhcpd standing in for the appliance); the UDP stream, TCP
transfer and TCP session tools between two directly joined namespaces; and a teardown that
leaves nothing behind, also when the body raises, on SIGTERM, and after a crash (sweep).
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlmm_lab import netns
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.errors import LabError
from netlmm_lab.netns import running
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import (
    PingResult,
    Sniffer,
    TcpSession,
    UdpStream,
    parse_ping,
    ping,
    summarize_stream,
    tcp_transfer,
)
from netlmm_lab.topology import (
    ACCESS_IF,
    CN_ADDRESS,
    DLMAP_ADDRESS,
    DLMAP_UPLINK_ADDRESS,
    DMPA_ADDRESSES,
    MS_IF,
    NETNS_ETC,
    NETNS_RUN,
    Lab,
)
from tests.conftest import require
from tests.netns.children import REPO, child_argv

ARP = 0x0806


def _leftovers(prefix: str) -> list[str]:
    found = [p.name for p in NETNS_RUN.glob(f"{prefix}-*")] if NETNS_RUN.exists() else []
    found += [p.name for p in NETNS_ETC.glob(f"{prefix}-*")] if NETNS_ETC.exists() else []
    return found


def _tools(*names: str) -> None:
    for name in names:
        require(
            subprocess.run(["which", name], capture_output=True).returncode == 0,
            f"{name} is not installed",
        )


@pytest.fixture
def lab(root: None) -> Iterator[Lab]:
    _tools("ip", "ping", "arping", "udhcpc", "sysctl")
    with Lab() as built:
        yield built
    assert _leftovers(built.prefix) == []


# --- pure parts (no root) --------------------------------------------------------------------


def test_parse_ping_summary() -> None:
    text = (
        "--- 198.51.100.1 ping statistics ---\n"
        "3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms\n"
        "rtt min/avg/max/mdev = 0.041/0.052/0.063/0.011 ms\n"
    )
    assert parse_ping(text) == PingResult(3, 2, 33.3333, 0.041, 0.052, 0.063, 0)
    lost = parse_ping("2 packets transmitted, 0 received, 100% packet loss, time 1001ms\n", 1)
    assert (lost.received, lost.loss_pct, lost.rtt_avg_ms, lost.ok) == (0, 100.0, None, False)


def test_summarize_stream_gap_loss_reorder_histogram() -> None:
    # 10 probes every 5 ms; 3, 4, 5 lost (a 20 ms gap between echoes 2 and 6); 8 before 7.
    echoes = [(s, s * 0.005, s * 0.005 + 0.001) for s in (0, 1, 2, 6)]
    echoes += [(8, 0.040, 0.041), (7, 0.035, 0.042), (9, 0.045, 0.046), (9, 0.045, 0.047)]
    result = summarize_stream(0.005, 10, 0, echoes, 0.05)
    assert (result.sent, result.received, result.lost) == (10, 7, 3)
    assert (result.duplicates, result.reordered, result.longest_loss_run) == (1, 1, 3)
    assert result.max_gap_ms == pytest.approx(20.0)
    assert result.interruption_ms == pytest.approx(15.0)
    assert sum(result.histogram_10ms) == 7
    assert result.histogram_10ms[1] == 1 and result.histogram_10ms[2] == 0


# --- the topology ----------------------------------------------------------------------------


@pytest.mark.root
def test_ipv4_side_and_transport(lab: Lab) -> None:
    assert ping(lab, "cn", str(DLMAP_UPLINK_ADDRESS)).received == 3
    route = lab.exec("cn", ["ip", "-4", "route", "show", "192.0.2.0/24"]).stdout
    assert "via 198.51.100.1" in route
    for index in (1, 2):
        assert ping(lab, "lm", str(DMPA_ADDRESSES[index])).received == 3
        assert ping(lab, f"m{index}", str(DLMAP_ADDRESS)).received == 3
    # A full 1600-byte IPv6 packet (1552 + 8 ICMPv6 + 40) passes unfragmented; one more does not.
    assert ping(lab, "lm", str(DMPA_ADDRESSES[1]), count=1, size=1552, df=True).received == 1
    too_big = ping(lab, "lm", str(DMPA_ADDRESSES[1]), count=1, size=1553, df=True)
    assert too_big.received == 0
    # Addresses are usable (not tentative) and neighbours resolved.
    assert "tentative" not in lab.exec("m1", ["ip", "-6", "addr"]).stdout
    neigh = lab.exec("lm", ["ip", "-6", "neigh", "show", "dev", "tr0"]).stdout
    assert str(DMPA_ADDRESSES[1]) in neigh


@pytest.mark.root
def test_access_links_layer2_only(lab: Lab) -> None:
    for index in (1, 2):
        out = lab.exec(f"m{index}", ["ip", "-o", "addr", "show", "dev", ACCESS_IF]).stdout
        assert out.strip() == ""
        assert lab.carrier(f"m{index}", ACCESS_IF)
    link = lab.exec("ms", ["ip", "-o", "link", "show", "dev", MS_IF]).stdout
    assert Lab.ms_mac() in link and "mtu 1500" in link
    assert lab.exec("ms", ["ip", "-o", "addr", "show", "dev", MS_IF]).stdout.strip() == ""
    assert lab.resolv_conf().exists()
    # ip netns exec shows the MS its own resolv.conf, never the host's.
    shown = lab.exec("ms", ["cat", "/etc/resolv.conf"]).stdout
    assert shown == lab.resolv_conf().read_text()


def _arp_until_seen(lab: Lab, dmpa: int) -> int:
    """arping from the MS until DMPA ``dmpa``'s acc0 sees it (bounded); frames seen."""
    sniffer = Sniffer(lab, f"m{dmpa}", ACCESS_IF, src_mac=Lab.ms_mac(), ethertype=ARP, seconds=8)
    sniffer.start()
    proc = lab.popen("ms", ["arping", "-D", "-c", "8", "-w", "8", "-I", MS_IF, "192.0.2.1"])
    try:  # the sniffer exits on the first match, or after its 8 s
        wait_until(sniffer.done, 12, "the sniffer on acc0 to finish")
    finally:
        lab.stop(proc)
    return sniffer.result().matched


@pytest.mark.root
def test_ms_frames_follow_the_handover(lab: Lab) -> None:
    assert lab.attached() == 1
    assert _arp_until_seen(lab, 1) >= 1
    result = lab.handover(to=2)
    assert (result.from_bs, result.to_bs, lab.attached()) == (1, 2, 2)
    assert 0 < result.move_ms <= result.carrier_ms < 10_000
    assert _arp_until_seen(lab, 2) >= 1
    # And nothing more on DMPA 1's access link while the MS talks on base station 2.
    quiet = Sniffer(lab, "m1", ACCESS_IF, src_mac=Lab.ms_mac(), seconds=1.0).start()
    lab.exec("ms", ["arping", "-D", "-c", "2", "-w", "1", "-I", MS_IF, "192.0.2.1"], check=False)
    assert quiet.result().matched == 0
    back = lab.handover(to=1)
    assert (back.from_bs, back.to_bs) == (2, 1)
    assert _arp_until_seen(lab, 1) >= 1
    with pytest.raises(LabError):
        lab.handover(to=1)


@pytest.mark.root
def test_dhcp_client_configures_the_ms(lab: Lab, tmp_path: Path) -> None:
    # busybox udhcpd on DMPA 1's acc0 stands in for the appliance's DHCP.
    lab.exec("m1", ["ip", "addr", "add", "192.0.2.1/24", "dev", ACCESS_IF])
    conf = tmp_path / "udhcpd.conf"
    conf.write_text(
        textwrap.dedent(
            f"""\
            start 192.0.2.20
            end 192.0.2.30
            interface {ACCESS_IF}
            lease_file {tmp_path}/udhcpd.leases
            pidfile {tmp_path}/udhcpd.pid
            opt subnet 255.255.255.0
            opt router 192.0.2.1
            opt dns 203.0.113.53
            opt domain lab.example
            opt mtu 1500
            opt lease 120
            """
        )
    )
    (tmp_path / "udhcpd.leases").touch()
    lab.popen("m1", ["busybox", "udhcpd", "-f", str(conf)])
    client = DhcpClient(lab)
    lease = client.once(tries=8)
    assert str(lease.address).startswith("192.0.2.")
    assert (str(lease.router), lease.prefix_len, lease.lease_time) == ("192.0.2.1", 24, 120)
    assert [str(d) for d in lease.dns] == ["203.0.113.53"] and lease.mtu == 1500
    assert f"inet {lease.address}/24" in lab.exec("ms", ["ip", "-4", "addr"]).stdout
    assert "default via 192.0.2.1" in lab.exec("ms", ["ip", "-4", "route"]).stdout
    resolv = lab.resolv_conf().read_text()
    assert "nameserver 203.0.113.53" in resolv and "search lab.example" in resolv
    assert "203.0.113.53" not in Path("/etc/resolv.conf").read_text()
    assert lab.wait_ping("ms", "192.0.2.1", timeout=5) < 5
    # The long-running mode renews on request and reports it.
    client.start()
    first = client.wait_lease(10, after=lease.serial)
    client.renew()
    renewed = client.wait_lease(10, after=first.serial)
    assert renewed.address == lease.address and renewed.event in ("renew", "bound")
    client.stop()


@pytest.mark.root
def test_tools_between_directly_joined_namespaces(lab: Lab) -> None:
    cn, lm = str(CN_ADDRESS), str(DLMAP_UPLINK_ADDRESS)
    stream = UdpStream(lab, client_ns="lm", server_ns="cn", server=cn, count=200, drain=0.5)
    result = stream.run()
    assert (result.sent, result.received, result.lost, result.duplicates) == (200, 200, 0, 0)
    assert result.max_gap_ms < 500 and result.rtt_max_ms is not None
    assert sum(result.histogram_10ms) == 200
    # Stopped early (as around a handover).
    early = UdpStream(lab, client_ns="cn", server_ns="lm", server=lm, count=100_000)
    early.start()
    stopped = early.stop()
    assert 0 < stopped.sent < 100_000 and stopped.lost == 0

    transfer = tcp_transfer(lab, client_ns="lm", server_ns="cn", server=cn, nbytes=4_000_000)
    assert transfer.bytes_sent == transfer.bytes_acknowledged == 4_000_000
    assert transfer.mbit_s > 0

    session = TcpSession(lab, client_ns="lm", server_ns="cn", server=cn, interval=0.01)
    session.start()
    assert ping(lab, "lm", cn, count=3).received == 3
    outcome = session.stop()
    assert outcome.survived, outcome
    assert outcome.sent == outcome.echoed >= 1


# --- teardown --------------------------------------------------------------------------------


@pytest.mark.root
def test_close_leaves_nothing_when_the_body_raises(root: None) -> None:
    _tools("ip", "sleep")
    lab = Lab()
    with pytest.raises(RuntimeError, match="boom"), lab:
        sleeper = lab.popen("ms", ["sleep", "60"])
        stray = lab.exec("m1", ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"]).stdout
        assert _leftovers(lab.prefix)
        raise RuntimeError("boom")
    assert _leftovers(lab.prefix) == []
    assert sleeper.poll() is not None
    assert not running(int(stray))
    assert not lab.workdir.exists()
    with pytest.raises(LabError):
        lab.exec("cn", ["true"])


@pytest.mark.root
def test_sigterm_tears_the_lab_down(root: None) -> None:
    proc = subprocess.Popen(child_argv("lab_sigterm"), cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        prefix = proc.stdout.readline().strip()
        assert prefix.startswith("nl") and _leftovers(prefix)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _leftovers(prefix) == []


@pytest.mark.root
def test_sweep_removes_a_crashed_runs_leftovers(root: None) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert not Path(f"/proc/{dead.pid}").exists()
    prefix = f"nl{dead.pid}"
    netns.create(f"{prefix}-cn")
    etc = NETNS_ETC / f"{prefix}-ms"
    etc.mkdir(parents=True)
    alive = f"nl{os.getpid()}.999-cn"  # our own PID: a live owner is never swept
    netns.create(alive)
    try:
        removed = Lab.sweep()
        assert f"{prefix}-cn" in removed and alive not in removed
        assert _leftovers(prefix) == [] and not etc.exists()
        assert (NETNS_RUN / alive).exists()
    finally:
        netns.delete(f"{prefix}-cn")
        netns.delete(alive)
        if etc.exists():
            etc.rmdir()
