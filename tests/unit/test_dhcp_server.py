"""The built-in DHCP server: every message type, every error, persistence and the HoA pool."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network, IPv6Address

import pytest

from router.core.actions import Persist
from router.core.pool import HoAPool
from router.services.dhcp_server import (
    BROADCAST,
    DECLINED_PREFIX,
    LEASE_TABLE,
    POOL_TABLE,
    ConfigError,
    DhcpAction,
    DhcpServer,
    DhcpServerConfig,
    SendTunnel,
)
from router.wire.dhcp import (
    BROADCAST_FLAG,
    BootpOp,
    DhcpMessage,
    DhcpMessageType,
    DhcpOption,
    DhcpOptionCode,
    RelayAgentInfo,
)
from router.wire.ipv4 import IPProto, IPv4Packet
from router.wire.udp import UdpDatagram

NET = IPv4Network("192.0.2.0/24")
GW = IPv4Address("192.0.2.1")
DNS = IPv4Address("198.51.100.53")
DMPA = IPv6Address("2001:db8:1::1")
MAC = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")
ZERO = IPv4Address(0)
NAI = "ms1@example.net"
NAI2 = "ms2@example.net"
STATIC_NAI = "fixed@example.net"
STATIC = IPv4Address("192.0.2.200")


def make(lease_time: int = 3600, max_lifetime: int = 1800, **kw: object) -> DhcpServer:
    pool = HoAPool(
        [(IPv4Address("192.0.2.10"), IPv4Address("192.0.2.13"))], static={STATIC_NAI: STATIC}
    )
    cfg = DhcpServerConfig(
        server_id=GW,
        gateway=GW,
        network=NET,
        lease_time=lease_time,
        max_lifetime=max_lifetime,
        dns=(DNS,),
        mtu=1400,
        **kw,  # type: ignore[arg-type]
    )
    return DhcpServer(cfg, pool)


def msg(
    kind: DhcpMessageType,
    *,
    nai: str | None = NAI,
    mac: bytes = MAC,
    xid: int = 0x1234,
    requested: IPv4Address | None = None,
    server_id: IPv4Address | None = None,
    ciaddr: IPv4Address = ZERO,
    flags: int = 0,
    extra: tuple[DhcpOption, ...] = (),
    giaddr: IPv4Address = ZERO,
) -> DhcpMessage:
    options = [DhcpOption.from_uint(DhcpOptionCode.MESSAGE_TYPE, kind, 1)]
    if requested is not None:
        options.append(DhcpOption.from_addresses(DhcpOptionCode.REQUESTED_IP, requested))
    if server_id is not None:
        options.append(DhcpOption.from_addresses(DhcpOptionCode.SERVER_ID, server_id))
    options += extra
    m = DhcpMessage(
        BootpOp.BOOTREQUEST,
        xid,
        mac,
        tuple(options),
        ciaddr=ciaddr,
        flags=flags,
        giaddr=giaddr,
    )
    if nai is not None:
        m = m.with_relay_agent_info(RelayAgentInfo.of(subscriber_id=nai.encode()))
    return m


def packet(m: DhcpMessage, src: str = "0.0.0.0", dst: str = "255.255.255.255") -> bytes:
    s, d = IPv4Address(src), IPv4Address(dst)
    udp = UdpDatagram(68, 67, m.encode()).encode(s, d)
    return IPv4Packet(s, d, IPProto.UDP, udp).encode()


def replies(actions: list[DhcpAction]) -> list[tuple[IPv4Packet, DhcpMessage]]:
    out = []
    for a in actions:
        if isinstance(a, SendTunnel):
            assert a.peer == DMPA
            ip = IPv4Packet.decode(a.packet)
            udp = UdpDatagram.decode(ip.payload, src=ip.src, dst=ip.dst)
            assert udp.src_port == 67
            out.append((ip, DhcpMessage.decode(udp.payload)))
    return out


def one(actions: list[DhcpAction]) -> tuple[IPv4Packet, DhcpMessage]:
    got = replies(actions)
    assert len(got) == 1, actions
    return got[0]


def bound(server: DhcpServer, nai: str = NAI, mac: bytes = MAC, now: float = 0.0) -> IPv4Address:
    _, offer = one(
        server.receive(packet(msg(DhcpMessageType.DISCOVER, nai=nai, mac=mac)), DMPA, now)
    )
    req = msg(DhcpMessageType.REQUEST, nai=nai, mac=mac, requested=offer.yiaddr, server_id=GW)
    _, ack = one(server.receive(packet(req), DMPA, now))
    assert ack.message_type == DhcpMessageType.ACK
    return ack.yiaddr


# --- the four-message exchange ----------------------------------------------------------------


def test_discover_offer_with_every_option() -> None:
    server = make()
    ip, offer = one(server.receive(packet(msg(DhcpMessageType.DISCOVER)), DMPA, 0.0))
    assert offer.op == BootpOp.BOOTREPLY and offer.message_type == DhcpMessageType.OFFER
    assert offer.xid == 0x1234 and offer.chaddr[:6] == MAC
    assert offer.yiaddr == IPv4Address("192.0.2.10")
    assert offer.server_id == GW and offer.routers == (GW,)
    assert offer.subnet_mask == IPv4Address("255.255.255.0")
    assert offer.dns_servers == (DNS,) and offer.interface_mtu == 1400
    assert offer.lease_time == 1800  # capped by the binding lifetime
    assert offer.relay_agent_info is None  # not echoed by default
    # RFC 2131 4.1: no broadcast bit, no ciaddr -> unicast to yiaddr.
    assert (ip.src, ip.dst) == (GW, offer.yiaddr)
    assert UdpDatagram.decode(ip.payload).dst_port == 68
    assert server.pool.owner(offer.yiaddr) == NAI


def test_request_selecting_ack_and_persist() -> None:
    server = make()
    _, offer = one(server.receive(packet(msg(DhcpMessageType.DISCOVER)), DMPA, 0.0))
    req = msg(DhcpMessageType.REQUEST, requested=offer.yiaddr, server_id=GW, flags=BROADCAST_FLAG)
    actions = server.receive(packet(req), DMPA, 5.0, wall=1000.0)
    ip, ack = one(actions)
    assert ack.message_type == DhcpMessageType.ACK and ack.yiaddr == offer.yiaddr
    assert ip.dst == BROADCAST  # broadcast bit
    assert server.pool.allocated_to(NAI) == offer.yiaddr
    persists = [a for a in actions if isinstance(a, Persist)]
    tables = {p.table: p for p in persists}
    assert tables[LEASE_TABLE].record is not None
    assert tables[LEASE_TABLE].record["expires_wall"] == 1000.0 + 1800
    assert tables[POOL_TABLE].record == {
        "nai": NAI,
        "hoa": str(offer.yiaddr),
        "expires_wall": 1000.0 + 1800,
    }
    lease = server.pool.lease_of(NAI)
    assert lease is not None and lease.expires == 5.0 + 1800


def test_request_for_another_server_is_silent() -> None:
    server = make()
    _, offer = one(server.receive(packet(msg(DhcpMessageType.DISCOVER)), DMPA, 0.0))
    req = msg(DhcpMessageType.REQUEST, requested=offer.yiaddr, server_id=IPv4Address("192.0.2.99"))
    assert replies(server.receive(packet(req), DMPA, 1.0)) == []
    assert server.counters["request.other_server"] == 1


def test_same_nai_same_address_and_static_profile() -> None:
    server = make()
    first = bound(server)
    assert bound(server, mac=MAC2) == first  # another MAC, same NAI
    assert bound(server, nai=NAI2) != first
    assert bound(server, nai=STATIC_NAI) == STATIC


def test_requested_address_honoured_when_free() -> None:
    server = make()
    wanted = IPv4Address("192.0.2.12")
    _, offer = one(server.receive(msg(DhcpMessageType.DISCOVER, requested=wanted), DMPA, 0.0))
    assert offer.yiaddr == wanted
    # Outside the pool: ignored, an address from the pool instead.
    outside = IPv4Address("192.0.2.99")
    _, offer2 = one(
        server.receive(msg(DhcpMessageType.DISCOVER, nai=NAI2, requested=outside), DMPA, 0.0)
    )
    assert offer2.yiaddr != outside and server.pool.in_ranges(offer2.yiaddr)


def test_pool_exhausted_no_offer() -> None:
    server = make()
    for i in range(4):
        bound(server, nai=f"n{i}@example.net")
    actions = server.receive(msg(DhcpMessageType.DISCOVER, nai="n9@example.net"), DMPA, 0.0)
    assert replies(actions) == [] and [getattr(a, "kind", None) for a in actions] == [
        "dhcp_no_address"
    ]
    assert server.counters["pool.exhausted"] == 1


def test_offer_reservation_runs_out() -> None:
    server = make(offer_hold=10.0)
    _, offer = one(server.receive(msg(DhcpMessageType.DISCOVER), DMPA, 0.0))
    assert server.get_timer() == 10.0
    assert server.handle_timer(10.0) == [Persist(LEASE_TABLE, NAI, None)]
    assert [lease.nai for lease in server.pool.expire(10.0)] == [NAI]
    assert server.pool.owner(offer.yiaddr) is None


# --- the other REQUEST states -----------------------------------------------------------------


def test_init_reboot_ack_and_nak() -> None:
    server = make()
    address = bound(server)
    _, ack = one(server.receive(msg(DhcpMessageType.REQUEST, requested=address), DMPA, 10.0))
    assert ack.message_type == DhcpMessageType.ACK
    wrong = IPv4Address("192.0.2.13")
    ip, nak = one(server.receive(msg(DhcpMessageType.REQUEST, requested=wrong), DMPA, 10.0))
    assert nak.message_type == DhcpMessageType.NAK and nak.yiaddr == IPv4Address(0)
    assert ip.dst == BROADCAST and nak.lease_time is None
    assert server.counters["request.init_reboot"] == 2


def test_init_reboot_other_nais_address_is_nak() -> None:
    server = make()
    address = bound(server)
    _, nak = one(
        server.receive(msg(DhcpMessageType.REQUEST, nai=NAI2, requested=address), DMPA, 1.0)
    )
    assert nak.message_type == DhcpMessageType.NAK
    assert server.pool.owner(address) == NAI


def test_init_reboot_unknown_client_free_address_granted() -> None:
    server = make()
    wanted = IPv4Address("192.0.2.11")
    _, ack = one(server.receive(msg(DhcpMessageType.REQUEST, requested=wanted), DMPA, 1.0))
    assert ack.message_type == DhcpMessageType.ACK and ack.yiaddr == wanted
    assert server.pool.allocated_to(NAI) == wanted


@pytest.mark.parametrize("state", ["renewing", "rebinding"])
def test_renew_and_rebind_unicast_to_ciaddr(state: str) -> None:
    server = make()
    address = bound(server)
    src = str(address)
    dst = str(GW) if state == "renewing" else "255.255.255.255"
    req = msg(DhcpMessageType.REQUEST, ciaddr=address)
    ip, ack = one(server.receive(packet(req, src, dst), DMPA, 900.0))
    assert ack.message_type == DhcpMessageType.ACK and ack.ciaddr == address
    assert ip.dst == address
    lease = server.pool.lease_of(NAI)
    assert lease is not None and lease.expires == 900.0 + 1800  # extended


def test_renew_wrong_address_nak() -> None:
    server = make()
    bound(server)
    req = msg(DhcpMessageType.REQUEST, ciaddr=IPv4Address("192.0.2.13"))
    _, nak = one(server.receive(req, DMPA, 1.0))
    assert nak.message_type == DhcpMessageType.NAK


def test_request_without_any_address_nak() -> None:
    server = make()
    _, nak = one(server.receive(msg(DhcpMessageType.REQUEST), DMPA, 1.0))
    assert nak.message_type == DhcpMessageType.NAK
    assert server.counters["request.no_address"] == 1


def test_binding_held_lease_is_not_shortened() -> None:
    server = make()
    address = bound(server)
    assert server.pool.hold(NAI, address)  # what the DLMAP does on an accepted PBU
    one(server.receive(msg(DhcpMessageType.REQUEST, ciaddr=address), DMPA, 5.0))
    lease = server.pool.lease_of(NAI)
    assert lease is not None and lease.expires is None


def test_client_asks_for_a_shorter_lease() -> None:
    server = make()
    extra = (DhcpOption.from_uint(DhcpOptionCode.LEASE_TIME, 120, 4),)
    _, offer = one(server.receive(msg(DhcpMessageType.DISCOVER, extra=extra), DMPA, 0.0))
    assert offer.lease_time == 120
    extra = (DhcpOption.from_uint(DhcpOptionCode.LEASE_TIME, 1, 4),)
    _, offer = one(server.receive(msg(DhcpMessageType.DISCOVER, extra=extra), DMPA, 0.0))
    assert offer.lease_time == 60  # min_lease


# --- DECLINE, RELEASE, INFORM -----------------------------------------------------------------


def test_decline_quarantines_and_moves_the_client() -> None:
    server = make(decline_hold=100.0)
    address = bound(server)
    actions = server.receive(
        msg(DhcpMessageType.DECLINE, requested=address, server_id=GW), DMPA, 2.0
    )
    assert replies(actions) == []
    assert server.pool.owner(address) == DECLINED_PREFIX + str(address)
    _, offer = one(server.receive(msg(DhcpMessageType.DISCOVER), DMPA, 3.0))
    assert offer.yiaddr != address
    # Nobody else gets it either, and a REQUEST for it is refused.
    _, nak = one(
        server.receive(msg(DhcpMessageType.REQUEST, nai=NAI2, requested=address), DMPA, 3.0)
    )
    assert nak.message_type == DhcpMessageType.NAK
    parked = [a for a in actions if isinstance(a, Persist) and a.key.startswith(DECLINED_PREFIX)]
    assert parked and parked[0].record is not None
    # The quarantine ends with decline_hold: the pool frees it.
    assert DECLINED_PREFIX + str(address) in [x.nai for x in server.pool.expire(102.0)]
    assert server.pool.owner(address) is None


def test_decline_of_static_address_is_counted() -> None:
    server = make()
    bound(server, nai=STATIC_NAI)
    server.receive(msg(DhcpMessageType.DECLINE, nai=STATIC_NAI, requested=STATIC), DMPA, 1.0)
    assert server.counters["decline.static"] == 1
    assert server.pool.allocated_to(STATIC_NAI) == STATIC


def test_decline_of_someone_elses_address_is_ignored() -> None:
    server = make()
    address = bound(server)
    server.receive(msg(DhcpMessageType.DECLINE, nai=NAI2, requested=address), DMPA, 1.0)
    assert server.counters["decline.not_ours"] == 1
    server.receive(msg(DhcpMessageType.DECLINE), DMPA, 1.0)
    assert server.counters["decline.ignored"] == 1
    assert server.pool.owner(address) == NAI


def test_release_keeps_the_address_for_that_nai() -> None:
    server = make()
    address = bound(server)
    actions = server.receive(msg(DhcpMessageType.RELEASE, ciaddr=address, server_id=GW), DMPA, 10.0)
    assert replies(actions) == [] and server.counters["release.done"] == 1
    assert server.leases[NAI].state == "released"
    assert bound(server) == address
    # A RELEASE for an address the client does not have is ignored.
    server.receive(msg(DhcpMessageType.RELEASE, ciaddr=IPv4Address("192.0.2.13")), DMPA, 11.0)
    assert server.counters["release.unknown"] == 1
    other = msg(DhcpMessageType.RELEASE, ciaddr=address, server_id=IPv4Address("192.0.2.9"))
    server.receive(other, DMPA, 11.0)
    assert server.counters["release.other_server"] == 1


def test_inform_ack_without_lease() -> None:
    server = make()
    ciaddr = IPv4Address("192.0.2.77")
    ip, ack = one(server.receive(msg(DhcpMessageType.INFORM, ciaddr=ciaddr), DMPA, 0.0))
    assert ack.message_type == DhcpMessageType.ACK and ack.yiaddr == IPv4Address(0)
    assert ack.lease_time is None and ack.routers == (GW,) and ip.dst == ciaddr
    assert server.receive(msg(DhcpMessageType.INFORM), DMPA, 0.0) == []
    assert server.counters["inform.no_ciaddr"] == 1


# --- keys, relays, echo -----------------------------------------------------------------------


def test_no_nai_falls_back_to_client_id_then_mac() -> None:
    server = make()
    cid = (DhcpOption(DhcpOptionCode.CLIENT_ID, b"\x01" + MAC),)
    _, offer = one(server.receive(msg(DhcpMessageType.DISCOVER, nai=None, extra=cid), DMPA, 0.0))
    assert server.pool.owner(offer.yiaddr) == "dhcp:cid:01" + MAC.hex()
    assert offer.client_id == b"\x01" + MAC  # echoed (RFC 6842)
    _, offer2 = one(server.receive(msg(DhcpMessageType.DISCOVER, nai=None, mac=MAC2), DMPA, 0.0))
    assert server.pool.owner(offer2.yiaddr) == "dhcp:mac:02:00:00:00:00:02"
    assert server.counters["key.fallback"] == 2


def test_giaddr_reply_goes_to_the_relay() -> None:
    server = make()
    relay = IPv4Address("192.0.2.5")
    ip, offer = one(server.receive(msg(DhcpMessageType.DISCOVER, giaddr=relay), DMPA, 0.0))
    assert ip.dst == relay and UdpDatagram.decode(ip.payload).dst_port == 67
    assert offer.giaddr == relay
    _, nak = one(server.receive(msg(DhcpMessageType.REQUEST, giaddr=relay), DMPA, 0.0))
    assert nak.flags & BROADCAST_FLAG


def test_echo_relay_info_when_configured() -> None:
    server = make(echo_relay_info=True)
    _, offer = one(server.receive(msg(DhcpMessageType.DISCOVER), DMPA, 0.0))
    info = offer.relay_agent_info
    assert info is not None and info.subscriber_id == NAI.encode()
    assert offer.options[-1].code == DhcpOptionCode.RELAY_AGENT_INFO


def test_unknown_dmpa_dropped_when_restricted() -> None:
    server = make(dmpas=frozenset({IPv6Address("2001:db8:9::9")}))
    assert server.receive(msg(DhcpMessageType.DISCOVER), DMPA, 0.0) == []
    assert server.counters["drop.unknown_dmpa"] == 1


# --- persistence ------------------------------------------------------------------------------


def test_restore_from_persisted_rows() -> None:
    server = make()
    rows: dict[str, dict[str, dict[str, object]]] = {}

    def keep(actions: list[DhcpAction]) -> None:
        for a in actions:
            if isinstance(a, Persist):
                table = rows.setdefault(a.table, {})
                if a.record is None:
                    table.pop(a.key, None)
                else:
                    table[a.key] = a.record

    _, offer = one(server.receive(msg(DhcpMessageType.DISCOVER), DMPA, 0.0, wall=500.0))
    keep(server.receive(msg(DhcpMessageType.REQUEST, requested=offer.yiaddr), DMPA, 0.0, 500.0))
    # A restart: monotonic time starts again at 7, wall time moved by 100 s.
    fresh = make()
    tables = {t: list(r.values()) for t, r in rows.items()}
    # The DLMAP restores pool leases first (its own ``lease`` rows) ...
    for row in tables[POOL_TABLE]:
        fresh.pool.restore(str(row["nai"]), IPv4Address(str(row["hoa"])), 7.0 + 1700)
    fresh.restore(tables, now=7.0, wall=600.0)
    assert fresh.leases[NAI].address == offer.yiaddr
    assert fresh.leases[NAI].expires == pytest.approx(7.0 + 1700)
    _, ack = one(fresh.receive(msg(DhcpMessageType.REQUEST, ciaddr=offer.yiaddr), DMPA, 8.0))
    assert ack.message_type == DhcpMessageType.ACK
    # ... and without the pool row the server puts the lease back itself.
    alone = make()
    alone.restore({LEASE_TABLE: tables[LEASE_TABLE]}, now=7.0, wall=600.0)
    assert alone.pool.allocated_to(NAI) == offer.yiaddr
    # Expired and broken rows are skipped and counted.
    late = make()
    late.restore({LEASE_TABLE: [*tables[LEASE_TABLE], {"key": "x"}]}, now=0.0, wall=1e9)
    assert late.counters["restore.expired"] == 1 and late.counters["restore.bad_row"] == 1


# --- bad input: dropped and counted, never raised ---------------------------------------------


def test_config_errors_all_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        DhcpServerConfig(
            server_id=IPv4Address("10.0.0.1"),
            gateway=IPv4Address("10.0.0.1"),
            network=NET,
            lease_time=0,
            mtu=20,
        ).check()
    keys = {p.split(":")[0] for p in err.value.problems}
    assert {"dhcp_server.server_id", "dhcp_server.gateway", "dhcp_server.lease_time"} <= keys
    assert "dhcp_server.mtu" in keys


def test_malformed_packets_are_dropped_and_counted() -> None:
    server = make()
    good = packet(msg(DhcpMessageType.DISCOVER))
    cases: dict[str, bytes] = {
        "empty": b"",
        "short ip": good[:10],
        "truncated dhcp": _reudp(msg(DhcpMessageType.DISCOVER).encode()[:200]),
        "bad cookie": _reudp(msg(DhcpMessageType.DISCOVER).encode()[:236] + b"\0\0\0\0"),
        "option past end": _reudp(msg(DhcpMessageType.DISCOVER).encode()[:240] + b"\x35\x09\x01"),
        "bad option 53 length": _reudp(_raw_with_options(b"\x35\x02\x01\x01\xff")),
        "bad option 82": _reudp(_raw_with_options(b"\x35\x01\x01\x52\x03\x06\x05a\xff")),
        "udp checksum": good[:-1] + bytes([good[-1] ^ 1]),
        "not udp": IPv4Packet(GW, GW, IPProto.TCP, b"x" * 20).encode(),
        "wrong port": IPv4Packet(
            GW, GW, IPProto.UDP, UdpDatagram(68, 68, b"").encode(GW, GW)
        ).encode(),
        "fragment": IPv4Packet(GW, GW, IPProto.UDP, b"\0" * 16, fragment_offset=1).encode(),
    }
    for name, data in cases.items():
        assert server.receive(data, DMPA, 0.0) == [], name
    assert sum(v for k, v in server.counters.items() if k.startswith("drop.")) == len(cases)


def test_wrong_messages_are_dropped_and_counted() -> None:
    server = make()
    offer = DhcpMessage(
        BootpOp.BOOTREPLY,
        1,
        MAC,
        (DhcpOption.from_uint(DhcpOptionCode.MESSAGE_TYPE, DhcpMessageType.OFFER, 1),),
    )
    no_type = DhcpMessage(BootpOp.BOOTREQUEST, 1, MAC)
    unknown_type = DhcpMessage(
        BootpOp.BOOTREQUEST, 1, MAC, (DhcpOption(DhcpOptionCode.MESSAGE_TYPE, b"\x63"),)
    )
    server_type = msg(DhcpMessageType.ACK)
    no_key = msg(DhcpMessageType.DISCOVER, nai=None, mac=b"\0" * 6)
    bad_hlen = DhcpMessage(
        BootpOp.BOOTREQUEST, 1, MAC, msg(DhcpMessageType.DISCOVER).options, hlen=200
    )
    for m in (offer, no_type, unknown_type, server_type, no_key, bad_hlen):
        assert server.receive(packet(m), DMPA, 0.0) == []
    assert server.counters["drop.not_request"] == 1
    assert server.counters["drop.bad_message_type"] == 3
    assert server.counters["drop.no_client_key"] == 1
    assert server.counters["drop.bad_hlen"] == 1


def test_absurd_options_still_answered_or_dropped() -> None:
    server = make()
    # A non-UTF-8 subscriber-id is not an NAI: the key falls back to the MAC.
    m = msg(DhcpMessageType.DISCOVER, nai=None).with_relay_agent_info(
        RelayAgentInfo.of(subscriber_id=b"\xff\xfe")
    )
    assert len(replies(server.receive(m, DMPA, 0.0))) == 1
    assert server.counters["key.fallback"] == 1
    # 255-byte options everywhere, many of them: still one OFFER.
    filler = tuple(DhcpOption(200 + i, bytes(255)) for i in range(20))
    m = msg(DhcpMessageType.DISCOVER, nai=NAI2, extra=filler)
    assert len(replies(server.receive(m, DMPA, 0.0))) == 1


def test_random_garbage_never_raises() -> None:
    server = make()
    rng = random.Random(5)
    good = bytearray(packet(msg(DhcpMessageType.REQUEST, requested=IPv4Address("192.0.2.10"))))
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        server.receive(bytes(data), DMPA, 0.0)
        raw = bytearray(msg(DhcpMessageType.DISCOVER).encode())
        raw[rng.randrange(236, len(raw))] = rng.randrange(256)
        server.receive(_reudp(bytes(raw)), DMPA, 0.0)


def _reudp(payload: bytes) -> bytes:
    s, d = IPv4Address(0), BROADCAST
    return IPv4Packet(s, d, IPProto.UDP, UdpDatagram(68, 67, payload).encode(s, d)).encode()


def _raw_with_options(options: bytes) -> bytes:
    fixed = bytearray(236)
    fixed[0], fixed[1], fixed[2] = 1, 1, 6
    fixed[28:34] = MAC
    return bytes(fixed) + bytes((99, 130, 83, 99)) + options
