"""Operating it (issue 9) without a lab: config keys, log lines, the metrics a node in memory
exports, SIGHUP's reload, the ``show`` formatting, ``netlmm trace`` on synthetic captures and
the systemd unit. The same features on real processes: tests/netns/test_operations.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import sysconfig
from argparse import ArgumentParser, Namespace
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from router.adapters.aaa import AAA, AAAConfig
from router.adapters.capture import LINK_ETHERNET, LINK_RAW, Frame, PcapWriter, read_capture
from router.adapters.metrics_http import MetricsServer
from router.adapters.store import Store
from router.app import config, logs
from router.app.dlmap_node import DLMAPNode, DLMAPPorts
from router.app.dmpa_node import DMPANode, DMPAPorts
from router.app.metrics import LatencyObserver, registry_for
from router.app.run import flatten, redacted, reload
from router.app.runner import Clock
from router.app.settings import DLMAPSettings, DMPASettings
from router.app.trace import Follow, add_trace_parser, decode_frame, trace_main
from router.cli import _bindings_table, _duration, _filter_bindings, main
from router.core.actions import Bind, event
from router.wire.dhcp import DhcpMessage, DhcpOption, DhcpOptionCode
from router.wire.dialect import DRAFT
from router.wire.ethernet import MacAddress
from router.wire.mh import (
    BindingAck,
    BindingRevocationAck,
    BindingRevocationIndication,
    BindingUpdate,
    decode_message,
)
from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress
from tests.conftest import require

DLMAP = IPv6Address("2001:db8:100::1")
DMPA1 = IPv6Address("2001:db8:100::11")
DMPA2 = IPv6Address("2001:db8:100::12")
NAI = "alice@example.org"
MAC = MacAddress.parse("02:00:00:00:0a:01")
ROOT = Path(__file__).resolve().parents[2]

DLMAP_INI = f"""
[node]
role = dlmap
name = lm
address = {DLMAP}
metrics = [{DLMAP}]:9477

[dlmap]
gateway = 192.0.2.1
network = 192.0.2.0/24
pool = 192.0.2.100-192.0.2.199
tunnel_mtu = 1500
revocation_budget = 0.5

[peer {DMPA1}]
[peer {DMPA2}]
"""

DMPA_INI = f"""
[node]
role = dmpa
name = m1
address = {DMPA1}
log_format = json

[dmpa]
access = eth1
gateway = 192.0.2.1
tunnel_mtu = 1500

[peer {DLMAP}]

[profile {NAI}]
mac = {MAC}
"""


# --- config ------------------------------------------------------------------------------------


def test_metrics_and_log_format_keys() -> None:
    settings, _ = config.loads(DLMAP_INI)
    assert settings.node.metrics == (str(DLMAP), 9477)
    assert settings.node.log_format == "text"
    settings, _ = config.loads(DMPA_INI)
    assert settings.node.metrics is None  # off by default
    assert settings.node.log_format == "json"
    v4, _ = config.loads(DMPA_INI.replace("log_format = json", "metrics = 127.0.0.1:9100"))
    assert v4.node.metrics == ("127.0.0.1", 9100)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9477", "node.metrics: 9477 is not ADDRESS:PORT or [IPv6]:PORT"),
        ("localhost:9477", "node.metrics: localhost is not an IP address"),
        ("127.0.0.1:0", "node.metrics: "),
        ("[2001:db8::1]", "node.metrics: [2001:db8::1] is not [IPv6]:PORT"),
    ],
)
def test_bad_metrics_addresses_are_reported_with_the_others(value: str, message: str) -> None:
    text = DMPA_INI.replace("log_format = json", f"metrics = {value}\nlog_format = yaml")
    with pytest.raises(config.ConfigErrors) as caught:
        config.loads(text)
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems
    assert any(p.startswith("node.log_format: ") for p in caught.value.problems)


# --- logs --------------------------------------------------------------------------------------


def test_key_value_lines_quote_what_would_split_and_parse_back() -> None:
    line = "handover " + logs.kv({"nai": NAI, "why": 'superseded by "x"', "empty": ""})
    assert line == f'handover nai={NAI} why="superseded by \\"x\\"" empty=""'
    assert logs.parse(line) == ("handover", {"nai": NAI, "why": 'superseded by "x"', "empty": ""})


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("netlmm", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_the_event_and_its_fields() -> None:
    formatter = logs.JsonFormatter()
    structured = json.loads(
        formatter.format(_record("registered nai=%s", NAI, fields={"nai": NAI, "hoa": "x"}))
    )
    assert structured["event"] == "registered"
    assert (structured["level"], structured["logger"]) == ("warning", "netlmm")
    assert (structured["nai"], structured["hoa"]) == (NAI, "x")
    assert structured["time"].endswith("Z")
    parsed = json.loads(formatter.format(_record('reload needs a restart key="dmpa.lifetime"')))
    assert parsed["event"] == "reload needs a restart"
    assert parsed["key"] == "dmpa.lifetime"


def test_on_the_journal_lines_start_with_the_syslog_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "stderr").open("w") as stream:
        info = os.fstat(stream.fileno())
        assert not logs.on_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        assert logs.on_journal(stream)
        handler = logs.setup("info", "text", stream)
        try:
            logging.getLogger("netlmm").warning("reload refused problem=%s", "x")
            logging.getLogger("netlmm").debug("not shown at info")
            logs.set_level("debug")
            logging.getLogger("netlmm").debug("shown at debug")
        finally:
            logging.getLogger().removeHandler(handler)
            logs.set_level("warning")
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert lines == ["<4>netlmm: reload refused problem=x", "<7>netlmm: shown at debug"]


# --- nodes in memory ---------------------------------------------------------------------------


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_700_000_000.0 + self.t


@dataclass
class Dlmap:
    node: DLMAPNode
    sent: list[tuple[bytes, IPv6Address]]

    def receive(self, message: object, src: IPv6Address) -> list[object]:
        self.node.on_mh(message.encode(), src)  # type: ignore[attr-defined]
        self.node.runner.flush()
        out = [decode_message(data, DRAFT) for data, _ in self.sent]
        self.sent.clear()
        return out


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    made = asyncio.new_event_loop()
    yield made
    made.close()


@pytest.fixture
def dlmap(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Dlmap]:
    settings, _ = config.loads(DLMAP_INI)
    assert isinstance(settings, DLMAPSettings)
    sent: list[tuple[bytes, IPv6Address]] = []
    node = DLMAPNode(
        settings,
        DLMAPPorts(lambda data, dst: sent.append((data, dst)), None, -1, -1, -1),
        Store(tmp_path / "lm.sqlite"),
        loop,
        FakeClock(),
        fastpath="reference",
    )
    yield Dlmap(node, sent)
    node.store.close()


def pbu(sequence: int, hoa: str = "0.0.0.0") -> BindingUpdate:
    options = (MobileNodeIdentifier.from_nai(NAI), SeedIPv4HomeAddress(0, IPv4Address(hoa)))
    return BindingUpdate(sequence, DRAFT.pbu_flags(), 900, options)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: object) -> Samples:
    samples: Samples = {}
    text = generate_latest(registry).decode()  # type: ignore[arg-type]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def test_dlmap_metrics_follow_a_registration_a_handover_and_garbage(dlmap: Dlmap) -> None:
    registry, observer = registry_for(dlmap.node, lambda: {"mh_socket": {"rx": 3}})
    dlmap.node.runner.observers.append(observer)
    first = scrape(registry)
    assert value(first, "netlmm_bindings", state="bound") == 0
    assert value(first, "netlmm_handover_duration_seconds_count") == 0
    [ack] = dlmap.receive(pbu(1), DMPA1)
    assert isinstance(ack, BindingAck) and ack.status == 0
    hoa = ack.find(SeedIPv4HomeAddress)
    assert hoa is not None
    # the new DMPA's PBU: the DLMAP revokes the old one and holds the PBA until its BRA
    [bri] = dlmap.receive(pbu(1, str(hoa.address)), DMPA2)
    assert isinstance(bri, BindingRevocationIndication)
    held = scrape(registry)
    assert value(held, "netlmm_bindings", state="handover_pending") == 1
    assert value(held, "netlmm_revocations_in_flight") == 1
    dlmap.node.loop.time = lambda: 1e6  # type: ignore[method-assign]  # the BRA, "later"
    [released] = dlmap.receive(BindingRevocationAck(0, bri.sequence, 0), DMPA1)
    assert isinstance(released, BindingAck) and released.status == 0
    dlmap.node.on_mh(b"\x00\x01garbage", DMPA1)
    after = scrape(registry)
    assert value(after, "netlmm_bindings", state="bound") == 1
    assert value(after, "netlmm_bindings", state="handover_pending") == 0
    assert value(after, "netlmm_bindings_created_total") == 1
    assert value(after, "netlmm_handovers_total") == 1
    assert value(after, "netlmm_registrations_total", result="accepted", status="0") == 2
    assert value(after, "netlmm_revocations_total", result="acknowledged", status="0") == 1
    assert value(after, "netlmm_revocations_sent_total") == 1
    assert value(after, "netlmm_handover_duration_seconds_count") == 1
    assert value(after, "netlmm_handover_duration_seconds_bucket", le="1.0") == 0  # ~1e6 s
    assert value(after, "netlmm_mh_messages_total", direction="rx") == 4
    assert sum(v for (name, _), v in after.items() if name == "netlmm_mh_malformed_total") == 1
    assert value(after, "netlmm_internal_events_total", group="mh_socket", name="rx") == 3
    assert value(after, "netlmm_info", role="dlmap", name="lm", version=_version()) == 1
    for direction in ("uplink", "downlink"):
        assert value(after, "netlmm_fastpath_forwarded_packets_total", direction=direction) == 0
        drops = {"direction": direction, "reason": "no_binding"}
        assert ("netlmm_fastpath_dropped_packets_total", frozenset(drops.items())) in after
    names = {name for name, _ in after}
    assert all(n.startswith(("netlmm_", "process_", "python_")) for n in names), names


def test_the_dmpa_registration_histogram_times_attach_to_bind(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    settings, _ = config.loads(DMPA_INI)
    assert isinstance(settings, DMPASettings)
    node = DMPANode(
        settings,
        DMPAPorts(lambda data, dst: None, None, -1, -1),
        Store(tmp_path / "m1.sqlite"),
        AAA(AAAConfig(profiles=settings.profiles)),
        loop,
        FakeClock(),
        fastpath="reference",
    )
    try:
        registry, observer = registry_for(node, process=False)
        observer(event("attach", mac=MAC, link=0), 10.0)
        observer(event("attach", mac=MacAddress.parse("02:00:00:00:0a:02"), link=0), 10.0)
        observer(Bind(IPv4Address("192.0.2.100"), DLMAP, MAC, 0), 10.04)
        observer(Bind(IPv4Address("192.0.2.100"), DLMAP, MAC, 0), 99.0)  # a rebind: not timed
        samples = scrape(registry)
        assert value(samples, "netlmm_registration_duration_seconds_count") == 1
        assert value(samples, "netlmm_registration_duration_seconds_bucket", le="0.025") == 0
        assert value(samples, "netlmm_registration_duration_seconds_bucket", le="0.05") == 1
        assert value(samples, "netlmm_visitors", state="registered") == 0
        assert value(samples, "netlmm_aaa_backend_total", outcome="requests") == 0
    finally:
        node.store.close()


def test_the_latency_observer_forgets_beyond_its_capacity() -> None:
    from prometheus_client import CollectorRegistry

    from router.app import metrics

    observer = LatencyObserver("dlmap", CollectorRegistry(), revocation_budget=0.5)
    for n in range(metrics.PENDING_CAPACITY + 10):
        observer(event("handover", nai=f"ms{n}"), float(n))
    observer(event("pba_released", nai="ms0"), 1e4)  # forgotten: not observed
    observer(event("pba_released", nai="ms20"), 1e4)
    assert observer.handover._sum.get() == pytest.approx(1e4 - 20)


def test_the_metrics_server_answers_get_metrics_only() -> None:
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    Counter("netlmm_test", "a test counter", registry=registry).inc(3)
    server = MetricsServer(registry, "127.0.0.1", 1)

    async def ask(request: bytes) -> tuple[str, bytes, str]:
        reader = asyncio.StreamReader()
        reader.feed_data(request)
        reader.feed_eof()
        return await server._request(reader)

    status, body, ctype = asyncio.run(ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == "200 OK" and b"netlmm_test_total 3.0" in body
    assert ctype.startswith("text/plain; version=0.0.4")
    assert asyncio.run(ask(b"GET /other HTTP/1.1\r\n\r\n"))[0] == "404 Not Found"
    assert asyncio.run(ask(b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == "405 Method Not Allowed"
    assert asyncio.run(ask(b"\xff\xfe garbage"))[0] == "405 Method Not Allowed"
    assert server.scrapes == 1


# --- SIGHUP ------------------------------------------------------------------------------------


def test_reload_applies_level_and_profiles_and_reports_the_rest(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m1.ini"
    path.write_text(DMPA_INI)
    settings, _ = config.load(path)
    assert isinstance(settings, DMPASettings)
    aaa = AAA(AAAConfig(profiles=settings.profiles))
    node = DMPANode(
        settings,
        DMPAPorts(lambda data, dst: None, None, -1, -1),
        Store(tmp_path / "m1.sqlite"),
        aaa,
        loop,
        FakeClock(),
        fastpath="reference",
    )
    bob = MacAddress.parse("02:00:00:00:0b:01")
    try:
        caplog.set_level(logging.INFO)
        assert asyncio.run(aaa.authenticate(bob)) is None
        text = DMPA_INI.replace("[dmpa]\n", "[dmpa]\nlifetime = 1200\n")
        text = text.replace("log_format = json", "log_format = json\nlog_level = warning")
        path.write_text(text + f"[profile bob@example.org]\nmac = {bob}\n")
        applied = reload(node, path, log_format="json")
        assert applied == ["profile bob@example.org", "node.log_level"]
        assert logging.getLogger().level == logging.WARNING
        assert "reload needs a restart key=dmpa.lifetime" in caplog.text
        assert node.settings.lifetime == 3600 and node.settings.node.log_level == "warning"
        profile = asyncio.run(aaa.authenticate(bob))
        assert profile is not None and profile.nai == "bob@example.org"
        caplog.clear()
        path.write_text(text.replace("lifetime = 1200", "lifetime = banana"))
        assert reload(node, path) == []  # refused whole: nothing changes
        assert "reload refused" in caplog.text and "dmpa.lifetime" in caplog.text
        assert node.settings.node.log_level == "warning"
    finally:
        logs.set_level("warning")
        node.store.close()


def test_show_config_leaves_the_secrets_out() -> None:
    text = DMPA_INI.replace("tunnel_mtu = 1500", "tunnel_mtu = 1500\naaa = radius")
    text += "[radius]\nservers = 192.0.2.5 s3cr3t-shared\n"
    settings, _ = config.loads(text, file_mode=0o100600)
    view = {k: redacted(v) for k, v in flatten(settings).items()}
    dumped = json.dumps(view)
    assert "s3cr3t" not in dumped and "(secret)" in dumped
    assert view["node.address"] == str(DMPA1)
    assert view["dmpa.access"] == ["eth1"]
    assert f"profile {NAI}" in view and f"peer {DLMAP}" in view


# --- show formatting ---------------------------------------------------------------------------

ROWS = [
    {"nai": "b@x", "hoa": "192.0.2.101", "dmpa": str(DMPA2), "age": 4000.0,
     "expires_in": 59.9, "lifetime": 3600, "packets": 7},
    {"nai": "a@x", "hoa": "192.0.2.100", "dmpa": str(DMPA1), "age": 12.3,
     "expires_in": 3587.7, "lifetime": 3600, "packets": 0},
]  # fmt: skip


def _filters(**given: str | None) -> Namespace:
    return Namespace(**({"nai": None, "hoa": None, "dmpa": None} | given))


def test_bindings_table_and_filters() -> None:
    table = _bindings_table(ROWS, "dlmap").splitlines()
    assert table[0].split() == ["NAI", "HOA", "DMPA", "AGE", "LEFT", "LIFETIME", "PACKETS"]
    assert table[1].split() == ["a@x", "192.0.2.100", str(DMPA1), "12s", "59m47s", "1h00m", "0"]
    assert table[2].split() == ["b@x", "192.0.2.101", str(DMPA2), "1h06m", "59s", "1h00m", "7"]
    assert _filter_bindings(ROWS, _filters(nai="a@*")) == [ROWS[1]]
    assert _filter_bindings(ROWS, _filters(hoa="192.0.2.101")) == [ROWS[0]]
    assert _filter_bindings(ROWS, _filters(hoa="192.0.2.0/24")) == ROWS
    assert _filter_bindings(ROWS, _filters(dmpa="2001:db8:100:0::11")) == [ROWS[1]]
    assert _filter_bindings(ROWS, _filters(nai="a@*", dmpa=str(DMPA2))) == []
    with pytest.raises(ValueError):
        _filter_bindings(ROWS, _filters(hoa="not-an-address"))
    assert _bindings_table([], "dlmap") == "(no bindings)"
    assert [_duration(v) for v in (0, 59.9, 61, 3600, 90000, -1, None)] == [
        "0s", "59s", "1m01s", "1h00m", "1d01h", "0s", "-",
    ]  # fmt: skip


def test_show_commands_through_a_control_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from router.adapters.control import ControlServer

    counters = {"core": {"handover": 2, "bri.sent": 0}, "fastpath": {"uplink.forwarded": 0}}

    def handle(request: dict[str, object]) -> dict[str, object]:
        what = request["what"]
        result = ROWS if what == "bindings" else counters
        return {"what": what, "role": "dlmap", "result": result}

    socket = tmp_path / "c.sock"

    async def scenario() -> list[tuple[int, str]]:
        outputs = []
        async with ControlServer(socket, handle):
            for argv in (
                ["show", "bindings", "--socket", str(socket), "--nai", "b@x"],
                ["show", "counters", "--socket", str(socket)],
                ["show", "counters", "--socket", str(socket), "--all", "--json"],
                ["show", "bindings", "--socket", str(socket), "--hoa", "x"],
            ):
                code = await asyncio.to_thread(main, argv)
                outputs.append((code, capsys.readouterr().out))
        return outputs

    (c1, table), (c2, nonzero), (c3, everything), (c4, _) = asyncio.run(scenario())
    assert (c1, c2, c3, c4) == (0, 0, 0, 2)
    assert [line.split()[0] for line in table.splitlines()] == ["NAI", "b@x"]
    assert nonzero.split() == ["core:", "handover", "2"]
    assert json.loads(everything) == counters


# --- trace -------------------------------------------------------------------------------------

MS2 = MacAddress.parse("02:00:00:00:0a:02")


def _ipv6(src: IPv6Address, dst: IPv6Address, nxt: int, body: bytes) -> bytes:
    head = bytes([0x60, 0, 0, 0]) + len(body).to_bytes(2, "big") + bytes([nxt, 64])
    return head + src.packed + dst.packed + body


def _mh(src: IPv6Address, dst: IPv6Address, message: object) -> bytes:
    return _ipv6(src, dst, 135, message.encode(src, dst))  # type: ignore[attr-defined]


def _dhcp_in_tunnel(src: IPv6Address, dst: IPv6Address, mac: MacAddress, kind: int, xid: int,
                    yiaddr: str = "0.0.0.0") -> bytes:  # fmt: skip
    message = DhcpMessage(
        op=1 if kind in (1, 3) else 2,
        xid=xid,
        chaddr=mac.packed,
        yiaddr=IPv4Address(yiaddr),
        options=(DhcpOption(DhcpOptionCode.MESSAGE_TYPE, bytes([kind])),),
    )
    payload = message.encode()
    udp = (68).to_bytes(2, "big") + (67).to_bytes(2, "big")
    udp += (8 + len(payload)).to_bytes(2, "big") + b"\x00\x00" + payload
    ip = bytes([0x45, 0]) + (20 + len(udp)).to_bytes(2, "big") + bytes(4) + bytes([64, 17, 0, 0])
    ip += bytes(4) + bytes([255] * 4)
    return _ipv6(src, dst, 4, ip + udp)


def _ethernet(packet: bytes) -> bytes:
    return bytes.fromhex("02000000000102000000000286dd") + packet


HOA = "192.0.2.100"


def _capture() -> list[bytes]:
    """Alice's DHCP through the tunnel, PBU/PBA, a handover's BRI/BRA; Bob's DHCP between."""
    alice = MobileNodeIdentifier.from_nai(NAI)
    seed = SeedIPv4HomeAddress(1, IPv4Address(HOA))
    return [
        _dhcp_in_tunnel(DMPA1, DLMAP, MAC, 1, 0x11),  # DISCOVER: only the MAC names alice
        _dhcp_in_tunnel(DMPA1, DLMAP, MS2, 1, 0x22),  # bob
        _dhcp_in_tunnel(DLMAP, DMPA1, MAC, 5, 0x11, HOA),  # ACK: alice's HoA
        _mh(DMPA1, DLMAP, BindingUpdate(7, DRAFT.pbu_flags(), 900, (alice, seed))),
        _mh(DLMAP, DMPA1, BindingAck(0, 0, 7, 900, (alice, seed))),
        _mh(DLMAP, DMPA1, BindingRevocationIndication(1, 3, 0, (seed,))),  # the HoA only
        _mh(DMPA1, DLMAP, BindingRevocationAck(0, 3, 0)),  # nothing but the sequence
        b"\x60garbage",
        bytes(random.Random(9).randbytes(80)),
    ]


def _pcap(path: Path, packets: list[bytes], link: int = LINK_RAW) -> Path:
    with path.open("wb") as out:
        writer = PcapWriter(out)
        for n, packet in enumerate(packets):
            data = _ethernet(packet) if link == LINK_ETHERNET else packet
            writer.write(Frame(1000.0 + n / 100, link, data, n + 1))
    return path


def _run_trace(*argv: str) -> list[str]:
    parser = ArgumentParser()
    add_trace_parser(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    assert trace_main(parser.parse_args(["trace", *argv]), out) == 0
    return out.getvalue().splitlines()


@pytest.mark.parametrize("link", [LINK_RAW, LINK_ETHERNET])
def test_trace_follows_one_ms_through_dhcp_registration_and_revocation(
    tmp_path: Path, link: int
) -> None:
    pcap = _pcap(tmp_path / "c.pcap", _capture(), link)
    lines = _run_trace("-r", str(pcap), "--nai", NAI)
    kinds = [line.split("  ")[-1].split()[0] for line in lines]
    assert kinds == ["DHCP", "DHCP", "PBU", "PBA", "BRI", "BRA"], lines
    assert "type=DISCOVER" in lines[0] and "xid=0x00000011" in lines[0]
    assert f"nai={NAI}" in lines[2] and f"hoa={HOA}" in lines[2]
    assert "(tunnel 2001:db8:100::11 -> 2001:db8:100::1)" in lines[0]
    bob = _run_trace("-r", str(pcap), "--mac", str(MS2), "--json")
    assert [json.loads(line)["xid"] for line in bob] == ["0x00000022"]
    by_hoa = _run_trace("-r", str(pcap), "--hoa", HOA)
    assert len(by_hoa) == 6
    everything = _run_trace("-r", str(pcap))
    assert len(everything) == 7  # alice's six and bob's DISCOVER: the garbage is skipped


def test_trace_reads_pcapng_and_tshark_dissects_the_same_frames(
    tmp_path: Path, tshark_path: str
) -> None:
    pcap = _pcap(tmp_path / "c.pcap", _capture(), LINK_ETHERNET)
    pcapng = tmp_path / "c.pcapng"
    subprocess.run([tshark_path, "-r", str(pcap), "-F", "pcapng", "-w", str(pcapng)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    with pcap.open("rb") as a, pcapng.open("rb") as b:
        classic, ng = list(read_capture(a)), list(read_capture(b))
    assert [f.data for f in classic] == [f.data for f in ng]
    assert [round(f.time, 3) for f in classic] == [round(f.time, 3) for f in ng]
    lines = _run_trace("-r", str(pcapng), "--nai", NAI, "--tshark")
    text = "\n".join(lines)
    assert "Binding Update" in text and "Binding Revocation" in text
    assert "Dynamic Host Configuration Protocol" in text


def test_trace_never_stops_on_garbage() -> None:
    rng = random.Random(4)
    follow = Follow()
    for n in range(2000):
        size = rng.randrange(0, 120)
        data = bytes([0x60]) + rng.randbytes(size) if n % 2 else rng.randbytes(size)
        for link in (LINK_RAW, LINK_ETHERNET):
            record = decode_frame(Frame(0.0, link, data, n))
            if record is not None:
                follow(record)


def test_trace_refuses_what_is_not_a_capture(tmp_path: Path) -> None:
    from router.app.trace import TraceError

    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"not a capture at all")
    with pytest.raises(TraceError, match="not a pcap"):
        _run_trace("-r", str(bad))
    assert main(["trace", "-r", str(tmp_path / "missing.pcap")]) == 2


# --- the systemd unit --------------------------------------------------------------------------


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze is not installed")
    assert analyze is not None
    unit = (ROOT / "etc/systemd/netlmm@.service").read_text()
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW" in unit
    assert "Restart=on-failure" in unit
    # verify checks that ExecStart exists: point it at the netlmm entry point of the
    # interpreter running the tests (wherever its environment is), not at a ./.venv
    netlmm = Path(sysconfig.get_path("scripts")) / "netlmm"
    require(netlmm.is_file(), f"no netlmm entry point beside {sys.executable} (pip install -e .)")
    (tmp_path / "netlmm@lab.service").write_text(unit.replace("/usr/local/bin/netlmm", str(netlmm)))
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "netlmm@lab.service")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    problems = [line for line in result.stderr.splitlines() if "netlmm@lab" in line]
    assert result.returncode == 0 and not problems, result.stderr


def _version() -> str:
    from router import __version__

    return __version__


def test_event_lines_have_levels_fields_and_a_rate_limit(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    from collections import Counter

    from router.app.runner import ActionRunner

    counters: Counter[str] = Counter()
    store = Store(tmp_path / "s.sqlite")
    runner = ActionRunner(loop, store, {}, counters)
    seen: list[str] = []
    runner.observers.append(lambda action, now: seen.append(type(action).__name__))
    caplog.set_level(logging.INFO, logger="netlmm")
    try:
        runner.submit([event("registered", nai=NAI, hoa="192.0.2.100")])
        runner.submit([event("pbu_rejected", peer=DMPA1, status=135, reason="bad sequence")])
        runner.submit([event("handover", nai=f"ms{n}") for n in range(30)])  # one loop turn
        runner.flush()
    finally:
        store.close()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines[0] == (logging.INFO, f"registered nai={NAI} hoa=192.0.2.100")
    assert lines[1] == (
        logging.WARNING,
        f'pbu_rejected peer={DMPA1} status=135 reason="bad sequence"',
    )
    assert caplog.records[1].fields == {"peer": DMPA1, "status": 135, "reason": "bad sequence"}
    assert [m for _, m in lines[2:]] == ["handover nai=ms0"]  # the next 29 within 0.1 s: left out
    assert counters["log.suppressed"] == 29 and counters["event.handover"] == 30
    assert seen == ["Event"] * 32


def test_run_takes_a_log_format_and_still_refuses_a_bad_file_first(tmp_path: Path) -> None:
    from router.cli import build_parser

    args = build_parser().parse_args(["run", "-c", "x.ini", "--log-format", "json"])
    assert args.log_format == "json"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "-c", "x.ini", "--log-format", "yaml"])
    bad = tmp_path / "bad.ini"
    bad.write_text(DMPA_INI.replace("log_format = json", "log_format = yaml"))
    assert main(["run", "-c", str(bad), "--log-format", "json"]) == 2
