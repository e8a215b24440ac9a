"""RFC 4285 signaling authentication: the key file and its
config errors, and sign + verify through the nodes' real send (a ``SendMH`` their runner carries
out) and receive (``on_mh``) paths, with a DLMAP node and a DMPA node built from ini text.

No sockets: each node's ``mh_send`` port records what it would send.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from router.adapters.aaa import AAA, AAAConfig
from router.adapters.keyfile import KeyFileError, read_key_file
from router.adapters.store import Store
from router.app.config import ConfigErrors, loads
from router.app.dlmap_node import DLMAPNode, DLMAPPorts
from router.app.dmpa_node import DMPANode, DMPAPorts
from router.app.logs import parse
from router.app.runner import Clock
from router.app.settings import DLMAPSettings, DMPASettings
from router.core.actions import SendMH
from router.core.security import ntp_timestamp
from router.wire import mh_auth
from router.wire.constants import Status
from router.wire.dialect import DRAFT
from router.wire.mh import (
    ZERO_ADDRESS,
    BindingAck,
    BindingRevocationIndication,
    BindingUpdate,
    MobilityMessage,
    decode_message,
)
from router.wire.mh_options import (
    MobileNodeIdentifier,
    MobilityMessageAuthentication,
    MobilityMessageReplayProtection,
    SeedIPv4HomeAddress,
)

DLMAP_ADDRESS = IPv6Address("2001:db8:100::1")
DMPA_ADDRESS = IPv6Address("2001:db8:100::11")
OTHER_DMPA = IPv6Address("2001:db8:100::12")
KEY = bytes(range(1, 21))
OTHER_KEY = bytes(range(101, 121))
WALL = 1_700_000_000.0


def dlmap_ini(key_file: Path, spi: str = "256", other_spi: str = "257") -> str:
    return f"""
[node]
role = dlmap
name = lm
address = {DLMAP_ADDRESS}
key_file = {key_file}

[dlmap]
gateway = 192.0.2.1
network = 192.0.2.0/24
pool = 192.0.2.100-192.0.2.199
tunnel_mtu = 1500

[peer {DMPA_ADDRESS}]
spi = {spi}

[peer {OTHER_DMPA}]
spi = {other_spi}
"""


def dmpa_ini(key_file: Path, spi: str = "256") -> str:
    return f"""
[node]
role = dmpa
name = m1
address = {DMPA_ADDRESS}
key_file = {key_file}

[dmpa]
access = eth1
gateway = 192.0.2.1
tunnel_mtu = 1500

[peer {DLMAP_ADDRESS}]
spi = {spi}

[profile alice@example.org]
mac = 02:00:00:00:0a:01
"""


def key_file(folder: Path, name: str, lines: dict[int, bytes], mode: int = 0o600) -> Path:
    path = folder / name
    path.write_text("# spi key\n" + "".join(f"{s} {k.hex()}\n" for s, k in lines.items()))
    path.chmod(mode)
    return path


# --- the key file and the config -----------------------------------------------------------


def test_a_good_key_file_loads_and_never_shows_a_key(tmp_path: Path) -> None:
    keys = key_file(tmp_path, "lm.keys", {256: KEY, 257: OTHER_KEY})
    settings, warned = loads(dlmap_ini(keys))
    assert warned == []
    assert {p.address: p.spi for p in settings.peers} == {DMPA_ADDRESS: 256, OTHER_DMPA: 257}
    assert settings.node.keys is not None and settings.node.keys.spis == (256, 257)
    assert settings.node.replay_window == 7.0
    shown = repr(settings)
    assert KEY.hex() not in shown and OTHER_KEY.hex() not in shown
    assert "KeyRing(spis=[256, 257])" in shown


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_key_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    keys = key_file(tmp_path, "lm.keys", {256: KEY, 257: OTHER_KEY}, mode)
    with pytest.raises(ConfigErrors) as caught:
        loads(dlmap_ini(keys))
    [problem] = caught.value.problems
    assert problem.startswith("node.key_file: ")
    assert f"(mode {mode:04o}): chmod 600" in problem


def test_a_missing_key_for_a_configured_spi_is_refused(tmp_path: Path) -> None:
    keys = key_file(tmp_path, "lm.keys", {256: KEY})
    with pytest.raises(ConfigErrors) as caught:
        loads(dlmap_ini(keys))
    assert caught.value.problems == [f"node.key_file: {keys}: no key for SPI 257"]


def test_key_file_problems_are_reported_without_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.keys"
    path.write_text(f"12 {KEY.hex()}\n256 zz{KEY.hex()}\n257 0102\n257\n")
    path.chmod(0o600)
    with pytest.raises(KeyFileError) as caught:
        read_key_file(path, [256, 257])
    text = "\n".join(caught.value.problems)
    assert "line 1: SPI 12 is not in 256..4294967295" in text
    assert "line 2: the key of SPI 256 is not hex" in text
    assert "line 3: the key of SPI 257 has 2 bytes, at least 16 are needed" in text
    assert "line 4: not 'SPI HEX-KEY'" in text
    assert KEY.hex() not in text


def test_config_errors_for_spi_and_key_file(tmp_path: Path) -> None:
    text = dlmap_ini(tmp_path / "absent.keys")
    with pytest.raises(ConfigErrors) as caught:
        loads(text)
    assert [p.split(":")[0] for p in caught.value.problems] == ["node.key_file"]
    assert "cannot read" in caught.value.problems[0]
    no_file = text.replace(f"key_file = {tmp_path / 'absent.keys'}\n", "")
    with pytest.raises(ConfigErrors) as caught:
        loads(no_file)
    assert caught.value.problems == [
        f"peer {DMPA_ADDRESS}.spi: needs the keys: node.key_file",
        f"peer {OTHER_DMPA}.spi: needs the keys: node.key_file",
    ]
    keys = key_file(tmp_path, "lm.keys", {256: KEY, 257: OTHER_KEY})
    with pytest.raises(ConfigErrors) as caught:
        loads(dlmap_ini(keys, spi="255"))
    assert caught.value.problems == [f"peer {DMPA_ADDRESS}.spi: 255 is not in 256..4294967295"]


def test_run_refuses_to_start_on_an_open_key_file(tmp_path: Path) -> None:
    from router.cli import main

    keys = key_file(tmp_path, "lm.keys", {256: KEY, 257: OTHER_KEY}, 0o644)
    ini = tmp_path / "dlmap.ini"
    ini.write_text(dlmap_ini(keys))
    assert main(["run", "-c", str(ini)]) == 2


# --- sign and verify through the nodes ------------------------------------------------------


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 100.0
        self.offset = WALL

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t + self.offset


@dataclass
class Nodes:
    dlmap: DLMAPNode
    dmpa: DMPANode
    clock: FakeClock
    to_dlmap: list[bytes]
    to_dmpa: list[bytes]

    def dmpa_sends(self, message: MobilityMessage) -> bytes:
        self.dmpa.runner.submit([SendMH(DLMAP_ADDRESS, message)])
        self.dmpa.runner.flush()
        return self.to_dlmap.pop()

    def dlmap_receives(self, data: bytes, src: IPv6Address = DMPA_ADDRESS) -> list[bytes]:
        self.dlmap.on_mh(data, src)
        self.dlmap.runner.flush()
        sent, self.to_dmpa[:] = list(self.to_dmpa), []
        return sent


def _ports_recorder(out: list[bytes]) -> object:
    def send(data: bytes, dst: IPv6Address) -> None:
        out.append(data)

    return send


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    lm_keys = key_file(tmp_path, "lm.keys", {256: KEY, 257: OTHER_KEY})
    m1_keys = key_file(tmp_path, "m1.keys", {256: KEY})
    dlmap_settings, _ = loads(dlmap_ini(lm_keys))
    dmpa_settings, _ = loads(dmpa_ini(m1_keys))
    assert isinstance(dlmap_settings, DLMAPSettings) and isinstance(dmpa_settings, DMPASettings)
    loop = asyncio.new_event_loop()
    clock = FakeClock()
    to_dlmap: list[bytes] = []
    to_dmpa: list[bytes] = []
    dlmap = DLMAPNode(
        dlmap_settings,
        DLMAPPorts(_ports_recorder(to_dmpa), None, -1, -1, -1),
        Store(tmp_path / "lm.sqlite"),
        loop,
        clock,
        fastpath="reference",
    )
    dmpa = DMPANode(
        dmpa_settings,
        DMPAPorts(_ports_recorder(to_dlmap), None, -1, -1),
        Store(tmp_path / "m1.sqlite"),
        AAA(AAAConfig(profiles=dmpa_settings.profiles)),
        loop,
        clock,
        fastpath="reference",
    )
    yield Nodes(dlmap, dmpa, clock, to_dlmap, to_dmpa)
    dlmap.store.close()
    dmpa.store.close()
    loop.close()


def pbu(seq: int = 1) -> BindingUpdate:
    return BindingUpdate(
        seq,
        DRAFT.pbu_flags(),
        900,
        (
            MobileNodeIdentifier.from_nai("alice@example.org"),
            SeedIPv4HomeAddress(0, IPv4Address("0.0.0.0")),
        ),
    )


def decoded(data: bytes) -> MobilityMessage:
    return decode_message(data, DRAFT)


def resign(
    message: MobilityMessage, key: bytes = KEY, spi: int = 256, stamp: int | None = None
) -> bytes:
    """What a peer (or an attacker with ``key``) would send: MESG-ID if given, then AUTH."""
    options = [
        o
        for o in message.options
        if not isinstance(o, MobilityMessageAuthentication | MobilityMessageReplayProtection)
    ]
    if stamp is not None:
        options.append(MobilityMessageReplayProtection(stamp))
    options.append(MobilityMessageAuthentication(spi, bytes(12)))
    rebuilt = dataclasses.replace(message, options=tuple(options))  # type: ignore[type-var]
    return mh_auth.sign(rebuilt, key, DMPA_ADDRESS, ZERO_ADDRESS)


def test_a_signed_pbu_is_accepted_and_the_pba_is_signed(nodes: Nodes) -> None:
    data = nodes.dmpa_sends(pbu())
    sent = decoded(data)
    assert isinstance(sent.options[-1], MobilityMessageAuthentication)
    assert isinstance(sent.options[-2], MobilityMessageReplayProtection)
    assert sent.options[-1].spi == 256
    assert mh_auth.verify(data, KEY, DMPA_ADDRESS)  # care-of: the DMPA, home: ::
    [reply] = nodes.dlmap_receives(data)
    ack = decoded(reply)
    assert isinstance(ack, BindingAck) and ack.status == Status.ACCEPTED
    assert mh_auth.verify(reply, KEY, DMPA_ADDRESS)  # the PBA: care-of is its destination
    assert nodes.dlmap.counters["auth.rx.ok"] == 1
    assert len(nodes.dlmap.core.bindings) == 1
    # the DMPA's receive path accepts the PBA (the core has no PBU pending: unmatched)
    nodes.dmpa.on_mh(reply, DLMAP_ADDRESS)
    assert nodes.dmpa.counters["auth.rx.ok"] == 1
    assert nodes.dmpa.core.counters["pba.unmatched"] == 1


def status_of(replies: list[bytes]) -> int:
    [reply] = replies
    ack = decoded(reply)
    assert isinstance(ack, BindingAck)
    assert ack.sequence == 7 and ack.lifetime == 0
    assert ack.find(MobileNodeIdentifier) == MobileNodeIdentifier.from_nai("alice@example.org")
    assert mh_auth.verify(reply, KEY, DMPA_ADDRESS), "the failure PBA is signed too"
    return ack.status


def test_a_pbu_without_auth_gets_146(nodes: Nodes) -> None:
    replies = nodes.dlmap_receives(pbu(7).encode())
    assert status_of(replies) == Status.MIPV6_AUTH_FAIL
    assert nodes.dlmap.counters["auth.rx.missing"] == 1
    assert nodes.dlmap.counters["auth.reply.146"] == 1
    assert not nodes.dlmap.core.bindings


def test_a_pbu_with_a_wrong_key_gets_146(nodes: Nodes) -> None:
    stamp = ntp_timestamp(nodes.clock.wall())
    replies = nodes.dlmap_receives(resign(pbu(7), key=OTHER_KEY, stamp=stamp))
    assert status_of(replies) == Status.MIPV6_AUTH_FAIL
    assert nodes.dlmap.counters["auth.rx.bad_authenticator"] == 1
    assert not nodes.dlmap.core.bindings


def test_a_pbu_with_an_unknown_spi_gets_146(nodes: Nodes) -> None:
    stamp = ntp_timestamp(nodes.clock.wall())
    # 257 is a known SPI, but not this peer's: a DMPA cannot sign as another
    replies = nodes.dlmap_receives(resign(pbu(7), key=OTHER_KEY, spi=257, stamp=stamp))
    assert status_of(replies) == Status.MIPV6_AUTH_FAIL
    assert nodes.dlmap.counters["auth.rx.unknown_spi"] == 1


def test_a_pbu_without_mesg_id_gets_145(nodes: Nodes) -> None:
    replies = nodes.dlmap_receives(resign(pbu(7)))
    assert status_of(replies) == Status.MIPV6_MESG_ID_REQD
    assert nodes.dlmap.counters["auth.rx.no_mesg_id"] == 1


def test_a_stale_pbu_gets_144_and_a_replayed_one_is_dropped(
    nodes: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    old = ntp_timestamp(nodes.clock.wall() - 7.5)
    with caplog.at_level(logging.WARNING, "netlmm"):
        replies = nodes.dlmap_receives(resign(pbu(7), stamp=old))
    assert status_of(replies) == Status.MIPV6_ID_MISMATCH
    assert nodes.dlmap.counters["auth.rx.stale"] == 1
    assert "hint=check_ntp" in caplog.text and KEY.hex() not in caplog.text
    skew = next(r.getMessage() for r in caplog.records if "clock_skew" in r.getMessage())
    event, fields = parse(skew)  # the key=value form every other line has
    assert event == "signaling_clock_skew" and float(fields["skew_s"]) < -7
    # a good PBU, then the very same bytes again: the replay is dropped without an answer
    data = nodes.dmpa_sends(pbu(8))
    assert len(nodes.dlmap_receives(data)) == 1
    assert nodes.dlmap_receives(data) == []
    assert nodes.dlmap.counters["auth.rx.replayed"] == 1
    assert nodes.dlmap.counters["auth.rx.ok"] == 1
    # within the window but older than the last accepted: replayed too
    earlier = ntp_timestamp(nodes.clock.wall() - 1.0)
    assert nodes.dlmap_receives(resign(pbu(9), stamp=earlier)) == []
    assert nodes.dlmap.counters["auth.rx.replayed"] == 2


def test_an_unprotected_pba_or_bri_is_dropped_by_the_dmpa(nodes: Nodes) -> None:
    ack = BindingAck(Status.MIPV6_AUTH_FAIL, DRAFT.pba_flags(ipv4=True), 1, 0)
    nodes.dmpa.on_mh(ack.encode(), DLMAP_ADDRESS)
    bri = BindingRevocationIndication(1, 5, 0)
    nodes.dmpa.on_mh(bri.encode(), DLMAP_ADDRESS)
    assert nodes.dmpa.counters["auth.rx.missing"] == 2
    assert nodes.dmpa.core.counters["pba.unmatched"] == 0  # the core never saw them
    nodes.dmpa.runner.flush()
    assert nodes.to_dlmap == []  # the DMPA answers nothing


def test_a_dmpa_with_the_wrong_key_is_refused_both_ways(nodes: Nodes, tmp_path: Path) -> None:
    wrong = key_file(tmp_path, "m1.keys", {256: OTHER_KEY})
    assert nodes.dmpa.settings.node.key_file is not None
    assert nodes.dmpa.reload_keys()  # now the DMPA holds a key the DLMAP does not know
    [reply] = nodes.dlmap_receives(nodes.dmpa_sends(pbu(7)))
    assert status_of([reply]) == Status.MIPV6_AUTH_FAIL
    nodes.dmpa.on_mh(reply, DLMAP_ADDRESS)  # signed with the real key: it fails here as well
    assert nodes.dmpa.counters["auth.rx.bad_authenticator"] == 1
    assert wrong.exists()


def test_sighup_reload_keeps_bindings_and_a_bad_file_keeps_the_old_keys(
    nodes: Nodes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nodes.dlmap_receives(nodes.dmpa_sends(pbu(1)))
    assert len(nodes.dlmap.core.bindings) == 1
    new = bytes(range(200, 220))
    # a bad file: world-readable, on the DLMAP; the old keys stay
    path = key_file(tmp_path, "lm.keys", {256: new, 257: OTHER_KEY}, 0o644)
    with caplog.at_level(logging.INFO, "netlmm"):
        assert not nodes.dlmap.reload_keys()
    assert "chmod 600" in caplog.text and new.hex() not in caplog.text
    assert nodes.dlmap.counters["auth.reload.error"] == 1
    nodes.clock.t += 1
    [reply] = nodes.dlmap_receives(nodes.dmpa_sends(pbu(2)))
    assert decoded(reply).status == Status.ACCEPTED  # type: ignore[attr-defined]
    # rotation on both sides: still accepted, the binding never went away
    os.chmod(path, 0o600)
    key_file(tmp_path, "m1.keys", {256: new})
    assert nodes.dlmap.reload_keys() and nodes.dmpa.reload_keys()
    nodes.clock.t += 1
    [reply] = nodes.dlmap_receives(nodes.dmpa_sends(pbu(3)))
    assert decoded(reply).status == Status.ACCEPTED  # type: ignore[attr-defined]
    assert mh_auth.verify(reply, new, DMPA_ADDRESS)
    assert len(nodes.dlmap.core.bindings) == 1
    assert nodes.dlmap.counters["auth.reload.ok"] == 1
