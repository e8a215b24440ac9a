"""The DLMAP's DHCP against real peers, each in namespaces the test makes.

(a) The relay adapter (:mod:`router.adapters.dhcp_socket`) in one namespace relays a tunnelled
    DISCOVER/REQUEST to a real Kea and a real dnsmasq in another, over a veth; the ACK must come
    back to the DMPA's tunnel and teach the pool NAI <-> HoA.
(b) The built-in server answers a real busybox udhcpc over a veth: a small harness in the peer
    namespace reads frames with an AF_PACKET socket, plays the DMPA (adds option 82 with the NAI),
    calls :meth:`DhcpServer.receive` and writes the replies to ``chaddr``. udhcpc must accept the
    OFFER/ACK and configure the address, gateway, MTU and its own resolv.conf.

Addresses: 192.0.2.0/24 between the namespaces, 198.51.100.0/24 for the MSs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require
from tests.netns.dhcp_helpers import (
    ip,
    netns_etc,
    process,
    udp_listening,
    veth,
    wait_for,
)
from tests.netns.netns import namespace

NAI = "ms1@example.net"
GIADDR = "198.51.100.1"
SERVER = "192.0.2.2"

# Runs in the relay namespace: the DMPA's tunnel is played by calling from_dmpa() and collecting
# what send_tunnel() gets. Prints one JSON line with what happened, then exits (bounded).
RELAY_DRIVER = r"""
import asyncio, json, sys, time
from ipaddress import IPv4Address, IPv6Address
from router.adapters.dhcp_socket import RelayEndpoint, open_relay_socket
from router.core.pool import HoAPool
from router.services.dhcp_relay import DhcpRelay, DhcpRelayConfig
from router.wire.dhcp import *
from router.wire.ipv4 import IPv4Packet, IPProto
from router.wire.udp import UdpDatagram

GIADDR, SERVER, NAI = IPv4Address(sys.argv[1]), IPv4Address(sys.argv[2]), sys.argv[3]
DMPA = IPv6Address("2001:db8:1::1")
MAC = bytes.fromhex("02000000aa01")

def tunnelled(kind, xid, extra=()):
    opts = [DhcpOption.from_uint(DhcpOptionCode.MESSAGE_TYPE, kind, 1), *extra]
    m = DhcpMessage(BootpOp.BOOTREQUEST, xid, MAC, tuple(opts))
    m = m.with_relay_agent_info(RelayAgentInfo.of(subscriber_id=NAI.encode()))
    s, d = IPv4Address(0), IPv4Address("255.255.255.255")
    return IPv4Packet(s, d, IPProto.UDP, UdpDatagram(68, 67, m.encode()).encode(s, d)).encode()

async def main():
    got = asyncio.Queue()
    def send_tunnel(dmpa, data):
        p = IPv4Packet.decode(data)
        m = DhcpMessage.decode(UdpDatagram.decode(p.payload, src=p.src, dst=p.dst).payload)
        got.put_nowait((str(dmpa), str(p.dst), m))
    relay = DhcpRelay(DhcpRelayConfig(giaddr=GIADDR, servers=(SERVER,), remote_id=True),
                      HoAPool([]))
    endpoint = RelayEndpoint(relay, send_tunnel)
    transport = await open_relay_socket(endpoint)
    out = {}
    try:
        xid = 0x5eed0001
        offer = None
        for attempt in range(8):  # servers may still be starting: retransmit, bounded
            endpoint.from_dmpa(tunnelled(DhcpMessageType.DISCOVER, xid), DMPA)
            try:
                dmpa, dst, offer = await asyncio.wait_for(got.get(), 1.0)
                break
            except asyncio.TimeoutError:
                continue
        assert offer is not None, relay.counters
        out["offer"] = [dmpa, dst, int(offer.message_type), str(offer.yiaddr),
                        offer.relay_agent_info is not None]
        req = tunnelled(DhcpMessageType.REQUEST, xid, (
            DhcpOption.from_addresses(DhcpOptionCode.REQUESTED_IP, offer.yiaddr),
            DhcpOption.from_addresses(DhcpOptionCode.SERVER_ID, offer.server_id)))
        endpoint.from_dmpa(req, DMPA)
        for _ in range(10):  # skip OFFERs answering retransmitted DISCOVERs
            dmpa, dst, ack = await asyncio.wait_for(got.get(), 5.0)
            if ack.message_type != DhcpMessageType.OFFER:
                break
        out["ack"] = [dmpa, dst, int(ack.message_type), str(ack.yiaddr),
                      ack.relay_agent_info is not None, ack.lease_time]
        out["pool"] = str(relay.pool.allocated_to(NAI))
        out["counters"] = dict(relay.counters)
    finally:
        transport.close()
    print(json.dumps(out), flush=True)

asyncio.run(asyncio.wait_for(main(), 30))
"""


def kea_config(tmp: Path, interface: str) -> Path:
    config = {
        "Dhcp4": {
            "interfaces-config": {"interfaces": [interface], "dhcp-socket-type": "udp"},
            "lease-database": {
                "type": "memfile",
                "persist": True,
                "name": str(tmp / "kea-leases4.csv"),
                "lfc-interval": 0,
            },
            "valid-lifetime": 600,
            "subnet4": [
                {
                    "id": 1,
                    "subnet": "198.51.100.0/24",
                    "pools": [{"pool": "198.51.100.100 - 198.51.100.150"}],
                    "option-data": [{"name": "routers", "data": GIADDR}],
                }
            ],
            "loggers": [
                {
                    "name": "kea-dhcp4",
                    "output_options": [{"output": "stdout"}],
                    "severity": "INFO",
                }
            ],
        }
    }
    path = tmp / "kea-dhcp4.json"
    path.write_text(json.dumps(config))
    return path


def _relay_against(tmp: Path, start_server: str) -> dict[str, object]:
    with namespace("srv") as srv, namespace("rly") as rly:
        veth(rly, "r0", "192.0.2.1/24", srv, "s0", f"{SERVER}/24")
        ip(rly, "addr", "add", f"{GIADDR}/32", "dev", "lo")  # the DLMAP's MS-subnet address
        ip(srv, "route", "add", "198.51.100.0/24", "via", "192.0.2.1")
        if start_server == "kea":
            argv = ["/usr/sbin/kea-dhcp4", "-c", str(kea_config(tmp, "s0"))]
            env = {"KEA_PIDFILE_DIR": str(tmp), "KEA_LOCKFILE_DIR": str(tmp)}
        else:
            argv = [
                "/usr/sbin/dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                f"--dhcp-leasefile={tmp / 'dnsmasq.leases'}",
                f"--pid-file={tmp / 'dnsmasq.pid'}",
                "--port=0",
                "--interface=s0",
                "--bind-interfaces",
                "--dhcp-range=198.51.100.100,198.51.100.150,255.255.255.0,600",
                f"--dhcp-option=option:router,{GIADDR}",
                "--dhcp-authoritative",
                "--no-ping",
                "--user=root",
                "--group=root",
                "--log-dhcp",
            ]
            env = {}
        log = tmp / f"{start_server}.log"
        with process(srv, argv, log, env) as daemon:

            def up() -> bool:
                if daemon.poll() is not None:
                    raise AssertionError(f"{start_server} exited:\n{log.read_text()}")
                return udp_listening(srv, 67)

            try:
                wait_for(up, 20, f"{start_server} listening on port 67")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{log.read_text()}") from exc
            result = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    rly,
                    sys.executable,
                    "-c",
                    RELAY_DRIVER,
                    GIADDR,
                    SERVER,
                    NAI,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=Path(__file__).resolve().parents[2],
                check=False,
            )
            if result.returncode != 0:
                raise AssertionError(f"relay driver:\n{result.stderr}\n{log.read_text()}")
            return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.root
@pytest.mark.parametrize("server", ["kea", "dnsmasq"])
def test_relay_against_real_server(root: None, server: str, tmp_path: Path) -> None:
    binary = {"kea": "/usr/sbin/kea-dhcp4", "dnsmasq": "/usr/sbin/dnsmasq"}[server]
    require(os.access(binary, os.X_OK), f"{binary} is not installed (make test installs it)")
    out = _relay_against(tmp_path, server)
    dmpa, dst, kind, yiaddr, has82 = out["offer"]  # type: ignore[misc]
    assert dmpa == "2001:db8:1::1" and kind == 2 and not has82
    assert yiaddr.startswith("198.51.100.") and dst in (yiaddr, "255.255.255.255")
    dmpa, dst, kind, ack_addr, has82, lease = out["ack"]  # type: ignore[misc]
    assert (dmpa, kind, ack_addr, has82) == ("2001:db8:1::1", 5, yiaddr, False)
    assert lease == 600
    # The DLMAP learned NAI <-> HoA from the ACK: the seed 6 PBU check will pass.
    assert out["pool"] == yiaddr
    counters = out["counters"]
    assert isinstance(counters, dict) and counters["learn.recorded"] == 1


# --- (b) udhcpc against the built-in server ---------------------------------------------------

HARNESS = r"""
import json, socket, sys, time
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from router.core.pool import HoAPool
from router.services.dhcp_server import DhcpServer, DhcpServerConfig, parse_request
from router.core.actions import SendTunnel
from router.wire.dhcp import BootpOp, RelayAgentInfo
from router.wire.ipv4 import IPv4Packet

ifname, nai, state_path, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
GW = IPv4Address("198.51.100.1")
DMPA = IPv6Address("2001:db8:1::1")
cfg = DhcpServerConfig(server_id=GW, gateway=GW, network=IPv4Network("198.51.100.0/24"),
                       lease_time=600, max_lifetime=600, dns=(IPv4Address("203.0.113.53"),),
                       mtu=1400)
server = DhcpServer(cfg, HoAPool([IPv4Network("198.51.100.64/28")]))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((ifname, 0))
s.settimeout(0.2)
own = s.getsockname()[4]
seen = []
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        frame, addr = s.recvfrom(4096)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING or len(frame) < 14:
        continue
    data = bytearray(frame[14:])
    ihl = (data[0] & 15) * 4 if data else 0
    if len(data) >= ihl + 8 and data[9] == 17:
        # A veth leaves a kernel-sent UDP checksum unfinished (offload): the DMPA would get it
        # finished from a real NIC. Zero means "no checksum" in IPv4 (RFC 768).
        data[ihl + 6 : ihl + 8] = b"\0\0"
    msg, why = parse_request(bytes(data))
    if msg is None or msg.op != BootpOp.BOOTREQUEST:
        continue
    # The DMPA's part: tag the MS's DHCP with its NAI (option 82, subscriber-id).
    msg = msg.with_relay_agent_info(RelayAgentInfo.of(subscriber_id=nai.encode()))
    seen.append(int(msg.message_type or 0))
    for action in server.receive(msg, DMPA, time.monotonic()):
        if isinstance(action, SendTunnel):
            p = IPv4Packet.decode(action.packet)
            dst = b"\xff" * 6 if p.dst == IPv4Address("255.255.255.255") else msg.chaddr[:6]
            s.send(dst + own + b"\x08\x00" + action.packet)
    with open(state_path + ".tmp", "w") as f:
        json.dump({"seen": seen, "counters": dict(server.counters),
                   "owner": {k: str(v.address) for k, v in server.leases.items()},
                   "pool": str(server.pool.allocated_to(nai))}, f)
    import os
    os.replace(state_path + ".tmp", state_path)
"""

SCRIPT = """#!/bin/sh
# udhcpc event script for the test: configure the namespace's link, log what udhcpc saw.
echo "$1 ip=$ip mask=$mask router=$router dns=$dns lease=$lease mtu=$mtu serverid=$serverid" \\
    >> "$DHCP_LOG"
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/$mask" dev "$interface"
        [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
        for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
        : > "$RESOLV_CONF"
        for d in $dns; do echo "nameserver $d" >> "$RESOLV_CONF"; done
        ;;
esac
exit 0
"""


def _udhcpc(ns: str, tmp: Path, resolv: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    script = tmp / "udhcpc.sh"
    bounded = ["-q", "-n", "-f", "-t", "5", "-T", "1", "-A", "1"]
    return subprocess.run(
        ["ip", "netns", "exec", ns, "udhcpc", "-i", "c0", "-s", str(script), *bounded, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DHCP_LOG": str(tmp / "udhcpc.events"), "RESOLV_CONF": str(resolv)},
        check=False,
    )


@pytest.mark.root
def test_builtin_server_configures_real_udhcpc(root: None, tmp_path: Path) -> None:
    udhcpc = shutil.which("udhcpc")
    require(udhcpc is not None, "udhcpc is not installed (make test installs busybox-udhcpc)")
    script = tmp_path / "udhcpc.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    state = tmp_path / "server.json"
    with namespace("cli") as cli, namespace("dlm") as dlm, netns_etc(cli) as etc:
        veth(dlm, "h0", "198.51.100.1/24", cli, "c0", "")
        resolv = etc / "resolv.conf"
        argv = [sys.executable, "-c", HARNESS, "h0", NAI, str(state), "90"]
        with process(dlm, argv, tmp_path / "harness.log"):
            first = _udhcpc(cli, tmp_path, resolv)
            events = (tmp_path / "udhcpc.events").read_text()
            assert first.returncode == 0, first.stderr + events
            assert "bound ip=198.51.100.65 mask=24 router=198.51.100.1" in events, events
            assert "dns=203.0.113.53 lease=600 mtu=1400 serverid=198.51.100.1" in events
            addr = ip(cli, "-4", "addr", "show", "dev", "c0")
            assert "inet 198.51.100.65/24" in addr and "mtu 1400" in addr
            assert "default via 198.51.100.1" in ip(cli, "route", "show")
            assert resolv.read_text() == "nameserver 203.0.113.53\n"

            def server_state() -> dict[str, object] | None:
                try:
                    return dict(json.loads(state.read_text()))
                except (OSError, ValueError):
                    return None

            seen = wait_for(server_state, 10, "the harness state")
            assert seen["seen"][:2] == [1, 3]  # type: ignore[index]
            assert seen["pool"] == "198.51.100.65"

            # Again, as a daemon this time: the same NAI gets the same address (INIT again,
            # a new xid); SIGUSR1 makes it renew (unicast REQUEST with ciaddr), SIGUSR2 release.
            ip(cli, "-4", "addr", "flush", "dev", "c0")
            events_file = tmp_path / "udhcpc.events"
            events_file.write_text("")
            argv = ["udhcpc", "-i", "c0", "-s", str(script), "-f", "-t", "5", "-T", "1"]
            env = {"DHCP_LOG": str(events_file), "RESOLV_CONF": str(resolv)}
            with process(cli, argv, tmp_path / "udhcpc2.log", env) as client:

                def client_event(word: str) -> bool:
                    if client.poll() is not None:
                        raise AssertionError((tmp_path / "udhcpc2.log").read_text())
                    return f"{word} ip=198.51.100.65 " in events_file.read_text()

                def counted(name: str) -> dict[str, object] | None:
                    current = server_state()
                    counters = current["counters"] if current else {}
                    assert isinstance(counters, dict)
                    return current if counters.get(name) else None

                wait_for(lambda: client_event("bound"), 20, "udhcpc bound again")
                os.kill(client.pid, signal.SIGUSR1)
                wait_for(lambda: client_event("renew"), 20, "udhcpc renewed")
                wait_for(lambda: counted("request.renewing"), 10, "a RENEWING request")
                os.kill(client.pid, signal.SIGUSR2)
                try:
                    after = wait_for(lambda: counted("release.done"), 10, "the RELEASE")
                except AssertionError as exc:
                    log2 = (tmp_path / "udhcpc2.log").read_text()
                    raise AssertionError(f"{exc}: {server_state()}\n{log2}") from exc
            assert after["owner"] == {NAI: "198.51.100.65"}
            assert after["pool"] == "198.51.100.65"  # kept for this NAI after the release
