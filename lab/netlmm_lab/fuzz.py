"""``netlmm lab fuzz``: a fuzz campaign against a running DLMAP and DMPA, over their real sockets.

The lab domain runs (``netlmm run`` in each role) with one real MS attached through DMPA 1 and
a ping stream MS -> CN. Meanwhile, from the lab's own namespaces, the campaign sends a bounded
number of inputs (default 1,000,000), paced at a bounded rate:

* ``mh.dlmap`` / ``mh.dmpa``: Mobility Header messages, IPv6 next header 135, whole packets
  written with a packet socket on the transport bridge (namespace ``tr``), so the source can be
  a configured peer's address (a DMPA's towards the DLMAP, the DLMAP's towards DMPA 1) and the
  messages get past the source check (a tenth of the DLMAP's come from a stranger instead).
  They start from valid encodings in both dialects (PBU, PBA, BRI, BRA, heartbeat request and
  response, BRR, Binding Error, built by the real cores in memory) and are mutated: bits,
  bytes, lengths, the header length, the MH type, option types and lengths, truncation,
  extension, splicing, or are random bytes. The MH checksum is correct
  most of the time (the kernel drops the others before the appliance sees them).
* ``tunnel.dlmap`` / ``tunnel.dmpa``: IPv4-in-IPv6 (next header 4) packets from the peer's
  address, inner packets mutated from UDP, ICMP, TCP and DHCP seeds.
* ``access``: Ethernet frames into the DMPA's access link, from the base station's bridge
  (namespace ``b1``, packet socket): ARP, DHCP, IPv4 to the gateway and the CN, ICMP, random
  EtherTypes and garbage, from a small set of made-up MACs (never the MS's own).

Frames that would hit the real MS instead of the DMPA are kept away from it (no broadcast ARP,
no made-up source MAC equal to the MS's): the campaign tests the appliance, not the MS's stack.

At the end: both processes alive, their ``internal_error`` counter (the dispatch boundary in
:mod:`router.app.runner`) 0, the MS's ping loss, inputs per kind and rates. Everything is torn
down, on error too.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from netlmm_lab import netns
from netlmm_lab.configs import GATEWAY, MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.errors import LabError
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import BackgroundPing
from netlmm_lab.topology import (
    BRIDGE,
    CN_ADDRESS,
    DLMAP_ADDRESS,
    DMPA_ADDRESSES,
    HOA_NETWORK,
    TRANSPORT_IF,
    Lab,
)
from router.app import config as app_config
from router.app.settings import DMPASettings
from router.core.dlmap import DLMAP, DLMAPConfig
from router.core.pool import HoAPool
from router.wire.arp import ArpOp, ArpPacket
from router.wire.dhcp import BootpOp, DhcpMessage, DhcpOption
from router.wire.dialect import DRAFT, RFC5844, Dialect
from router.wire.ethernet import EthernetFrame, EtherType, MacAddress
from router.wire.icmp import IcmpEcho
from router.wire.ipv4 import IPv4Packet
from router.wire.mh import (
    BindingError,
    BindingRefreshRequest,
    BindingRevocationAck,
    BindingUpdate,
    Heartbeat,
    MobilityMessage,
    fill_checksum,
)
from router.wire.mh_options import (
    AccessTechnologyTypeOption,
    HandoffIndicatorOption,
    IPv4HomeAddressRequest,
    MobileNodeIdentifier,
    SeedIPv4HomeAddress,
    Timestamp,
)
from router.wire.udp import UdpDatagram

NAI = "ms@example.org"
KINDS = ("mh.dlmap", "mh.dmpa", "tunnel.dlmap", "tunnel.dmpa", "access")
#: Share of each kind in a campaign (MH inputs are what the control plane parses: the most).
WEIGHTS = (30, 25, 10, 10, 25)
DEFAULT_INPUTS = 1_000_000
DEFAULT_RATE = 25_000
ETH_P_IPV6 = 0x86DD
IPPROTO_MH = 135
IPPROTO_IPIP = 4
PING_INTERVAL = 0.05
#: An address in the transport network that is no configured peer (a tenth of the DLMAP's
#: inputs come from it: the "not a known DMPA" paths).
STRANGER = IPv6Address("2001:db8:100::99")


# --- seeds: valid encodings, made by the real cores --------------------------------------------


def mh_seeds(wall: float | None = None) -> dict[str, list[bytes]]:
    """Valid MH messages in both dialects: ``to_dlmap`` (what a DMPA sends) and ``to_dmpa``
    (what the DLMAP sends), the replies produced by an in-memory DLMAP core."""
    wall = time.time() if wall is None else wall
    to_dlmap: list[bytes] = []
    to_dmpa: list[bytes] = []
    for dialect in (DRAFT, RFC5844):
        core = DLMAP(
            DLMAPConfig(
                DLMAP_ADDRESS,
                GATEWAY,
                {a: dialect for a in DMPA_ADDRESSES.values()},
                prefix_length=HOA_NETWORK.prefixlen,
            ),
            HoAPool([(IPv4Address("192.0.2.200"), IPv4Address("192.0.2.250"))], {}, 600.0),
        )
        now = 100.0
        steps = ((DMPA_ADDRESSES[1], 900), (DMPA_ADDRESSES[2], 900), (DMPA_ADDRESSES[2], 0))
        for n, (dmpa, lifetime) in enumerate(steps, 1):
            pbu = _pbu(dialect, "fuzz@fuzz.example", n, lifetime, wall + n)
            to_dlmap.append(pbu.encode())
            actions = core.receive(pbu, dmpa, now, wall + n)
            actions += core.handle_timer(now + 1.0, wall + n + 1.0)  # a handover's PBA, BRIs
            for action in actions:
                message = getattr(action, "message", None)
                if isinstance(message, MobilityMessage):
                    to_dmpa.append(message.encode())
            now += 2.0
        to_dlmap.append(BindingRevocationAck(0, 1, 0x8000).encode())
    to_dlmap.append(Heartbeat(7, 0).encode())
    to_dlmap.append(Heartbeat(7, 1).encode())
    to_dlmap.append(BindingError(2).encode())
    to_dmpa.append(Heartbeat(9, 0).encode())
    to_dmpa.append(Heartbeat(9, 1).encode())
    to_dmpa.append(BindingRefreshRequest().encode())
    return {"to_dlmap": to_dlmap, "to_dmpa": _unique(to_dmpa)}


def _unique(items: list[bytes]) -> list[bytes]:
    return list(dict.fromkeys(items))


def _pbu(dialect: Dialect, nai: str, seq: int, lifetime: int, wall: float) -> BindingUpdate:
    mnid = MobileNodeIdentifier.from_nai(nai)
    if dialect is DRAFT:
        options: tuple[Any, ...] = (mnid, SeedIPv4HomeAddress(0, IPv4Address("0.0.0.0")))
    else:
        options = (
            mnid,
            HandoffIndicatorOption(1),
            AccessTechnologyTypeOption(3),
            Timestamp.from_unix(wall),
            IPv4HomeAddressRequest(IPv4Address("0.0.0.0")),
        )
    return BindingUpdate(seq, dialect.pbu_flags(), lifetime // 4, options)


def inner_seeds() -> list[bytes]:
    """IPv4 packets for the tunnels: UDP, ICMP echo, a TCP SYN, a DHCP request."""
    hoa, cn = IPv4Address("192.0.2.150"), CN_ADDRESS
    udp = UdpDatagram(40000, 9, b"fuzz" * 8).encode(hoa, cn)
    echo = IcmpEcho(1, 1, b"x" * 32).encode()
    syn = struct.pack("!HHIIBBHHH", 40001, 80, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    dhcp = _dhcp_discover(bytes.fromhex("024e4c0000ee"))
    return [
        IPv4Packet(hoa, cn, 17, udp).encode(),
        IPv4Packet(hoa, cn, 1, echo).encode(),
        IPv4Packet(hoa, cn, 6, syn).encode(),
        IPv4Packet(
            IPv4Address("0.0.0.0"),
            IPv4Address("255.255.255.255"),
            17,
            UdpDatagram(68, 67, dhcp).encode(
                IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255")
            ),
        ).encode(),
    ]


def _dhcp_discover(mac: bytes) -> bytes:
    return DhcpMessage(
        BootpOp.BOOTREQUEST,
        0x1234,
        chaddr=mac,
        options=(DhcpOption(53, b"\x01"), DhcpOption(55, b"\x01\x03\x06")),
    ).encode()


def access_seeds(macs: list[MacAddress], pseudo: MacAddress) -> list[bytes]:
    """Ethernet frames an MS might send: ARP for the gateway, DHCP, pings, traffic to the CN,
    and odd EtherTypes. ``macs`` are the made-up sources; unicast goes to ``pseudo``."""
    out: list[bytes] = []
    broadcast = MacAddress(b"\xff" * 6)
    gw = GATEWAY
    for mac in macs[:4]:
        src_ip = IPv4Address(int(HOA_NETWORK.network_address) + 200 + mac.packed[-1] % 50)
        arp = ArpPacket(ArpOp.REQUEST, mac, src_ip, MacAddress(bytes(6)), gw).encode()
        out.append(EthernetFrame(pseudo, mac, EtherType.ARP, arp).encode())
        dhcp = _dhcp_discover(mac.packed)
        udp = UdpDatagram(68, 67, dhcp).encode(
            IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255")
        )
        ip = IPv4Packet(IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255"), 17, udp).encode()
        out.append(EthernetFrame(broadcast, mac, EtherType.IPV4, ip).encode())
        echo = IPv4Packet(src_ip, gw, 1, IcmpEcho(7, 1, b"p" * 24).encode()).encode()
        out.append(EthernetFrame(pseudo, mac, EtherType.IPV4, echo).encode())
        to_cn = UdpDatagram(40000, 9, b"d" * 40).encode(src_ip, CN_ADDRESS)
        out.append(
            EthernetFrame(
                pseudo, mac, EtherType.IPV4, IPv4Packet(src_ip, CN_ADDRESS, 17, to_cn).encode()
            ).encode()
        )
        out.append(EthernetFrame(pseudo, mac, 0x86DD, bytes(48)).encode())
        # a VLAN-tagged ARP, written by hand (tag 0x8100, VID 5, then the real EtherType)
        out.append(pseudo.packed + mac.packed + b"\x81\x00\x00\x05\x08\x06" + arp)
    return out


# --- mutation ---------------------------------------------------------------------------------

INTERESTING = (0, 1, 2, 4, 7, 8, 0x10, 0x1F, 0x20, 0x3F, 0x40, 0x7F, 0x80, 0xFE, 0xFF)


def mh_input(seed: bytes, rng: random.Random) -> bytes:
    """A Mobility Header to send: ``seed`` mutated, or now and then random bytes."""
    return mutate(seed, rng, mh=True) if rng.random() < 0.97 else rng.randbytes(rng.randrange(64))


def mutate(data: bytes, rng: random.Random, *, start: int = 0, mh: bool = False) -> bytes:
    """One to four mutations of ``data`` at or after ``start`` (bytes before it stay: an
    Ethernet header, say). ``mh``: also MH-aware ones (header length, type, options)."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        if len(buf) <= start:
            buf += rng.randbytes(rng.randint(1, 16))
        op = rng.randrange(11 if mh else 8)
        pos = rng.randrange(start, len(buf))
        if op == 0:  # flip a bit
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1:  # an interesting byte
            buf[pos] = rng.choice(INTERESTING)
        elif op == 2:  # a random byte
            buf[pos] = rng.randrange(256)
        elif op == 3:  # truncate
            del buf[max(start, pos) :]
        elif op == 4:  # extend
            buf += rng.randbytes(rng.randint(1, 64))
        elif op == 5:  # insert
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 6:  # delete a run
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 7:  # duplicate a chunk
            chunk = buf[pos : pos + rng.randint(1, 32)]
            at = rng.randrange(start, len(buf) + 1)
            buf[at:at] = chunk
        elif op == 8 and len(buf) > 1:  # the MH header length
            buf[1] = rng.choice((0, 1, 2, 3, len(buf) // 8 - 1, rng.randrange(256))) & 0xFF
        elif op == 9 and len(buf) > 2:  # the MH type
            buf[2] = rng.randrange(20) if rng.random() < 0.8 else rng.randrange(256)
        elif op == 10:  # an option TLV somewhere in the body (type, length, data)
            at = rng.randrange(min(len(buf), 12), len(buf) + 1) if len(buf) > 12 else len(buf)
            kind = rng.randrange(60) if rng.random() < 0.9 else rng.randrange(256)
            length = rng.choice((0, 1, 2, 4, 6, 8, 16, 255, rng.randrange(256)))
            buf[at:at] = bytes((kind, length)) + rng.randbytes(min(length, rng.randrange(40)))
    if mh and len(buf) >= 8 and rng.random() < 0.6:
        # keep the framing right most of the time, so the parser's deeper parts are reached
        buf += bytes(-len(buf) % 8)
        buf[1] = min(255, len(buf) // 8 - 1)
        if buf[0] != 59 and rng.random() < 0.9:
            buf[0] = 59
    return bytes(buf)


# --- packets ----------------------------------------------------------------------------------


def ipv6(src: IPv6Address, dst: IPv6Address, nh: int, payload: bytes, hlim: int = 64) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), nh, hlim) + src.packed + dst.packed + payload


def mh_packet(src: IPv6Address, dst: IPv6Address, mh: bytes, good_checksum: bool) -> bytes:
    buf = bytearray(mh)
    if len(buf) >= 6 and good_checksum:
        fill_checksum(buf, src, dst)
    return ipv6(src, dst, IPPROTO_MH, bytes(buf))


# --- sockets in the lab's namespaces -----------------------------------------------------------


def packet_socket(namespace: str, ifname: str) -> socket.socket:
    with netns.enter(namespace):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # send only
        sock.bind((ifname, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    return sock


def link_mac(lab: Lab, short: str, ifname: str) -> MacAddress:
    out = lab.exec(short, ["ip", "-j", "link", "show", ifname]).stdout
    return MacAddress.parse(json.loads(out)[0]["address"])


# --- the campaign -----------------------------------------------------------------------------


@dataclass
class Targets:
    """Where each kind goes: a socket and the Ethernet header it is written with."""

    transport: socket.socket
    access: socket.socket
    eth_dlmap: bytes  # dst = the DLMAP's tr0, src = a made-up MAC
    eth_dmpa: bytes  # dst = DMPA 1's tr0
    ms_mac: MacAddress
    pseudo_mac: MacAddress


@dataclass
class Campaign:
    inputs: int
    rate: float
    seed: int
    sent: Counter[str] = field(default_factory=Counter)
    send_errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def run_campaign(
    targets: Targets,
    campaign: Campaign,
    *,
    stop: Callable[[], bool] = lambda: False,
) -> Campaign:
    """Send ``campaign.inputs`` inputs, at most ``campaign.rate`` a second (bounded in count
    and so in time); ``stop()`` is asked every thousand inputs (a process died: no point)."""
    rng = random.Random(campaign.seed)
    seeds = mh_seeds()
    inner = inner_seeds()
    macs = [MacAddress(bytes((0x02, 0x66, 0x7A, 0, 0, i))) for i in range(1, 33)]
    macs = [m for m in macs if m != targets.ms_mac]
    frames = access_seeds(macs, targets.pseudo_mac)
    dlmap, dmpa1, dmpa2 = DLMAP_ADDRESS, DMPA_ADDRESSES[1], DMPA_ADDRESSES[2]
    sources = (dmpa1, dmpa2, STRANGER)  # mostly configured peers: past the source check
    kinds = rng.choices(range(len(KINDS)), WEIGHTS, k=4096)
    began = time.monotonic()
    batch = 1000
    for n in range(campaign.inputs):
        kind = KINDS[kinds[n % 4096]]
        if kind == "mh.dlmap":
            src = rng.choices(sources, (45, 45, 10))[0]
            data = mh_input(rng.choice(seeds["to_dlmap"]), rng)
            pkt = targets.eth_dlmap + mh_packet(src, dlmap, data, rng.random() < 0.97)
            sock = targets.transport
        elif kind == "mh.dmpa":
            data = mh_input(rng.choice(seeds["to_dmpa"]), rng)
            pkt = targets.eth_dmpa + mh_packet(dlmap, dmpa1, data, rng.random() < 0.97)
            sock = targets.transport
        elif kind == "tunnel.dlmap":
            src = rng.choices(sources, (45, 45, 10))[0]
            data = mutate(rng.choice(inner), rng)
            pkt = targets.eth_dlmap + ipv6(src, dlmap, IPPROTO_IPIP, data)
            sock = targets.transport
        elif kind == "tunnel.dmpa":
            data = mutate(rng.choice(inner), rng)
            pkt = targets.eth_dmpa + ipv6(dlmap, dmpa1, IPPROTO_IPIP, data)
            sock = targets.transport
        else:
            pkt = _access_frame(rng, frames, macs, targets)
            sock = targets.access
        try:
            sock.send(pkt)
            campaign.sent[kind] += 1
        except OSError as exc:  # ENOBUFS under a burst: counted, the input is not sent
            campaign.send_errors[f"{kind}.{type(exc).__name__}"] += 1
        if (n + 1) % batch == 0:
            if stop():
                break
            ahead = (n + 1) / campaign.rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
    campaign.seconds = time.monotonic() - began
    return campaign


def _access_frame(
    rng: random.Random, frames: list[bytes], macs: list[MacAddress], targets: Targets
) -> bytes:
    if rng.random() < 0.05:  # garbage after a plausible header, odd EtherType
        body = rng.randbytes(rng.randrange(0, 200))
        head = targets.pseudo_mac.packed + rng.choice(macs).packed + rng.randbytes(2)
        frame = head + body
    else:
        frame = mutate(rng.choice(frames), rng, start=12 if rng.random() < 0.9 else 6)
    if len(frame) < 14:
        frame += bytes(14 - len(frame))
    # Keep the made-up traffic off the real MS: never its MAC as a source (the bridges would
    # learn it on the wrong port), no broadcast ARP (it would rewrite the MS's neighbour cache).
    src = frame[6:12]
    if src == targets.ms_mac.packed or src[0] & 1:
        frame = frame[:6] + rng.choice(macs).packed + frame[12:]
    if frame[0] & 1 and frame[12:14] in (b"\x08\x06", b"\x81\x00"):
        frame = targets.pseudo_mac.packed + frame[6:]
    return frame


# --- the whole run ----------------------------------------------------------------------------


@dataclass
class FuzzResult:
    ok: bool
    inputs: int
    sent: dict[str, int]
    send_errors: dict[str, int]
    seconds: float
    rate: float
    alive: dict[str, bool]
    internal_error: dict[str, int]
    handler_error: dict[str, int]
    ping: dict[str, Any]
    counters: dict[str, dict[str, int]]
    problems: list[str]

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def fuzz(
    *,
    inputs: int = DEFAULT_INPUTS,
    rate: float = DEFAULT_RATE,
    seed: int = 1,
    dialect: str = "draft",
    fastpath: str = "auto",
    max_loss_pct: float = 20.0,
    quiet: bool = False,
) -> FuzzResult:
    """Build the lab, attach the MS, run the campaign with a ping stream, check, tear down."""
    if inputs < 1 or rate <= 0:
        raise ValueError("inputs and rate must be positive")

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    with Lab() as lab:
        # insecure = yes on purpose: forged messages from the peers' addresses must reach the
        # cores and codecs, not stop at the RFC 4285 check (tests/netns/test_appliance_auth.py
        # covers that check; the fuzz covers what lies behind it).
        domain = Domain(
            lab,
            [MobileProfile(NAI, lab.ms_mac(), "dhcp")],
            dialect=dialect,
            fastpath=fastpath,
            auth=False,
        )
        try:
            return _fuzz_in(lab, domain, inputs, rate, seed, max_loss_pct, say)
        finally:
            domain.stop()


def _fuzz_in(
    lab: Lab,
    domain: Domain,
    inputs: int,
    rate: float,
    seed: int,
    max_loss_pct: float,
    say: Callable[[str], None],
) -> FuzzResult:
    say(f"lab {lab.prefix}: DLMAP, two DMPAs, an MS, a CN; starting the appliance")
    domain.start()
    client = DhcpClient(lab)
    client.start(tries=10)
    lease = client.wait_lease(timeout=30.0)
    wait_until(lambda: domain.binding(NAI) is not None, 15.0, "the MS's binding")
    say(f"MS has {lease.address}; ping stream MS -> CN every {PING_INTERVAL * 1000:.0f} ms")
    settings, _ = app_config.load(domain.config("dmpa1"))
    if not isinstance(settings, DMPASettings):
        raise LabError("dmpa1.ini is not a DMPA's")
    pseudo = settings.pseudo_mac
    fuzz_mac = bytes.fromhex("02667a0000ff")
    targets = Targets(
        transport=packet_socket(lab.ns("tr"), BRIDGE),
        access=packet_socket(lab.ns("b1"), BRIDGE),
        eth_dlmap=link_mac(lab, "lm", TRANSPORT_IF).packed + fuzz_mac + b"\x86\xdd",
        eth_dmpa=link_mac(lab, "m1", TRANSPORT_IF).packed + fuzz_mac + b"\x86\xdd",
        ms_mac=MacAddress.parse(lab.ms_mac()),
        pseudo_mac=pseudo,
    )
    budget = inputs / rate + 30
    pinger = BackgroundPing(lab, "ms", str(CN_ADDRESS), interval=PING_INTERVAL, seconds=budget)
    roles = ("dlmap", "dmpa1")
    try:
        time.sleep(0.5)  # some pings before the first input, for a baseline
        say(f"sending {inputs} inputs at up to {rate:.0f}/s (seed {seed})")
        campaign = run_campaign(
            targets,
            Campaign(inputs, rate, seed),
            stop=lambda: any(domain.processes[r].poll() is not None for r in roles),
        )
        time.sleep(1.0)  # let the queues drain; pings after the last input count too
    finally:
        ping = pinger.stop()
        targets.transport.close()
        targets.access.close()
    problems: list[str] = []
    alive = {r: domain.processes[r].poll() is None for r in ("dlmap", "dmpa1", "dmpa2")}
    internal: dict[str, int] = {}
    handler: dict[str, int] = {}
    counters: dict[str, dict[str, int]] = {}
    for role in roles:
        if not alive[role]:
            problems.append(
                f"{role} died (exit {domain.processes[role].returncode}):\n{domain.tail(role)}"
            )
            continue
        c = domain.ask(role, "counters")
        internal[role] = int(c["node"].get("internal_error", 0))
        handler[role] = int(c.get("mh_socket", {}).get("rx.handler_error", 0))
        counters[role] = _flat(c)
        if internal[role] or handler[role]:
            problems.append(
                f"{role}: internal_error={internal[role]} handler_error={handler[role]}"
            )
    if not alive["dmpa2"]:
        problems.append("dmpa2 died")
    total = sum(campaign.sent.values())
    if total < inputs * 0.99:
        problems.append(f"only {total} of {inputs} inputs sent")
    if ping.transmitted == 0 or ping.received == 0:
        problems.append("the MS's ping stream got nothing through")
    elif ping.loss_pct > max_loss_pct:
        problems.append(f"the MS's ping stream lost {ping.loss_pct}% (> {max_loss_pct}%)")
    if alive["dlmap"] and domain.binding(NAI) is None:
        problems.append("the MS's binding is gone from the DLMAP")
    return FuzzResult(
        ok=not problems,
        inputs=total,
        sent=dict(campaign.sent),
        send_errors=dict(campaign.send_errors),
        seconds=round(campaign.seconds, 2),
        rate=round(total / campaign.seconds, 1) if campaign.seconds else 0.0,
        alive=alive,
        internal_error=internal,
        handler_error=handler,
        ping={
            "transmitted": ping.transmitted,
            "received": ping.received,
            "loss_pct": ping.loss_pct,
            "rtt_avg_ms": ping.rtt_avg_ms,
        },
        counters=counters,
        problems=problems,
    )


def _flat(counters: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part, values in counters.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(value, int) and value:
                    out[f"{part}.{key}"] = value
    return out


def print_result(result: FuzzResult) -> None:
    print()
    print("fuzz campaign: " + ("ok" if result.ok else "FAILED"))
    print(f"  inputs sent        {result.inputs} in {result.seconds} s ({result.rate}/s)")
    for kind in KINDS:
        print(f"    {kind:16} {result.sent.get(kind, 0)}")
    if result.send_errors:
        print(f"  send errors        {result.send_errors}")
    print(f"  processes alive    {result.alive}")
    print(f"  internal_error     {result.internal_error}")
    p = result.ping
    print(
        f"  MS ping stream     {p['received']}/{p['transmitted']} answered, "
        f"{p['loss_pct']}% loss, avg {p['rtt_avg_ms']} ms"
    )
    for role, values in result.counters.items():
        print(f"  {role:6} {_reached(values)}")
    for problem in result.problems:
        print(f"  problem: {problem}")
    sys.stdout.flush()


def _reached(values: dict[str, int]) -> str:
    """How far the inputs got inside one process, from its counters."""

    def total(*prefixes: str) -> int:
        return sum(v for k, v in values.items() if k.startswith(prefixes))

    dropped = total(
        "fastpath.uplink.bad_",
        "fastpath.uplink.truncated",
        "fastpath.uplink.src_not_bound",
        "fastpath.uplink.unknown_peer",
        "fastpath.downlink.bad_",
        "fastpath.downlink.truncated",
        "fastpath.downlink.no_binding",
    )
    return (
        f"MH received {values.get('mh_socket.rx', 0)} (malformed "
        f"{total('node.mh.malformed.')}), MH sent {values.get('mh_socket.tx', 0)}, "
        f"access-service counts {total('access.')}, fastpath drops {dropped}"
    )


def main(args: Any) -> int:
    try:
        result = fuzz(
            inputs=args.inputs,
            rate=args.rate,
            seed=args.seed,
            dialect=args.dialect,
            fastpath=args.fastpath,
            quiet=args.json,
        )
    except (LabError, OSError) as exc:
        print(f"netlmm lab fuzz: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_result(result)
    return 0 if result.ok else 1
