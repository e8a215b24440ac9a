"""``netlmm trace``: one MS's signaling and DHCP, decoded, from a capture file or a live interface.

Sources: ``-r FILE`` (pcap or pcapng: Ethernet, raw IP, Linux cooked v1/v2) or ``-i IFACE``
(an ``AF_PACKET`` socket; ``--netns NS`` runs the capture inside a network namespace, where a
node's interfaces are), bounded by ``--count`` and ``--duration``; ``-w FILE`` keeps what was
captured as a pcap for Wireshark.

What is shown: Mobility Header messages (PBU, PBA, BRI, BRA, ...: our own decoder,
:func:`router.wire.mh.decode_message`, in ``--dialect``, then the other) and DHCP, on an access
link or inside the IPv4-in-IPv6 tunnel. ``--nai``, ``--hoa`` and ``--mac`` pick one MS; the
trace learns the MS's other identifiers as they appear (a PBU's NAI gives the HoA its PBA grants,
a DHCP exchange's MAC gives its address), and follows a BRA to its BRI and a DHCP reply to its
request, so the whole exchange shows even where a message carries only one of them.
``--tshark`` then prints Wireshark's dissection (its ``mipv6`` dissector, DHCP) of the same frames.

Every packet that does not parse is counted and skipped: a capture never stops the trace.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import json
import signal
import struct
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import IO, Any

from router.adapters.capture import (
    LINK_ETHERNET,
    LINK_IPV4,
    LINK_IPV6,
    LINK_RAW,
    LINK_SLL,
    LINK_SLL2,
    Frame,
    PcapWriter,
    TraceError,
    exec_in_namespace,
    live_frames,
    read_capture,
    tshark_dissect,
)
from router.app.logs import quote
from router.wire.dhcp import DhcpMessage
from router.wire.dialect import DIALECTS
from router.wire.errors import DecodeError
from router.wire.ethernet import MacAddress
from router.wire.mh import MobilityMessage, decode_message
from router.wire.mh_options import (
    IPv4HomeAddressReply,
    IPv4HomeAddressRequest,
    MNLinkLayerIdentifier,
    MobileNodeIdentifier,
    SeedIPv4HomeAddress,
)

IPPROTO_MH, IPPROTO_IPIP, IPPROTO_UDP = 135, 4, 17
_EXT_HEADERS = {0, 43, 60}  # hop-by-hop, routing, destination options (length-prefixed)
_FRAGMENT = 44
_SHORT = {
    "BindingUpdate": "PBU",
    "BindingAck": "PBA",
    "BindingRevocationIndication": "BRI",
    "BindingRevocationAck": "BRA",
    "BindingError": "BE",
    "Heartbeat": "HB",
    "BindingRefreshRequest": "BRR",
}
_ZERO4 = IPv4Address(0)


@dataclass(slots=True)
class Record:
    """One decoded message of interest: what the trace prints."""

    frame: int
    time: float
    kind: str  # PBU, PBA, BRI, ..., or DHCP
    src: str
    dst: str
    fields: dict[str, object]
    tunnel: tuple[str, str] | None = None  # DHCP inside the IPv4-in-IPv6 tunnel
    nai: str | None = None
    hoas: set[IPv4Address] = field(default_factory=set)
    macs: set[MacAddress] = field(default_factory=set)
    keys: set[tuple[object, ...]] = field(default_factory=set)  # exchange keys (BRI seq, xid)

    def line(self, start: float) -> str:
        where = f"{self.src} -> {self.dst}"
        if self.tunnel is not None:
            where += f" (tunnel {self.tunnel[0]} -> {self.tunnel[1]})"
        context = " ".join(f"{k}={quote(v)}" for k, v in self.fields.items())
        return f"{self.frame:>6} {self.time - start:>10.6f}  {where}  {self.kind} {context}"

    def render(self, start: float, as_json: bool) -> str:
        return json.dumps(self.as_json()) if as_json else self.line(start)

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "frame": self.frame,
            "time": self.time,
            "kind": self.kind,
            "src": self.src,
            "dst": self.dst,
        }
        if self.tunnel is not None:
            out["tunnel"] = list(self.tunnel)
        out.update({k: _typed(v) for k, v in self.fields.items()})
        return out


# --- decoding ---------------------------------------------------------------------------------


def _network_layer(link: int, data: bytes) -> tuple[int, bytes, MacAddress | None] | None:
    """(IP version, IP packet, source MAC if any) of one frame, or None."""
    mac: MacAddress | None = None
    if link == LINK_ETHERNET:
        if len(data) < 14:
            return None
        mac = MacAddress(data[6:12])
        ethertype, pos = struct.unpack_from("!H", data, 12)[0], 14
        while ethertype in (0x8100, 0x88A8) and len(data) >= pos + 4:
            ethertype, pos = struct.unpack_from("!H", data, pos + 2)[0], pos + 4
        payload = data[pos:]
    elif link == LINK_SLL:
        if len(data) < 16:
            return None
        ethertype, payload = struct.unpack_from("!H", data, 14)[0], data[16:]
    elif link == LINK_SLL2:
        if len(data) < 20:
            return None
        ethertype, payload = struct.unpack_from("!H", data, 0)[0], data[20:]
    elif link in (LINK_RAW, LINK_IPV4, LINK_IPV6):
        if not data:
            return None
        version = data[0] >> 4
        ethertype, payload = (0x0800 if version == 4 else 0x86DD), data
    else:
        raise TraceError(f"link type {link} is not supported (Ethernet, raw IP, Linux cooked)")
    if ethertype == 0x0800:
        return 4, payload, mac
    if ethertype == 0x86DD:
        return 6, payload, mac
    return None


def _ipv6_upper(packet: bytes) -> tuple[IPv6Address, IPv6Address, int, bytes] | None:
    if len(packet) < 40 or packet[0] >> 4 != 6:
        return None
    length = struct.unpack_from("!H", packet, 4)[0]
    nxt = packet[6]
    src, dst = IPv6Address(packet[8:24]), IPv6Address(packet[24:40])
    body = packet[40 : 40 + length]
    for _ in range(8):  # a bounded walk of the extension headers
        if nxt in _EXT_HEADERS and len(body) >= 8:
            nxt, body = body[0], body[(body[1] + 1) * 8 :]
        elif nxt == _FRAGMENT and len(body) >= 8:
            if struct.unpack_from("!H", body, 2)[0] & 0xFFF8:
                return None  # a non-first fragment: nothing to decode
            nxt, body = body[0], body[8:]
        else:
            break
    return src, dst, nxt, body


def _ipv4_udp(packet: bytes) -> tuple[IPv4Address, IPv4Address, int, int, bytes] | None:
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != IPPROTO_UDP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if struct.unpack_from("!H", packet, 6)[0] & 0x1FFF:
        return None  # a non-first fragment
    udp = packet[ihl:]
    if len(udp) < 8:
        return None
    sport, dport = struct.unpack_from("!HH", udp, 0)
    return IPv4Address(packet[12:16]), IPv4Address(packet[16:20]), sport, dport, udp[8:]


def _mh_record(
    frame: Frame, src: IPv6Address, dst: IPv6Address, body: bytes, dialect: str
) -> Record:
    message: MobilityMessage | None = None
    error: DecodeError | None = None
    for name in (dialect, *(d for d in DIALECTS if d != dialect)):
        try:
            message = decode_message(body, DIALECTS[name])
            break
        except DecodeError as exc:
            error = error or exc
    if message is None:
        return Record(frame.number, frame.time, "MH?", str(src), str(dst), {"error": error})
    kind = _SHORT.get(type(message).__name__, type(message).__name__)
    record = Record(frame.number, frame.time, kind, str(src), str(dst), {})
    record.fields.update(mh_fields(message))
    for option in message.options:
        if isinstance(option, MobileNodeIdentifier) and option.nai is not None:
            record.nai = option.nai
            record.fields["nai"] = option.nai
        elif isinstance(option, SeedIPv4HomeAddress | IPv4HomeAddressRequest):
            record.fields["hoa"] = option.address
            if option.address != _ZERO4:
                record.hoas.add(option.address)
        elif isinstance(option, IPv4HomeAddressReply):
            record.fields["hoa"] = option.address
            record.fields["hoa_status"] = option.status
            if option.address != _ZERO4:
                record.hoas.add(option.address)
        elif isinstance(option, MNLinkLayerIdentifier) and len(option.link_layer_id) == 6:
            mac = MacAddress(option.link_layer_id)
            record.fields["mac"] = mac
            record.macs.add(mac)
        else:
            record.fields.setdefault("options", "")
            record.fields["options"] = f"{record.fields['options']},{type(option).__name__}".lstrip(
                ","
            )
    sequence = getattr(message, "sequence", None)
    if kind in ("BRI", "PBU"):
        record.keys.add((kind, str(src), str(dst), sequence))
    elif kind in ("BRA", "PBA"):
        record.keys.add(("BRI" if kind == "BRA" else "PBU", str(dst), str(src), sequence))
    return record


def mh_fields(message: MobilityMessage) -> dict[str, object]:
    """A message's own fields as ``netlmm trace`` and ``netlmm decode`` print them: the
    dataclass fields only (never the class constants ``FIXED``, ``NAME``, ``MH_TYPE``), flags
    in hex, a lifetime in seconds (``lifetime_s``; the wire counts 4-second units, so 900 is
    3600 s, as tshark shows it)."""
    out: dict[str, object] = {}
    for item in dataclasses.fields(message):  # type: ignore[arg-type]
        if item.name == "options":
            continue
        value = getattr(message, item.name)
        if item.name == "flags":
            out["flags"] = f"{value:#06x}"
        elif item.name == "lifetime" and hasattr(message, "lifetime_seconds"):
            out["lifetime_s"] = message.lifetime_seconds
        else:
            out[item.name] = value
    return out


def option_text(option: object) -> str:
    """A mobility option as ``Name key=value ...`` (``netlmm decode``): no Python repr."""
    if not dataclasses.is_dataclass(option) or isinstance(option, type):
        return str(option)
    parts = [type(option).__name__]
    for item in dataclasses.fields(option):
        value = getattr(option, item.name)
        if isinstance(value, bytes | bytearray):
            value = value.hex() if value else '""'
        parts.append(f"{item.name}={quote(_typed(value))}")
    return " ".join(parts)


def _typed(value: object) -> object:
    """A field for a JSON line: numbers and booleans as they are, the rest as text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, enum.Enum):
        return _typed(value.value)
    return str(value)


def _dhcp_record(
    frame: Frame, ip: tuple[IPv4Address, IPv4Address, int, int, bytes]
) -> Record | None:
    src, dst, sport, dport, payload = ip
    if not ({sport, dport} & {67, 68}):
        return None
    try:
        message = DhcpMessage.decode(payload)
    except DecodeError:
        return Record(frame.number, frame.time, "DHCP?", str(src), str(dst), {})
    kind = message.message_type
    name = getattr(kind, "name", None) or str(kind)
    record = Record(frame.number, frame.time, "DHCP", f"{src}:{sport}", f"{dst}:{dport}", {})
    record.fields["type"] = name
    record.fields["xid"] = f"{message.xid:#010x}"
    if message.hlen == 6:
        mac = MacAddress(message.chaddr[:6])
        record.fields["mac"] = mac
        record.macs.add(mac)
    for label, address in (
        ("ciaddr", message.ciaddr),
        ("yiaddr", message.yiaddr),
        ("requested", message.requested_ip),
    ):
        if address is not None and address != _ZERO4:
            record.fields[label] = address
            record.hoas.add(address)
    if message.giaddr != _ZERO4:
        record.fields["giaddr"] = message.giaddr
    info = message.relay_agent_info
    subscriber = info.subscriber_id if info is not None else None
    if subscriber:  # option 82's subscriber-id: the NAI, in tunnelled DHCP
        nai = subscriber.decode("utf-8", "replace")
        record.fields["subscriber_id"] = nai
        record.nai = nai
    record.keys.add(("DHCP", message.xid))
    return record


def decode_frame(frame: Frame, dialect: str = "draft") -> Record | None:
    """The MH or DHCP message in one frame, or None if it holds neither."""
    network = _network_layer(frame.link, frame.data)
    if network is None:
        return None
    version, packet, _mac = network
    if version == 6:
        upper = _ipv6_upper(packet)
        if upper is None:
            return None
        src, dst, nxt, body = upper
        if nxt == IPPROTO_MH:
            return _mh_record(frame, src, dst, body, dialect)
        if nxt == IPPROTO_IPIP:
            inner = _ipv4_udp(body)
            record = _dhcp_record(frame, inner) if inner is not None else None
            if record is not None:
                record.tunnel = (str(src), str(dst))
            return record
        return None
    inner = _ipv4_udp(packet)
    return _dhcp_record(frame, inner) if inner is not None else None


# --- one MS -----------------------------------------------------------------------------------


class Follow:
    """Which records concern one MS: its identifiers, learned as they appear."""

    def __init__(
        self,
        nais: Iterable[str] = (),
        hoas: Iterable[IPv4Address] = (),
        macs: Iterable[MacAddress] = (),
    ) -> None:
        self.nais, self.hoas, self.macs = set(nais), set(hoas), set(macs)
        self.everything = not (self.nais or self.hoas or self.macs)
        self.keys: set[tuple[object, ...]] = set()

    def settle(self, records: list[Record], passes: int = 8) -> None:
        """Learn from a whole capture first, so a message before the one that names the MS
        (a DHCP DISCOVER before the PBU with its NAI) shows too."""
        for _ in range(passes):
            known = (len(self.nais), len(self.hoas), len(self.macs), len(self.keys))
            for record in records:
                self(record)
            if known == (len(self.nais), len(self.hoas), len(self.macs), len(self.keys)):
                return

    def __call__(self, record: Record) -> bool:
        if self.everything:
            return True
        hit = (
            (record.nai is not None and record.nai in self.nais)
            or bool(record.hoas & self.hoas)
            or bool(record.macs & self.macs)
            or bool(record.keys & self.keys)
        )
        if hit:
            if record.nai is not None:
                self.nais.add(record.nai)
            self.hoas |= record.hoas
            self.macs |= record.macs
            self.keys |= record.keys
        return hit


# --- sources ----------------------------------------------------------------------------------


def add_trace_parser(sub: Any) -> None:
    trace = sub.add_parser(
        "trace", help="one MS's signaling and DHCP, decoded (a capture file or live)"
    )
    source = trace.add_mutually_exclusive_group(required=True)
    source.add_argument("-r", "--read", type=Path, help="a pcap or pcapng file")
    source.add_argument("-i", "--interface", help="capture live on this interface")
    trace.add_argument("--netns", help="with -i: the network namespace of the interface")
    trace.add_argument("--nai", action="append", default=[], help="the MS's NAI")
    trace.add_argument("--hoa", action="append", default=[], help="the MS's IPv4 home address")
    trace.add_argument("--mac", action="append", default=[], help="the MS's MAC address")
    trace.add_argument("--dialect", choices=sorted(DIALECTS), default="draft")
    trace.add_argument("--count", type=int, default=100_000, help="-i: at most N frames")
    trace.add_argument("--duration", type=float, default=300.0, help="-i: at most S seconds")
    trace.add_argument("-w", "--write", type=Path, help="-i: also save the capture (pcap)")
    trace.add_argument("--json", action="store_true", help="one JSON object a line")
    trace.add_argument(
        "--tshark", action="store_true", help="then Wireshark's dissection of the same frames"
    )


def _in_namespace(args: argparse.Namespace) -> int:
    """Run this same live trace inside ``--netns``, without that option."""
    argv = ["trace", "-i", args.interface, "--dialect", args.dialect]
    argv += ["--count", str(args.count), "--duration", str(args.duration)]
    for option in ("nai", "hoa", "mac"):
        for item in getattr(args, option):
            argv += [f"--{option}", item]
    if args.write is not None:
        argv += ["-w", str(args.write.resolve())]
    argv += [flag for flag in ("--json", "--tshark") if getattr(args, flag[2:])]
    exec_in_namespace(args.netns, argv)


def trace_main(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    if args.netns and args.interface:
        return _in_namespace(args)
    try:
        follow = Follow(
            args.nai,
            [IPv4Address(h) for h in args.hoa],
            [MacAddress.parse(m) for m in args.mac],
        )
    except ValueError as exc:
        raise TraceError(str(exc)) from exc
    shown: list[int] = []
    skipped = 0
    with contextlib.ExitStack() as stack:
        saved: Path | None = args.read
        if args.read is not None:
            try:
                stream = stack.enter_context(args.read.open("rb"))
            except OSError as exc:
                raise TraceError(f"{args.read}: {exc.strerror}") from exc
            frames: Iterable[Frame] = read_capture(stream)
        else:
            writer = None
            path = args.write
            if path is None and args.tshark:
                temp = stack.enter_context(tempfile.TemporaryDirectory(prefix="netlmm-trace-"))
                path = Path(temp) / "capture.pcap"
            if path is not None:
                handle = stack.enter_context(path.open("wb"))
                writer = PcapWriter(handle)
                saved = path
            frames = live_frames(args.interface, args.count, args.duration, writer)
        start: float | None = None
        if args.read is None:  # a live capture ends cleanly on SIGTERM as on Ctrl-C
            signal.signal(signal.SIGTERM, _interrupt)
        records: list[Record] = []
        try:
            for frame in frames:
                try:
                    record = decode_frame(frame, args.dialect)
                except (ValueError, IndexError, struct.error):
                    skipped += 1
                    continue
                if record is None:
                    continue
                if args.read is not None:
                    records.append(record)  # a file: printed once every identifier is known
                    continue
                if follow(record):
                    start = record.time if start is None else start
                    shown.append(record.frame)
                    print(record.render(start, args.json), file=out, flush=True)
        except KeyboardInterrupt:
            pass
        if records:
            follow.settle(records)
            for record in records:
                if follow(record):
                    start = record.time if start is None else start
                    shown.append(record.frame)
                    print(record.render(start, args.json), file=out)
        if skipped:
            print(f"({skipped} frames did not decode)", file=sys.stderr)
        if args.tshark and shown and saved is not None:
            return tshark_dissect(saved, shown, out)
    if not shown:
        print("(no matching signaling or DHCP)", file=sys.stderr)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


__all__ = ["Follow", "Record", "TraceError", "add_trace_parser", "decode_frame", "trace_main"]
