"""Builders for the access-side service tests: a DMPA with its access services, and frames.

The builders are pure (no root, no I/O), so the unit tests use them too; the namespace part at
the end (links, the udhcpc script) is for ``test_access_host.py``, whose harness
(``tests/netns/children/access_harness.py``) imports this module inside the DMPA-side
namespace.
"""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from netlmm_lab import netns
from router.core.actions import Action, SendFrame, SendMH, SendTunnel
from router.core.dmpa import DMPA, AddressMode, DMPAConfig, Profile
from router.services.access import AccessAction, AccessDispatcher
from router.services.arp_proxy import ArpProxy
from router.services.dhcp_dmpa import DhcpDmpa, DhcpDmpaConfig
from router.services.icmp_responder import IcmpResponder
from router.wire.arp import ArpOp, ArpPacket
from router.wire.dhcp import (
    CLIENT_PORT,
    SERVER_PORT,
    BootpOp,
    DhcpMessage,
    DhcpOption,
    DhcpOptionCode,
)
from router.wire.dialect import DRAFT
from router.wire.ethernet import BROADCAST_MAC, ZERO_MAC, EthernetFrame, EtherType, MacAddress
from router.wire.icmp import IcmpEcho
from router.wire.ipv4 import IPProto, IPv4Packet
from router.wire.mh import BindingAck, BindingUpdate
from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress
from router.wire.udp import UdpDatagram

SELF = IPv6Address("2001:db8:1::1")
DLMAP = IPv6Address("2001:db8:2::1")
OTHER_DLMAP = IPv6Address("2001:db8:4::1")
PSEUDO = MacAddress.parse("02:00:5e:00:00:01")
GATEWAY = IPv4Address("192.0.2.1")
HOA = IPv4Address("192.0.2.20")
HOA2 = IPv4Address("192.0.2.21")
MS = MacAddress.parse("02:00:00:00:00:01")
MS2 = MacAddress.parse("02:00:00:00:00:02")
NAI = "ms1@example.net"
NAI2 = "ms2@example.net"
ZERO = IPv4Address(0)
LIMITED = IPv4Address("255.255.255.255")


def stack(
    dhcp_config: DhcpDmpaConfig | None = None, lifetime: int = 3600
) -> tuple[DMPA, AccessDispatcher]:
    """A DMPA core and the dispatcher over its three access services."""
    config = DMPAConfig(SELF, PSEUDO, GATEWAY, {DLMAP: DRAFT, OTHER_DLMAP: DRAFT}, lifetime)
    node = DMPA(config)
    dispatcher = AccessDispatcher(
        node, ArpProxy(node), IcmpResponder(), DhcpDmpa(node, dhcp_config)
    )
    return node, dispatcher


def authenticate(
    node: DMPA,
    mac: MacAddress,
    mode: AddressMode,
    *,
    nai: str = NAI,
    hoa: IPv4Address | None = None,
    link: int = 0,
    now: float = 0.0,
) -> list[Action]:
    """Attach ``mac`` and accept it with a profile (what AAA would answer)."""
    actions = node.attach(mac, link, now)
    return actions + node.aaa_result(mac, Profile(nai, mode, DLMAP, hoa), now, 1e9)


def grant(node: DMPA, mac: MacAddress, hoa: IPv4Address, now: float = 0.1) -> list[Action]:
    """Answer the PBU in flight for ``mac`` with an accepting PBA carrying ``hoa`` (a fake
    DLMAP, draft dialect); lifetime 900 units = 3600 s."""
    visitor = node.visitors[mac]
    assert visitor.pending is not None and visitor.nai is not None
    options = (MobileNodeIdentifier.from_nai(visitor.nai), SeedIPv4HomeAddress(1, hoa))
    pba = BindingAck(0, DRAFT.pba_flags(ipv4=True), visitor.pending, 900, options)
    return node.receive(pba, DLMAP, now, 1e9)


def pbus(actions: list[Action] | list[AccessAction]) -> list[BindingUpdate]:
    return [
        a.message for a in actions if isinstance(a, SendMH) and isinstance(a.message, BindingUpdate)
    ]


def frames(actions: list[AccessAction]) -> list[EthernetFrame]:
    return [EthernetFrame.decode(a.frame) for a in actions if isinstance(a, SendFrame)]


def tunnelled(actions: list[AccessAction]) -> list[SendTunnel]:
    return [a for a in actions if isinstance(a, SendTunnel)]


# --- frames from the MS ----------------------------------------------------------------------


def arp_frame(
    src: MacAddress,
    sender_ip: IPv4Address,
    target_ip: IPv4Address,
    *,
    op: int = ArpOp.REQUEST,
    dst: MacAddress = BROADCAST_MAC,
    sender_mac: MacAddress | None = None,
    target_mac: MacAddress = ZERO_MAC,
) -> bytes:
    arp = ArpPacket(op, sender_mac or src, sender_ip, target_mac, target_ip)
    return EthernetFrame(dst, src, EtherType.ARP, arp.encode()).encode()


def ipv4_frame(src: MacAddress, packet: IPv4Packet, dst: MacAddress = PSEUDO) -> bytes:
    return EthernetFrame(dst, src, EtherType.IPV4, packet.encode()).encode()


def ping_frame(
    src: MacAddress,
    src_ip: IPv4Address,
    dst_ip: IPv4Address = GATEWAY,
    *,
    ttl: int = 1,
    data: bytes = b"netlmm ping payload",
    identifier: int = 0x4242,
    sequence: int = 7,
) -> bytes:
    echo = IcmpEcho(identifier, sequence, data)
    return ipv4_frame(src, IPv4Packet(src_ip, dst_ip, IPProto.ICMP, echo.encode(), ttl=ttl))


def dhcp_client(
    kind: int,
    mac: MacAddress,
    xid: int = 0x1234,
    *,
    ciaddr: IPv4Address = ZERO,
    requested: IPv4Address | None = None,
    server_id: IPv4Address | None = None,
    flags: int = 0,
    extra: tuple[DhcpOption, ...] = (),
) -> DhcpMessage:
    options = [DhcpOption(DhcpOptionCode.MESSAGE_TYPE, bytes((kind,)))]
    if requested is not None:
        options.append(DhcpOption.from_addresses(DhcpOptionCode.REQUESTED_IP, requested))
    if server_id is not None:
        options.append(DhcpOption.from_addresses(DhcpOptionCode.SERVER_ID, server_id))
    return DhcpMessage(
        op=BootpOp.BOOTREQUEST,
        xid=xid,
        chaddr=mac.packed,
        options=(*options, *extra),
        flags=flags,
        ciaddr=ciaddr,
    )


def dhcp_frame(
    src: MacAddress,
    message: DhcpMessage | bytes,
    *,
    src_ip: IPv4Address = ZERO,
    dst_ip: IPv4Address = LIMITED,
    dst: MacAddress = BROADCAST_MAC,
    src_port: int = CLIENT_PORT,
) -> bytes:
    payload = message.encode() if isinstance(message, DhcpMessage) else message
    udp = UdpDatagram(src_port, SERVER_PORT, payload).encode(src_ip, dst_ip)
    return ipv4_frame(src, IPv4Packet(src_ip, dst_ip, IPProto.UDP, udp), dst)


def dhcp_server_packet(
    kind: int,
    mac: MacAddress,
    xid: int = 0x1234,
    *,
    yiaddr: IPv4Address = ZERO,
    ciaddr: IPv4Address = ZERO,
    flags: int = 0,
    src_ip: IPv4Address = GATEWAY,
    dst_ip: IPv4Address = LIMITED,
    extra: tuple[DhcpOption, ...] = (),
) -> bytes:
    """A server message as the DLMAP puts it in the tunnel (an IPv4 packet, UDP 67 -> 68)."""
    message = DhcpMessage(
        op=BootpOp.BOOTREPLY,
        xid=xid,
        chaddr=mac.packed,
        options=(DhcpOption(DhcpOptionCode.MESSAGE_TYPE, bytes((kind,))), *extra),
        flags=flags,
        ciaddr=ciaddr,
        yiaddr=yiaddr,
        giaddr=GATEWAY,
    )
    udp = UdpDatagram(SERVER_PORT, CLIENT_PORT, message.encode()).encode(src_ip, dst_ip)
    return IPv4Packet(src_ip, dst_ip, IPProto.UDP, udp).encode()


def dhcp_of(frame: EthernetFrame) -> tuple[IPv4Packet, UdpDatagram, DhcpMessage]:
    """Decode a DHCP frame we sent, checking the IPv4 and UDP checksums on the way."""
    ip = IPv4Packet.decode(frame.payload)
    udp = UdpDatagram.decode(ip.payload, src=ip.src, dst=ip.dst)
    return ip, udp, DhcpMessage.decode(udp.payload)


# --- namespaces: an MS host stack on a veth bridged to a TAP the services answer -------------

PSEUDO_TEXT = str(PSEUDO)
DNS = IPv4Address("198.51.100.53")
DOMAIN = "example.net"


def access_link(ms_ns: str, dmpa_ns: str, tap: str = "tap0") -> None:
    """MS ``msv0`` <-veth-> ``dmv0`` in the DMPA namespace, bridged (``br0``, no STP) with a
    persistent TAP ``tap`` (no packet information header) that the harness opens."""
    netns.ip("-n", ms_ns, "link", "add", "msv0", "type", "veth", "peer", "name", "dmv0",
             "netns", dmpa_ns)  # fmt: skip
    netns.ip("-n", dmpa_ns, "link", "add", "br0", "type", "bridge", "stp_state", "0",
             "forward_delay", "0")  # fmt: skip
    netns.ip("-n", dmpa_ns, "tuntap", "add", "dev", tap, "mode", "tap")
    for dev in ("dmv0", tap):
        netns.ip("-n", dmpa_ns, "link", "set", dev, "master", "br0", "up")
    netns.ip("-n", dmpa_ns, "link", "set", "br0", "up")
    for key in ("all", "default", "msv0"):  # keep IPv6 chatter off the access link
        netns.run(ms_ns, ["sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"], check=False)
    netns.ip("-n", ms_ns, "link", "set", "msv0", "up")


def bridge_ports(dmpa_ns: str) -> dict[str, dict[str, Any]]:
    """The bridge ports of ``dmpa_ns`` by name (``bridge -j link show``)."""
    out = netns.run(dmpa_ns, ["bridge", "-j", "link", "show"], check=False).stdout
    return {port["ifname"]: port for port in json.loads(out or "[]")}


def forwarding(state: dict[str, dict[str, Any]], ports: tuple[str, ...]) -> bool:
    """Every one of ``ports`` is up and forwarding in ``state`` (see :func:`bridge_ports`)."""
    return all(
        p in state
        and state[p].get("state") == "forwarding"
        and "LOWER_UP" in state[p].get("flags", [])
        for p in ports
    )


def stop(process: subprocess.Popen[str], timeout: float = 10.0) -> tuple[str, str]:
    """Close the harness's stdin (its signal to stop), then end it by PID if it lingers."""
    try:
        return process.communicate(input="", timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # this PID only
        return process.communicate(timeout=timeout)


UDHCPC_SCRIPT = r"""#!/bin/sh
# The MS's udhcpc script (busybox ships none here): configure the interface from the lease.
# DNS goes to the namespace's own /etc/netns/<ns>/resolv.conf, never the host's.
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-32}" dev "$interface"
    if [ -n "$router" ]; then
      set -- $router
      ip route replace default via "$1" dev "$interface"
    fi
    if [ -n "$dns" ] && [ -n "$NETLMM_NETNS_ETC" ]; then
      tmp="$NETLMM_NETNS_ETC/resolv.conf.tmp"
      : > "$tmp"
      [ -n "$domain" ] && echo "search $domain" >> "$tmp"
      for server in $dns; do echo "nameserver $server" >> "$tmp"; done
      mv "$tmp" "$NETLMM_NETNS_ETC/resolv.conf"
    fi
    for key in ip mask subnet router dns domain lease serverid; do
      eval "echo $key=\$$key"
    done > "$NETLMM_LEASE_FILE"
    ;;
esac
exit 0
"""
