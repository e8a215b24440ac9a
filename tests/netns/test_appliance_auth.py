"""Authenticated signaling with the real processes.

The lab's domain with RFC 4285 authentication on: DMPA 1 has the right key, DMPA 2 a key the
DLMAP does not know. The MS registers at DMPA 1 and reaches the CN; moved to DMPA 2 it is
refused there: the DLMAP counts the bad authenticator and the binding stays where it was.
Then DMPA 2's key file is fixed and SIGHUP makes it (and the DLMAP) re-read the keys: the
binding is kept and moves to DMPA 2 with the same address.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import ping
from netlmm_lab.topology import CN_ADDRESS, DMPA_ADDRESSES, Lab

pytestmark = pytest.mark.root

NAI = "ms@example.org"


@pytest.fixture
def lab(root: None) -> Iterator[Lab]:
    with Lab(mobiles=1) as built:
        yield built


def node_counters(domain: Domain, role: str) -> dict[str, int]:
    counters: dict[str, int] = domain.ask(role, "counters")["node"]
    return counters


def test_signed_registration_and_a_dmpa_with_the_wrong_key_is_refused(lab: Lab) -> None:
    domain = Domain(lab, [MobileProfile(NAI, lab.ms_mac("ms"), "dhcp")], auth=True, wrong_key=(2,))
    domain.start()
    lease = DhcpClient(lab, "ms").once(tries=10)
    wait_until(
        lambda: (b := domain.binding(NAI)) is not None and b["dmpa"] == str(DMPA_ADDRESSES[1]),
        15.0,
        "ms bound at DMPA 1",
    )
    result = ping(lab, "ms", str(CN_ADDRESS), count=3)
    assert result.ok, result
    dlmap, dmpa1 = node_counters(domain, "dlmap"), node_counters(domain, "dmpa1")
    assert dlmap.get("auth.rx.ok", 0) >= 1 and dmpa1.get("auth.rx.ok", 0) >= 1
    assert dlmap.get("auth.tx.signed", 0) >= 1 and dmpa1.get("auth.tx.signed", 0) >= 1
    # DMPA 2's heartbeat at start is signed with the wrong key too: the only refusal so far
    refusals = {"auth.rx.ok", "auth.rx.bad_authenticator"}
    assert not [k for k in dlmap if k.startswith("auth.rx.") and k not in refusals], dlmap
    assert dlmap.get("auth.reply.146", 0) == 0, dlmap  # no PBU refused yet

    lab.handover(2)
    ping(lab, "ms", str(CN_ADDRESS), count=2)  # traffic on the new link: DMPA 2 registers it

    def refused() -> bool:
        return node_counters(domain, "dlmap").get("auth.reply.146", 0) >= 1

    wait_until(refused, 15.0, "the DLMAP refusing DMPA 2's PBU")
    dlmap = node_counters(domain, "dlmap")
    assert dlmap.get("auth.reply.146", 0) >= 1
    # DMPA 2 cannot verify the (correctly signed) 146 either: it drops it and stays unregistered
    wait_until(
        lambda: node_counters(domain, "dmpa2").get("auth.rx.bad_authenticator", 0) >= 1,
        10.0,
        "DMPA 2 dropping the PBA it cannot verify",
    )
    visitor = domain.visitor("dmpa2", NAI)
    assert visitor is None or visitor["state"] != "registered", visitor
    binding = domain.binding(NAI)
    assert binding is not None
    assert binding["dmpa"] == str(DMPA_ADDRESSES[1]) and binding["hoa"] == str(lease.address)

    # SIGHUP rotation: DMPA 2 gets the right key, the DLMAP re-reads its (unchanged) file; no
    # binding is dropped and DMPA 2's next PBU retransmission registers the MS there.
    right = (lab.workdir / "appliance" / "dlmap.keys").read_text().splitlines()[1]
    assert right.startswith("258 ")
    (lab.workdir / "appliance" / "dmpa2.keys").write_text(right + "\n")
    for role in ("dlmap", "dmpa2"):
        domain.processes[role].send_signal(signal.SIGHUP)
    for role in ("dlmap", "dmpa2"):
        wait_until(
            lambda role=role: node_counters(domain, role).get("auth.reload.ok", 0) == 1,
            10.0,
            f"{role} reloading its keys",
        )
    assert domain.binding(NAI) is not None  # the reload kept the binding
    wait_until(
        lambda: (b := domain.binding(NAI)) is not None and b["dmpa"] == str(DMPA_ADDRESSES[2]),
        40.0,
        "ms bound at DMPA 2 after the key fix",
    )
    assert domain.binding(NAI)["hoa"] == str(lease.address)
    wait_until(lambda: ping(lab, "ms", str(CN_ADDRESS), count=1).ok, 15.0, "traffic via DMPA 2")

    keys = [
        line.split()[1]
        for name in ("dlmap", "dmpa1", "dmpa2")
        for line in (lab.workdir / "appliance" / f"{name}.keys").read_text().splitlines()
    ]
    for role in ("dlmap", "dmpa1", "dmpa2"):
        text = (lab.workdir / f"{role}.log").read_text()
        assert not [key for key in keys if key in text], f"a key in the {role} log"
