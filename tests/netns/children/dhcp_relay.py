"""Inside the relay namespace of ``tests/netns/test_dhcp_real.py``: the DLMAP's relay adapter
against a real DHCP server. ``python -m tests.netns.children.dhcp_relay GIADDR SERVER NAI``.

The DMPA's tunnel is played by calling ``from_dmpa()`` and collecting what ``send_tunnel()``
gets. Prints one JSON line with what happened (the OFFER, the ACK, what the pool learned, the
relay's counters), then exits; bounded at 30 s.
"""

from __future__ import annotations

import asyncio
import json
import sys
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from router.adapters.dhcp_socket import RelayEndpoint, open_relay_socket
from router.core.pool import HoAPool
from router.services.dhcp_relay import DhcpRelay, DhcpRelayConfig
from router.wire.dhcp import (
    BootpOp,
    DhcpMessage,
    DhcpMessageType,
    DhcpOption,
    DhcpOptionCode,
    RelayAgentInfo,
)
from router.wire.ipv4 import IPProto, IPv4Packet
from router.wire.udp import UdpDatagram

DMPA = IPv6Address("2001:db8:1::1")
MAC = bytes.fromhex("02000000aa01")
Tunnelled = tuple[str, str, DhcpMessage]


def tunnelled(nai: str, kind: int, xid: int, extra: tuple[DhcpOption, ...] = ()) -> bytes:
    """A client message as the DMPA puts it in the tunnel: option 82 with the NAI."""
    options = (DhcpOption.from_uint(DhcpOptionCode.MESSAGE_TYPE, kind, 1), *extra)
    message = DhcpMessage(BootpOp.BOOTREQUEST, xid, MAC, options)
    message = message.with_relay_agent_info(RelayAgentInfo.of(subscriber_id=nai.encode()))
    src, dst = IPv4Address(0), IPv4Address("255.255.255.255")
    udp = UdpDatagram(68, 67, message.encode()).encode(src, dst)
    return IPv4Packet(src, dst, IPProto.UDP, udp).encode()


async def relay_once(giaddr: IPv4Address, server: IPv4Address, nai: str) -> dict[str, Any]:
    got: asyncio.Queue[Tunnelled] = asyncio.Queue()

    def send_tunnel(dmpa: IPv6Address, data: bytes) -> None:
        packet = IPv4Packet.decode(data)
        udp = UdpDatagram.decode(packet.payload, src=packet.src, dst=packet.dst)
        got.put_nowait((str(dmpa), str(packet.dst), DhcpMessage.decode(udp.payload)))

    config = DhcpRelayConfig(giaddr=giaddr, servers=(server,), remote_id=True)
    relay = DhcpRelay(config, HoAPool([]))
    endpoint = RelayEndpoint(relay, send_tunnel)
    transport = await open_relay_socket(endpoint)
    out: dict[str, Any] = {}
    try:
        xid = 0x5EED0001
        offer: Tunnelled | None = None
        for _attempt in range(8):  # servers may still be starting: retransmit, bounded
            endpoint.from_dmpa(tunnelled(nai, DhcpMessageType.DISCOVER, xid), DMPA)
            try:
                offer = await asyncio.wait_for(got.get(), 1.0)
                break
            except TimeoutError:
                continue
        if offer is None:
            raise SystemExit(f"no OFFER after 8 DISCOVERs: {dict(relay.counters)}")
        dmpa, dst, message = offer
        out["offer"] = [
            dmpa,
            dst,
            int(message.message_type or 0),
            str(message.yiaddr),
            message.relay_agent_info is not None,
        ]
        server_id = message.server_id
        if server_id is None:
            raise SystemExit("the OFFER names no server")
        request = tunnelled(
            nai,
            DhcpMessageType.REQUEST,
            xid,
            (
                DhcpOption.from_addresses(DhcpOptionCode.REQUESTED_IP, message.yiaddr),
                DhcpOption.from_addresses(DhcpOptionCode.SERVER_ID, server_id),
            ),
        )
        endpoint.from_dmpa(request, DMPA)
        for _ in range(10):  # skip OFFERs answering retransmitted DISCOVERs
            dmpa, dst, ack = await asyncio.wait_for(got.get(), 5.0)
            if ack.message_type != DhcpMessageType.OFFER:
                break
        out["ack"] = [
            dmpa,
            dst,
            int(ack.message_type or 0),
            str(ack.yiaddr),
            ack.relay_agent_info is not None,
            ack.lease_time,
        ]
        out["pool"] = str(relay.pool.allocated_to(nai))
        out["counters"] = dict(relay.counters)
    finally:
        transport.close()
    return out


def main(argv: list[str]) -> None:
    giaddr, server, nai = IPv4Address(argv[0]), IPv4Address(argv[1]), argv[2]
    out = asyncio.run(asyncio.wait_for(relay_once(giaddr, server, nai), 30))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
