"""What an operator sees of a running domain, on real ``netlmm run`` processes in a namespace lab.

* The MTU trap: ``tunnel_mtu = 1500`` over a 1500-byte transport is warned about at start
  (``tunnel_mtu_too_big`` with the value that fits) and the node runs with 1460, so the MS gets
  ICMP "fragmentation needed" instead of losing every full-size DF packet; a change of the
  transport's MTU is logged as it happens.
* Peers in view: the heartbeat at start, PBU timeouts, ``show peers``.
* The operations surface: ``clear binding``, ``detach``, ``reload``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import ping
from netlmm_lab.topology import CN_ADDRESS, DLMAP_ADDRESS, DMPA_ADDRESSES, TRANSPORT_IF, Lab

pytestmark = pytest.mark.root

NAI = "ms@example.org"


def log_records(domain: Domain, role: str, event: str) -> list[dict[str, object]]:
    """The text log lines of ``event`` in ``role``'s log, as ``key=value`` dicts."""
    from router.app.logs import parse

    out = []
    for line in domain.logs[role].read_text(errors="replace").splitlines():
        message = line.split(": ", 1)[1] if ": " in line else line
        name, fields = parse(message)
        if name == event:
            out.append(dict(fields))
    return out


@pytest.fixture
def lab(root: None) -> Iterator[Lab]:
    with Lab(mobiles=1, transport_mtu=1500) as built:
        yield built


def test_a_tunnel_mtu_the_transport_cannot_carry_is_warned_and_cut_to_what_fits(
    lab: Lab,
) -> None:
    domain = Domain(lab, [MobileProfile(NAI, lab.ms_mac("ms"), "dhcp")], tunnel_mtu=1500)
    domain.start(("dlmap", "dmpa1"))
    dlmap = log_records(domain, "dlmap", "tunnel_mtu_too_big")
    dmpa = log_records(domain, "dmpa1", "tunnel_mtu_too_big")
    assert {
        "peer": str(DMPA_ADDRESSES[1]),
        "route_mtu": "1500",
        "tunnel_mtu": "1500",
    }.items() <= dlmap[0].items()
    assert dmpa[0]["peer"] == str(DLMAP_ADDRESS) and dmpa[0]["using"] == "1460", dmpa
    assert "dmpa.tunnel_mtu = 1460" in str(dmpa[0]["fix"])
    DhcpClient(lab, "ms").once(tries=10)
    wait_until(lambda: domain.binding(NAI) is not None, 15.0, "ms bound")
    assert not ping(lab, "ms", str(CN_ADDRESS), count=2, size=1472, df=True).ok  # 1500 bytes
    cached = lab.exec("ms", ["ip", "route", "get", str(CN_ADDRESS)]).stdout
    assert "mtu 1460" in cached, cached  # the MS was told
    assert ping(lab, "ms", str(CN_ADDRESS), count=2, size=1432, df=True).ok  # 1460 bytes
    counters = domain.ask("dmpa1", "counters")
    assert counters["node"].get("punt.access.frag_needed", 0) >= 1
    assert counters["fastpath"].get("uplink.tx_errors", 0) == 0
    # a change of the transport's MTU is seen as it happens (netlink), not at the 30 s poll
    lab.exec("m1", ["ip", "link", "set", "dev", TRANSPORT_IF, "mtu", "1540"])
    wait_until(lambda: log_records(domain, "dmpa1", "route_mtu_changed"), 5.0, "the change")
    (changed,) = log_records(domain, "dmpa1", "route_mtu_changed")
    assert changed == {
        "peer": str(DLMAP_ADDRESS), "route_mtu": "1540", "was": "1500", "tunnel_mtu": "1460",
        "fits": "true",
    }  # fmt: skip
    # a reload does not call the cut tunnel MTU a change of the file
    domain.processes["dmpa1"].send_signal(1)
    wait_until(lambda: log_records(domain, "dmpa1", "reloaded"), 10.0, "reloaded")
    assert "tunnel_mtu" not in json.dumps(log_records(domain, "dmpa1", "reload_needs_restart"))
    assert domain.stop() == {"dlmap": 0, "dmpa1": 0}


def test_a_dmpa_whose_dlmap_is_down_says_so_within_one_heartbeat(
    root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The heartbeat at start goes unanswered (``heartbeat_unanswered`` one interval later), the
    MS's PBU timeouts are logged with their backoff, ``show peers`` says ``down``; once the DLMAP
    is up the peer is ``up`` with its restart counter and the binding counted."""
    from router.cli import main

    with Lab(mobiles=1) as lab:
        domain = Domain(lab, [MobileProfile(NAI, lab.ms_mac("ms"), "dlmap")])
        ini = domain.config("dmpa1")
        ini.write_text(ini.read_text().replace("[dmpa]\n", "[dmpa]\nheartbeat_interval = 2\n", 1))
        domain.start(("dmpa1",))
        socket = str(domain.configs.sockets["dmpa1"])
        wait_until(lambda: log_records(domain, "dmpa1", "heartbeat_unanswered"), 10.0, "unanswered")
        (unanswered,) = log_records(domain, "dmpa1", "heartbeat_unanswered")
        assert unanswered == {"peer": str(DLMAP_ADDRESS), "waited_s": "2.0"}
        domain.associated("dmpa1", lab.ms_mac("ms"))  # the MS arrives: AAA, then a PBU
        wait_until(lambda: len(log_records(domain, "dmpa1", "pbu_timeout")) >= 2, 10.0, "timeouts")
        first, second = log_records(domain, "dmpa1", "pbu_timeout")[:2]
        assert first["nai"] == NAI and first["peer"] == str(DLMAP_ADDRESS)
        waited = float(first["waited_s"])
        assert float(first["next_s"]) == 2 * waited  # the first timeout, then each step
        assert (float(second["waited_s"]), float(second["next_s"])) == (2 * waited, 4 * waited)
        wait_until(
            lambda: domain.ask("dmpa1", "peers")[0]["state"] == "down", 10.0, "the DLMAP down"
        )
        assert main(["show", "peers", "--socket", socket]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split() == [
            "PEER", "STATE", "LAST", "HEARD", "MISSED", "RESTART", "SPI", "DIALECT", "BINDINGS"
        ]  # fmt: skip
        assert table[1].split()[:3] == [str(DLMAP_ADDRESS), "down", "-"]
        domain.start(("dlmap",))
        wait_until(lambda: domain.ask("dmpa1", "peers")[0]["state"] == "up", 10.0, "the DLMAP up")
        wait_until(lambda: domain.binding(NAI) is not None, 40.0, "the MS bound")
        wait_until(lambda: domain.ask("dmpa1", "peers")[0]["bindings"] == 1, 5.0, "counted")
        (peer,) = domain.ask("dmpa1", "peers")
        assert peer["restart_counter"] is not None and peer["spi"] == 257
        assert peer["dialect"] == "draft" and peer["last_heard"] < 3.0
        (dmpa,) = [p for p in domain.ask("dlmap", "peers") if p["peer"] == str(DMPA_ADDRESSES[1])]
        assert dmpa["bindings"] == 1 and dmpa["state"] == "up"  # it heard the DMPA's requests
        assert domain.stop() == {"dmpa1": 0, "dlmap": 0}


def test_clear_detach_and_reload_through_the_control_socket(
    root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """``netlmm clear binding`` at the DLMAP revokes at the DMPA; ``netlmm detach`` at the DMPA
    de-registers at the DLMAP; ``netlmm reload`` says what it did and fails on a bad file."""
    from router.cli import main

    def cli(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    with Lab(mobiles=1) as lab:
        mac = lab.ms_mac("ms")
        domain = Domain(lab, [MobileProfile(NAI, mac, "dlmap")])
        domain.start(("dlmap", "dmpa1"))
        lm, m1 = (str(domain.configs.sockets[role]) for role in ("dlmap", "dmpa1"))

        def registered() -> bool:
            visitor = domain.visitor("dmpa1", NAI)
            return visitor is not None and visitor["state"] == "registered"

        domain.associated("dmpa1", mac)
        wait_until(lambda: domain.binding(NAI) is not None and registered(), 15.0, "bound")
        hoa = str(domain.binding(NAI)["hoa"])  # type: ignore[index]
        code, out, err = cli("clear", "binding", "--hoa", hoa, "--socket", lm)
        assert code == 0, err
        assert out.strip() == f"cleared {NAI} {hoa} (revoked at {DMPA_ADDRESSES[1]})"
        assert domain.binding(NAI) is None
        wait_until(lambda: domain.visitor("dmpa1", NAI) is None, 10.0, "revoked at the DMPA")
        assert domain.ask("dmpa1", "counters")["core"].get("revoked", 0) == 1
        code, _, err = cli("clear", "binding", "--nai", NAI, "--socket", lm)
        assert code == 1 and "no binding" in err

        domain.associated("dmpa1", mac)
        wait_until(lambda: domain.binding(NAI) is not None and registered(), 15.0, "bound again")
        code, out, err = cli("detach", mac, "--socket", m1)
        assert code == 0, err
        assert out.strip() == f"detached {mac} ({NAI}, was registered)"
        wait_until(lambda: domain.binding(NAI) is None, 10.0, "de-registered at the DLMAP")
        assert log_records(domain, "dmpa1", "detached_by_operator")[0]["nai"] == NAI
        code, _, err = cli("detach", mac, "--socket", lm)
        assert code == 1 and "at their DMPA" in err

        ini = domain.config("dmpa1")
        good = ini.read_text()
        ini.write_text(good.replace("[dmpa]\n", "[dmpa]\nlifetime = 1200\nbogus = 1\n", 1))
        code, _, err = cli("reload", "--socket", m1)
        assert code == 1
        assert "refused: dmpa.bogus: unknown key" in err and "nothing changed" in err
        ini.write_text(good.replace("[dmpa]\n", "[dmpa]\nlifetime = 1200\n", 1))
        code, out, err = cli("reload", "--socket", m1)
        assert code == 0, err
        assert out.splitlines() == ["applied: -", "waiting for a restart: dmpa.lifetime"]
        assert domain.stop() == {"dlmap": 0, "dmpa1": 0}
