"""Packet capture for ``netlmm trace``: frames from a capture file or a live interface, a pcap
writer, and the two programs a trace may hand over to (``ip netns exec``, ``tshark``).

Sources: a pcap or pcapng file (Ethernet, raw IP, Linux cooked v1/v2) or an ``AF_PACKET``
socket on an interface, bounded in frames and time. What the frames mean is
:mod:`router.app.trace`'s business.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, NoReturn

# pcap link types (tcpdump.org/linktypes.html)
LINK_ETHERNET, LINK_RAW, LINK_SLL, LINK_IPV4, LINK_IPV6, LINK_SLL2 = 1, 101, 113, 228, 229, 276
ETH_P_ALL = 0x0003
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772  # frames with an all-zero Ethernet header
MAX_FRAME = 65535
TSHARK_FRAMES = 1000  # --tshark dissects at most this many (the first) of the frames shown


class TraceError(Exception):
    """A trace that cannot run: unreadable file, unknown link type, no such interface."""


@dataclass(frozen=True, slots=True)
class Frame:
    time: float
    link: int
    data: bytes
    number: int  # 1-based, as Wireshark numbers frames


# --- capture files ----------------------------------------------------------------------------


def read_capture(stream: BinaryIO) -> Iterator[Frame]:
    """Frames of a pcap or pcapng stream (TraceError if it is neither)."""
    head = stream.read(4)
    if len(head) < 4:
        raise TraceError("empty capture")
    if head == b"\x0a\x0d\x0d\x0a":
        yield from _pcapng(stream, head)
    else:
        yield from _pcap(stream, head)


def _pcap(stream: BinaryIO, magic: bytes) -> Iterator[Frame]:
    formats = {
        b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
        b"\xa1\xb2\xc3\xd4": (">", 1e-6),
        b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
        b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    }
    if magic not in formats:
        raise TraceError("not a pcap or pcapng file")
    order, unit = formats[magic]
    rest = stream.read(20)
    if len(rest) < 20:
        raise TraceError("truncated pcap header")
    link = struct.unpack(order + "HHiIII", rest)[5] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    number = 0
    while True:
        header = stream.read(16)
        if len(header) < 16:
            return
        seconds, fraction, caplen, _ = record.unpack(header)
        data = stream.read(caplen)
        if len(data) < caplen:
            return
        number += 1
        yield Frame(seconds + fraction * unit, link, data, number)


def _pcapng(stream: BinaryIO, first: bytes) -> Iterator[Frame]:
    order = "<"
    links: list[tuple[int, float]] = []
    number = 0
    block_type = struct.unpack("<I", first)[0]
    while True:
        raw_length = stream.read(4)
        if len(raw_length) < 4:
            return
        if block_type == 0x0A0D0D0A:
            bom = stream.read(4)
            order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            length = struct.unpack(order + "I", raw_length)[0]
            body = stream.read(length - 12)
            links = []
        else:
            length = struct.unpack(order + "I", raw_length)[0]
            body = stream.read(length - 8)
        if length < 12 or len(body) < length - 12:
            return
        if block_type == 1 and len(body) >= 8:  # interface description
            link = struct.unpack_from(order + "H", body, 0)[0]
            links.append((link, _ng_resolution(body[8:], order)))
        elif block_type == 6 and len(body) >= 24:  # enhanced packet
            interface, high, low, caplen, _ = struct.unpack_from(order + "IIIII", body, 0)
            if interface < len(links):
                link, unit = links[interface]
                number += 1
                stamp = ((high << 32) | low) * unit
                yield Frame(stamp, link, bytes(body[20 : 20 + caplen]), number)
        elif block_type == 3 and len(body) >= 8 and links:  # simple packet
            number += 1
            yield Frame(0.0, links[0][0], bytes(body[4:-4]), number)
        raw_type = stream.read(4)
        if len(raw_type) < 4:
            return
        block_type = struct.unpack(order + "I", raw_type)[0]


def _ng_resolution(options: bytes, order: str) -> float:
    pos = 0
    while pos + 4 <= len(options):
        code, size = struct.unpack_from(order + "HH", options, pos)
        if code == 0:
            break
        if code == 9 and size >= 1:  # if_tsresol
            value = options[pos + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0**-value
        pos += 4 + (size + 3) // 4 * 4
    return 1e-6


class PcapWriter:
    """A classic pcap file (microseconds); its link type is the first frame's."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.link: int | None = None

    def write(self, frame: Frame) -> None:
        if self.link is None:
            self.link = frame.link
            header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, MAX_FRAME, frame.link)
            self.out.write(header)
        if frame.link != self.link:
            return  # one link type per file
        seconds = int(frame.time)
        micros = int((frame.time - seconds) * 1e6)
        data = frame.data
        self.out.write(struct.pack("<IIII", seconds, micros, len(data), len(data)) + data)
        self.out.flush()


# --- live ------------------------------------------------------------------------------------


def live_frames(
    interface: str, count: int, duration: float, save: PcapWriter | None = None
) -> Iterator[Frame]:
    """Frames from ``interface`` (AF_PACKET, CAP_NET_RAW), at most ``count`` and ``duration``."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except PermissionError as exc:
        raise TraceError("a live capture needs CAP_NET_RAW (run as root)") from exc
    try:
        try:
            sock.bind((interface, 0))
        except OSError as exc:
            raise TraceError(f"interface {interface}: {exc.strerror}") from exc
        print(f"capturing on {interface}", file=sys.stderr, flush=True)
        deadline = time.monotonic() + duration
        number = 0
        while number < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(min(left, 0.5))
            try:
                data, address = sock.recvfrom(MAX_FRAME)
            except TimeoutError:
                continue
            number += 1
            link = LINK_ETHERNET if address[3] in (ARPHRD_ETHER, ARPHRD_LOOPBACK) else LINK_RAW
            frame = Frame(time.time(), link, data, number)
            if save is not None:
                save.write(frame)
            yield frame
    finally:
        sock.close()


# --- other programs ---------------------------------------------------------------------------


def exec_in_namespace(netns: str, argv: Sequence[str]) -> NoReturn:
    """Become ``netlmm ARGV`` inside network namespace ``netns`` (``ip netns exec``): exec, not
    a child, so the same PID captures and Ctrl-C and SIGTERM reach it directly."""
    command = ["ip", "netns", "exec", netns, sys.executable, "-m", "router", *argv]
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        raise TraceError(f"--netns: cannot run ip netns exec: {exc.strerror}") from exc


def tshark_dissect(path: Path, frames: list[int], out: IO[str]) -> int:
    """Wireshark's dissection of ``frames`` (numbers) of capture ``path``, written to ``out``;
    tshark's exit status."""
    tshark = shutil.which("tshark")
    if tshark is None:
        raise TraceError("--tshark: tshark is not installed")
    # "a || b" rather than a set: the set syntax changed between Wireshark 3 and 4
    wanted = " || ".join(f"frame.number == {n}" for n in frames[:TSHARK_FRAMES])
    argv = [
        tshark,
        "-n",
        "-r",
        str(path),
        "-Y",
        wanted,
        "-O",
        "ipv6,dhcp",
    ]  # Mobile IPv6 is in the IPv6 tree
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    out.write(result.stdout)
    if result.returncode != 0:
        print(result.stderr.strip(), file=sys.stderr)
    return result.returncode
