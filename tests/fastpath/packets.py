"""Small packet builders for the fastpath tests (struct only: no dependency on router.wire)."""

from __future__ import annotations

import struct

PSEUDO_MAC = bytes.fromhex("020000000001")
MS_MAC = bytes.fromhex("02aabbccdd01")
BROADCAST = b"\xff" * 6
DMPA = bytes.fromhex("20010db8000000000000000000000001")  # 2001:db8::1
DLMAP = bytes.fromhex("20010db8000000000000000000000002")  # 2001:db8::2
OTHER6 = bytes.fromhex("20010db8000000000000000000000099")
HOA = 0xC0000202  # 192.0.2.2
HOA2 = 0xC0000203  # 192.0.2.3
GATEWAY = 0xC0000201  # 192.0.2.1
CN = 0xCB007101  # 203.0.113.1


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def header_checksum_ok(ip: bytes) -> bool:
    ihl = (ip[0] & 0x0F) * 4
    return checksum(ip[:ihl]) == 0


def ipv4(
    src: int = HOA,
    dst: int = CN,
    proto: int = 17,
    payload: bytes = b"x" * 8,
    *,
    ttl: int = 64,
    tos: int = 0,
    df: bool = False,
    options: bytes = b"",
    frag: int = 0,
) -> bytes:
    ihl = 5 + len(options) // 4
    flags = (0x4000 if df else 0) | frag
    hdr = (
        struct.pack(
            "!BBHHHBBHII",
            0x40 | ihl,
            tos,
            ihl * 4 + len(payload),
            0x1234,
            flags,
            ttl,
            proto,
            0,
            src,
            dst,
        )
        + options
    )
    cs = checksum(hdr)
    return hdr[:10] + struct.pack("!H", cs) + hdr[12:] + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp_echo(payload: bytes = b"ping") -> bytes:
    return struct.pack("!BBHHH", 8, 0, 0, 1, 1) + payload


def eth(
    payload: bytes, dst: bytes = PSEUDO_MAC, src: bytes = MS_MAC, ethertype: int = 0x0800
) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def ipv6(
    payload: bytes, src: bytes = DLMAP, dst: bytes = DMPA, nh: int = 4, tc: int = 0, hop: int = 64
) -> bytes:
    return (
        struct.pack("!IHBB", 0x60000000 | (tc << 20), len(payload), nh, hop) + src + dst + payload
    )


def dstopts(nh: int, options: bytes) -> bytes:
    """A Destination Options header holding ``options``, padded to a multiple of 8 with PadN."""
    body = options
    pad = (-(len(body) + 2)) % 8
    if pad == 1:
        body += b"\x00"
    elif pad:
        body += bytes([1, pad - 2]) + bytes(pad - 2)
    return bytes([nh, (len(body) + 2) // 8 - 1]) + body


ENCAP_LIMIT = bytes([4, 1, 4])  # RFC 2473 4.1.1: Tunnel Encapsulation Limit = 4
