"""802.1X access links end to end: wpa_supplicant on the MS, hostapd (driver=wired) on each
DMPA's access port, the DMPA's RADIUS proxy, a visited FreeRADIUS proxying realm home.example
to a home FreeRADIUS doing EAP (certificates made at set-up), the real appliance processes.

One lab for the module (``netlmm_lab.dot1x``); the tests run in file order on it: the MS
authenticates with EAP-TTLS/PAP under an anonymous outer identity, registers under its real
NAI, gets its address by DHCP and keeps it across a handover (re-authenticating at DMPA 2);
a second MS with a wrong password gets nothing but EAPOL; a third copying the first one's MAC
at the DMPA the first one is not on, or on the other port of its own DMPA, gets nothing at all
from the DMPA; the MS's logoff de-registers it; after hostapd restarts the DMPA attaches to it
again and the MS logs in with PEAP/MSCHAPv2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netlmm_lab import dot1x
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.errors import LabError
from netlmm_lab.poll import wait_until
from netlmm_lab.servers import Server
from netlmm_lab.tools import capture_open
from netlmm_lab.topology import CN_ADDRESS, DMPA_ADDRESSES, MS_IF, Lab
from tests.conftest import require

pytestmark = pytest.mark.root

NAI = "alice@home.example"
PASSWORD = "alice-correct-horse"
PSEUDO_MAC = "02:00:5e:00:00:01"
EAPOL = 0x888E
SECOND_PORT = "acc1"


@pytest.fixture(scope="module")
def bed() -> Iterator[dict[str, Any]]:
    require(os.geteuid() == 0, "needs root for network namespaces and raw sockets")
    for problem in dot1x.missing():
        require(False, f"{problem} (make test installs it as root)")
    require(shutil.which("udhcpc") is not None, "udhcpc is not installed (make test)")
    require(shutil.which("tshark") is not None, "tshark is not installed (make test)")
    with Lab(mobiles=3) as lab:
        dot1x.pass_eapol(lab)
        # DMPA 2 has a second access port, acc1, in base station b3, with its own hostapd.
        dot1x.add_access_port(lab, 2, SECOND_PORT, "b3")
        _, _, ca = dot1x.start_aaa(lab, [dot1x.Subscriber(NAI, PASSWORD)])
        domain = Domain(lab, [], dot1x=dot1x.dmpa_config(lab, {2: SECOND_PORT}))
        hostapd = {index: dot1x.start_hostapd(lab, index) for index in (1, 2)}
        dot1x.start_hostapd(lab, 2, SECOND_PORT)
        domain.start()
        try:
            yield {"lab": lab, "domain": domain, "ca": ca, "hostapd": hostapd}
        finally:
            domain.stop()


def _counters(domain: Domain, role: str, group: str) -> dict[str, int]:
    counters: dict[str, int] = domain.ask(role, "counters").get(group, {})
    return counters


def _capture(lab: Lab, ms: str, name: str) -> tuple[subprocess.Popen[Any], Path]:
    """tshark on the MS's interface, writing a pcap; returns once it captures."""
    pcap, err = lab.workdir / f"{name}.pcap", lab.workdir / f"{name}.err"
    with err.open("wb") as out:
        proc = lab.popen(
            ms, ["tshark", "-n", "-i", MS_IF, "-w", str(pcap)], stdout=subprocess.DEVNULL,
            stderr=out.fileno(),
        )  # fmt: skip
    wait_until(lambda: capture_open(err), 15, "tshark capturing")
    return proc, pcap


def _frames(lab: Lab, proc: subprocess.Popen[Any], pcap: Path) -> list[tuple[str, int]]:
    """(source MAC, ethertype) of every frame the capture saw."""
    lab.stop(proc)
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-T", "fields", "-e", "eth.src", "-e", "eth.type"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    frames = []
    for line in out.splitlines():
        src, _, kind = line.partition("\t")
        frames.append((src, int(kind.split(",")[-1], 16) if kind else -1))
    return frames


def _supplicant(bed: dict[str, Any], ms: str, password: str) -> Server:
    return dot1x.start_supplicant(bed["lab"], ms, "ttls", NAI, password, bed["ca"])


def test_ms_authenticates_registers_under_its_nai_and_keeps_its_address_at_the_other_dmpa(
    bed: dict[str, Any],
) -> None:
    lab, domain = bed["lab"], bed["domain"]
    supplicant = bed["lab_supplicant"] = _supplicant(bed, "ms", PASSWORD)
    client = DhcpClient(lab, "ms")
    lease = client.once(tries=15, timeout=40)  # EAP first: DHCP goes unanswered until then
    assert (
        'anonymous_identity="anonymous@home.example"'
        in (supplicant.folder / "wpa_supplicant.conf").read_text()
    )
    binding = domain.binding(NAI)
    assert binding is not None, domain.ask("dlmap", "bindings")
    assert binding["hoa"] == str(lease.address)
    assert all("anonymous" not in row["nai"] for row in domain.ask("dlmap", "bindings"))
    visitor = domain.visitor("dmpa1", NAI)
    assert visitor is not None and visitor["state"] == "registered"
    assert visitor["mac"] == lab.ms_mac("ms")
    assert lab.wait_ping("ms", str(CN_ADDRESS), 10) < 10
    proxy = _counters(domain, "dmpa1", "aaa_proxy")
    assert proxy["accept"] == 1 and proxy["taken"] == 1, proxy
    authenticator = _counters(domain, "dmpa1", "authenticator")
    assert authenticator["eap_success"] == 1 and authenticator.get("sta_unanswered", 0) == 0

    lab.handover(2, "ms")
    # The MS starts EAP again on the new link (its link manager's job: wpa_supplicant's wired
    # driver does not watch the carrier); DMPA 2 serves it once hostapd there reports its
    # success, and the MS's traffic (it keeps its address) registers it.
    dot1x.reauthenticate(lab, "ms", supplicant)
    wait_until(
        lambda: _counters(domain, "dmpa2", "authenticator").get("eap_success", 0) >= 1,
        30,
        "EAP success at DMPA 2",
    )
    assert lab.wait_ping("ms", str(CN_ADDRESS), 15) < 15
    moved = domain.binding(NAI)
    assert moved is not None and moved["hoa"] == str(lease.address), moved
    assert domain.visitor("dmpa2", NAI) is not None
    wait_until(lambda: domain.visitor("dmpa1", NAI) is None, 10, "DMPA 1 revoked")
    assert "authorized mac=02:4e:4c:00:00:01 link=acc0 nai=alice@home.example" in domain.tail(
        "dmpa2", 200
    )


def test_a_wrong_password_gets_nothing_but_eapol(bed: dict[str, Any]) -> None:
    lab, domain = bed["lab"], bed["domain"]
    bs = 1 if lab.attached("ms") == 2 else 2
    if lab.attached("ms2") != bs:
        lab.handover(bs, "ms2")
    role = f"dmpa{bs}"
    before = _counters(domain, role, "access").get("auth.unauthorized", 0)
    capture = _capture(lab, "ms2", "wrong-password")
    supplicant = _supplicant(bed, "ms2", "not-the-password")
    wait_until(
        lambda: "CTRL-EVENT-EAP-FAILURE" in supplicant.log.read_text(errors="replace"),
        30,
        "the EAP failure at the MS",
    )
    with pytest.raises(LabError):
        DhcpClient(lab, "ms2").once(tries=3, timeout=20)
    assert not lab.ping_ok("ms2", str(CN_ADDRESS))
    frames = _frames(lab, *capture)
    lab.stop(supplicant.process)
    assert any(kind == EAPOL for _, kind in frames), frames  # EAP ran, and failed
    served = [(src, kind) for src, kind in frames if src == PSEUDO_MAC]
    assert served == [], f"the DMPA answered an MS that failed 802.1X: {served}"
    assert _counters(domain, role, "access")["auth.unauthorized"] > before
    assert _counters(domain, role, "aaa_proxy")["reject"] >= 1
    macs = [row["mac"] for row in domain.ask(role, "visitors")]
    assert lab.ms_mac("ms2") not in macs


def _copy_gets_nothing(bed: dict[str, Any], role: str, name: str) -> None:
    """ms3, holding the authorized MS's MAC and address, sends as it would: nothing from the
    DMPA's pseudo-MAC reaches it, the DMPA counts its frames as unauthorized, and the real MS
    keeps its binding and its traffic."""
    lab, domain = bed["lab"], bed["domain"]
    home = lab.attached("ms")
    before = _counters(domain, role, "access").get("auth.unauthorized", 0)
    victim = lab.ms_mac("ms")
    capture = _capture(lab, "ms3", name)
    assert not lab.ping_ok("ms3", str(CN_ADDRESS))
    with pytest.raises(LabError):
        DhcpClient(lab, "ms3").once(tries=2, timeout=15)
    frames = _frames(lab, *capture)
    assert any(src == victim for src, _ in frames), frames  # the copier's own frames, captured
    served = [(src, kind) for src, kind in frames if src == PSEUDO_MAC]
    assert served == [], f"the DMPA answered a copied MAC: {served}"
    assert _counters(domain, role, "access")["auth.unauthorized"] > before
    still = domain.binding(NAI)
    assert still is not None and still["dmpa"] == str(DMPA_ADDRESSES[home]), still
    assert lab.wait_ping("ms", str(CN_ADDRESS), 10) < 10


def test_a_copy_of_an_authorized_mac_on_another_port_or_dmpa_gets_nothing(
    bed: dict[str, Any],
) -> None:
    lab, domain = bed["lab"], bed["domain"]
    home = lab.attached("ms")
    assert home == 2, "the first test leaves the MS at DMPA 2 (acc0)"
    hoa = domain.binding(NAI)
    assert hoa is not None
    # The copier takes the authorized MS's MAC and address.
    lab.link("ms3", "set", MS_IF, "down")
    lab.link("ms3", "set", MS_IF, "address", lab.ms_mac("ms"))
    lab.link("ms3", "set", MS_IF, "up")
    lab.addr("ms3", f"{hoa['hoa']}/24", MS_IF)
    lab.ip("ms3", "route", "add", "default", "via", "192.0.2.1")
    # At DMPA 1, where the MS is not (ms3 starts in b1).
    wait_until(lambda: lab.carrier("ms3", MS_IF), 10, "carrier on ms3")
    _copy_gets_nothing(bed, "dmpa1", "mac-copy-other-dmpa")
    assert domain.visitor("dmpa1", NAI) is None
    # At DMPA 2 itself, on its other port (acc1, base station b3).
    dot1x.move_to(lab, "ms3", "b1", "b3")
    _copy_gets_nothing(bed, "dmpa2", "mac-copy-other-port")
    visitor = domain.visitor("dmpa2", NAI)
    assert visitor is not None and visitor["link"] == "acc0", visitor  # not moved by the copy


def _wpa_cli(lab: Lab, ms: str, supplicant: Server, command: str) -> None:
    out = lab.exec(
        ms, ["wpa_cli", "-p", str(supplicant.folder), "-i", MS_IF, command], timeout=10
    ).stdout
    assert "OK" in out, out


def test_a_logoff_detaches_the_ms_and_deregisters_it(bed: dict[str, Any]) -> None:
    lab, domain = bed["lab"], bed["domain"]
    role = f"dmpa{lab.attached('ms')}"
    assert domain.binding(NAI) is not None
    supplicant = bed["lab_supplicant"]
    _wpa_cli(lab, "ms", supplicant, "logoff")  # EAPOL-Logoff: hostapd de-authenticates
    wait_until(lambda: domain.binding(NAI) is None, 10, "the binding to be de-registered")
    assert domain.visitor(role, NAI) is None
    assert _counters(domain, role, "access")["auth.detached"] == 1
    assert not lab.ping_ok("ms", str(CN_ADDRESS))


def test_after_hostapd_restarts_the_dmpa_attaches_again_and_peap_works(
    bed: dict[str, Any],
) -> None:
    lab, domain = bed["lab"], bed["domain"]
    index = lab.attached("ms")
    role = f"dmpa{index}"
    attached = _counters(domain, role, "authenticator")["attached"]  # one per access port
    assert attached == (2 if index == 2 else 1)
    lab.stop(bed["hostapd"][index].process)
    bed["hostapd"][index] = dot1x.start_hostapd(lab, index)
    wait_until(
        lambda: _counters(domain, role, "authenticator")["attached"] == attached + 1,
        15,
        "the DMPA attached to the new hostapd",
    )
    lab.stop(bed["lab_supplicant"].process)
    dot1x.start_supplicant(lab, "ms", "peap", NAI, PASSWORD, bed["ca"], name="peap-ms")
    lease = DhcpClient(lab, "ms").once(tries=15, timeout=40)
    binding = domain.binding(NAI)
    assert binding is not None and binding["hoa"] == str(lease.address), binding
    assert binding["dmpa"] == str(DMPA_ADDRESSES[index])
    assert lab.wait_ping("ms", str(CN_ADDRESS), 10) < 10
