"""Run Wireshark's dissector over what we encode: pcap writing, PDML and field reading.

``tshark -T pdml`` is the ``-V`` decode tree in XML: every field with its filter name, its
displayed value (``show``) and its raw bytes (``value``), which is what the oracle compares.
:func:`fields` is ``tshark -T fields``: the values of named fields, one row per packet (the
oracle tests, and the captures of the netns tests).
"""

from __future__ import annotations

import struct
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IP; the version nibble says IPv4 or IPv6
_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_IPV6 = struct.Struct("!IHBB16s16s")


def ipv6_packet(src: IPv6Address, dst: IPv6Address, next_header: int, payload: bytes) -> bytes:
    """A minimal IPv6 packet (no extension headers) around ``payload``."""
    return _IPV6.pack(6 << 28, len(payload), next_header, 64, src.packed, dst.packed) + payload


def write_pcap(path: Path, packets: list[bytes], linktype: int = LINKTYPE_RAW) -> None:
    """A classic pcap file of ``packets`` (raw IP, or Ethernet frames with LINKTYPE_ETHERNET)."""
    with path.open("wb") as f:
        f.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for index, packet in enumerate(packets):
            f.write(_RECORD.pack(index, 0, len(packet), len(packet)))
            f.write(packet)


@dataclass(frozen=True)
class Field:
    name: str
    showname: str
    show: str
    value: str


@dataclass(frozen=True)
class Dissection:
    fields: list[Field]
    #: Whether Wireshark flagged the packet as malformed anywhere.
    malformed: bool


def dissect(tshark: str, path: Path, proto: str) -> list[Dissection]:
    """For each packet, the fields below protocol ``proto`` in tree order (plus expert info)."""
    result = subprocess.run(
        [tshark, "-n", "-r", str(path), "-T", "pdml"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    packets = []
    for packet in ET.fromstring(result.stdout).iter("packet"):
        fields: list[Field] = []
        for node in packet.iter("proto"):
            if node.get("name") == proto:
                fields.extend(
                    Field(
                        f.get("name", ""),
                        f.get("showname", ""),
                        f.get("show", ""),
                        f.get("value", ""),
                    )
                    for f in node.iter("field")
                    if f.get("name")
                )
        malformed = any(
            (node.get("name") or "").startswith("_ws.malformed") for node in packet.iter()
        )
        packets.append(Dissection(fields, malformed))
    return packets


#: The fields :func:`tcp_checksum_valid` reads (add them to a :func:`fields` call's ``names``,
#: with ``{"tcp.check_checksum": "TRUE"}`` among its ``prefs``).
TCP_CHECKSUM_FIELDS = ("tcp.checksum.status", "tcp.checksum.ffff")


def tcp_checksum_valid(row: Mapping[str, str]) -> bool:
    """Whether a :func:`fields` row's TCP checksum is valid: Good (status 1), or the one Bad
    that is not: 0xffff where Wireshark computes 0x0000 (its ``tcp.checksum.ffff``). In one's
    complement both are zero, and a receiver that sums the field in, as RFC 1071 says, accepts
    either (RFC 1624). The kernel itself writes 0xffff when it completes a checksum in software
    and the sum folds to 0 (``skb_checksum_help``: ``csum_fold(csum) ?: CSUM_MANGLED_0``), so
    about one segment in 65,536 leaves a transport with its checksum offload off that way."""
    status = row["tcp.checksum.status"]
    return status == "1" or (status == "0" and row["tcp.checksum.ffff"] == "1")


def fields(
    tshark: str,
    pcap: Path,
    names: Sequence[str],
    display_filter: str | None = None,
    prefs: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> list[dict[str, str]]:
    """One dict per packet (those ``display_filter`` keeps): field name -> value, several
    occurrences joined by ``,`` in the order tshark dissects them (outer header first).
    ``prefs`` are ``-o`` preferences, e.g. ``{"ip.check_checksum": "TRUE"}``; ``tshark`` is the
    ``tshark_path`` fixture's binary."""
    command = [tshark, "-r", str(pcap), "-n"]
    if display_filter is not None:
        command += ["-Y", display_filter]
    for name, value in (prefs or {}).items():
        command += ["-o", f"{name}:{value}"]
    command += ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
    for name in names:
        command += ["-e", name]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)
    return [dict(zip(names, line.split("|"), strict=True)) for line in done.stdout.splitlines()]
