"""Inside the DLMAP namespace of ``tests/netns/test_dhcp_real.py``: the built-in DHCP server
answering a real udhcpc over a veth. ``python -m tests.netns.children.dhcp_server IFNAME NAI
STATE_FILE SECONDS``.

It reads frames with an AF_PACKET socket, plays the DMPA (adds option 82 with the NAI), calls
:meth:`DhcpServer.receive` and writes the replies to ``chaddr``; after each request it writes
its state (the message types seen, the counters, the leases, what the pool holds for the NAI)
to ``STATE_FILE`` (replaced atomically). Bounded by ``SECONDS``; ended by its PID before that.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from ipaddress import IPv4Address, IPv4Network, IPv6Address

from router.core.actions import SendTunnel
from router.core.pool import HoAPool
from router.services.dhcp_server import DhcpServer, DhcpServerConfig, parse_request
from router.wire.dhcp import BootpOp, RelayAgentInfo
from router.wire.ipv4 import IPv4Packet

GW = IPv4Address("198.51.100.1")
DMPA = IPv6Address("2001:db8:1::1")
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


def serve(ifname: str, nai: str, state_path: str, seconds: float) -> None:
    config = DhcpServerConfig(
        server_id=GW,
        gateway=GW,
        network=IPv4Network("198.51.100.0/24"),
        lease_time=600,
        max_lifetime=600,
        dns=(IPv4Address("203.0.113.53"),),
        mtu=1400,
    )
    server = DhcpServer(config, HoAPool([IPv4Network("198.51.100.64/28")]))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    sock.bind((ifname, 0))
    sock.settimeout(0.2)
    own: bytes = sock.getsockname()[4]
    seen: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame, addr = sock.recvfrom(4096)
        except TimeoutError:
            continue
        if addr[2] == PACKET_OUTGOING or len(frame) < 14:
            continue
        data = bytearray(frame[14:])
        ihl = (data[0] & 15) * 4 if data else 0
        if len(data) >= ihl + 8 and data[9] == 17:
            # A veth leaves a kernel-sent UDP checksum unfinished (offload): the DMPA would get
            # it finished from a real NIC. Zero means "no checksum" in IPv4 (RFC 768).
            data[ihl + 6 : ihl + 8] = b"\0\0"
        message, _why = parse_request(bytes(data))
        if message is None or message.op != BootpOp.BOOTREQUEST:
            continue
        # The DMPA's part: tag the MS's DHCP with its NAI (option 82, subscriber-id).
        message = message.with_relay_agent_info(RelayAgentInfo.of(subscriber_id=nai.encode()))
        seen.append(int(message.message_type or 0))
        for action in server.receive(message, DMPA, time.monotonic()):
            if isinstance(action, SendTunnel):
                packet = IPv4Packet.decode(action.packet)
                broadcast = packet.dst == IPv4Address("255.255.255.255")
                dst = b"\xff" * 6 if broadcast else message.chaddr[:6]
                sock.send(dst + own + b"\x08\x00" + action.packet)
        state = {
            "seen": seen,
            "counters": dict(server.counters),
            "owner": {k: str(v.address) for k, v in server.leases.items()},
            "pool": str(server.pool.allocated_to(nai)),
        }
        with open(state_path + ".tmp", "w") as out:
            json.dump(state, out)
        os.replace(state_path + ".tmp", state_path)


def main(argv: list[str]) -> None:
    serve(argv[0], argv[1], argv[2], float(argv[3]))


if __name__ == "__main__":
    main(sys.argv[1:])
