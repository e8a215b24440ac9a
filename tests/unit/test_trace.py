"""``netlmm trace`` on synthetic captures: one MS followed through DHCP, registration and
revocation, pcap and pcapng, tshark's dissection, garbage and files that are no capture."""

from __future__ import annotations

import io
import json
import random
import subprocess
from argparse import ArgumentParser
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from router.adapters.capture import LINK_ETHERNET, LINK_RAW, Frame, PcapWriter, read_capture
from router.app.trace import Follow, add_trace_parser, decode_frame, trace_main
from router.cli import main
from router.wire.dhcp import DhcpMessage, DhcpOption, DhcpOptionCode
from router.wire.dialect import DRAFT
from router.wire.ethernet import MacAddress
from router.wire.mh import (
    BindingAck,
    BindingRevocationAck,
    BindingRevocationIndication,
    BindingUpdate,
)
from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress
from tests.unit.nodes import DLMAP, DMPA1, MAC, NAI

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


def test_trace_prints_seconds_typed_json_and_follows_option_82(tmp_path: Path) -> None:
    """The lifetime in seconds (900 on the wire's 4-second units is 3600 s, as tshark says),
    no class constants, JSON numbers, and ``--nai`` matching option 82's subscriber-id in
    tunnelled DHCP (the DMPA's relay names the MS there)."""
    from router.wire.dhcp import RelayAgentInfo

    alice = MobileNodeIdentifier.from_nai(NAI)
    seed = SeedIPv4HomeAddress(1, IPv4Address(HOA))
    tagged = DhcpMessage(
        op=1,
        xid=0x33,
        chaddr=MS2.packed,
        options=(DhcpOption(DhcpOptionCode.MESSAGE_TYPE, bytes([1])),),
    ).with_relay_agent_info(RelayAgentInfo.of(subscriber_id=NAI.encode()))
    payload = tagged.encode()
    udp = (68).to_bytes(2, "big") + (67).to_bytes(2, "big")
    udp += (8 + len(payload)).to_bytes(2, "big") + b"\x00\x00" + payload
    ip = bytes([0x45, 0]) + (20 + len(udp)).to_bytes(2, "big") + bytes(4) + bytes([64, 17, 0, 0])
    ip += bytes(4) + bytes([255] * 4)
    packets = [
        _ipv6(DMPA1, DLMAP, 4, ip + udp),
        _mh(DMPA1, DLMAP, BindingUpdate(7, DRAFT.pbu_flags(), 900, (alice, seed))),
    ]
    pcap = _pcap(tmp_path / "c.pcap", packets)
    lines = _run_trace("-r", str(pcap), "--nai", NAI)
    assert len(lines) == 2, lines
    assert f"subscriber_id={NAI}" in lines[0]
    assert "lifetime_s=3600" in lines[1]
    assert not any(word in lines[1] for word in ("FIXED", "NAME=", "MH_TYPE"))
    records = [json.loads(line) for line in _run_trace("-r", str(pcap), "--json")]
    assert records[1]["lifetime_s"] == 3600 and records[1]["sequence"] == 7
    assert records[1]["nai"] == NAI
