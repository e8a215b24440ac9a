"""A PPPoE/PPP client in the MS's namespace, written with scapy's codec (not the appliance's):
discovery, LCP, PAP or CHAP-MD5 (whichever the server asks for in LCP), IPCP (the home address
and DNS it is given), then ICMP echoes to a CN inside the session, and a PADT at the end when
asked. Argument: a JSON object {iface, nai, secret, cn, terminate, pcap}; prints one JSON line
and writes every PPPoE frame it received to ``pcap`` (for tshark).

This kernel has no PPP (no /dev/ppp), so pppd cannot be the MS; this process plays it on a raw
packet socket. Every wait is bounded; the server's LCP Echo-Requests are answered meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from scapy.layers.ppp import (
    PPP,
    PPP_IPCP,
    PPP_CHAP_ChallengeResponse,
    PPP_IPCP_Option_DNS1,
    PPP_IPCP_Option_IPAddress,
    PPP_LCP_Configure,
    PPP_LCP_Echo,
    PPP_LCP_Magic_Number_Option,
    PPP_LCP_MRU_Option,
    PPP_PAP_Request,
    PPP_PAP_Response,
    PPPoE,
    PPPoED,
    PPPoED_Tags,
    PPPoETag,
)

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
MAGIC = 0x4E4C4D53
LCP, PAP, CHAP, IPCP, IPV4 = 0xC021, 0xC023, 0xC223, 0x8021, 0x0021


class Client:
    def __init__(self, iface: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((iface, 0))
        self.mac = Path(f"/sys/class/net/{iface}/address").read_text().strip()
        self.ac = "ff:ff:ff:ff:ff:ff"
        self.session = 0
        self.echoes_answered = 0
        #: every PPPoE frame received, as it came off the wire (for tshark: ``pcap``)
        self.received: list[tuple[float, bytes]] = []

    def pcap(self, path: str) -> None:
        """The frames received, in a pcap file (libpcap format, Ethernet)."""
        with open(path, "wb") as out:
            out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            for stamp, data in self.received:
                seconds = int(stamp)
                micros = int((stamp - seconds) * 1e6)
                out.write(struct.pack("<IIII", seconds, micros, len(data), len(data)) + data)

    def send(self, packet: Any) -> None:
        self.sock.send(bytes(packet))

    def ppp(self, proto: int) -> Any:
        return Ether(src=self.mac, dst=self.ac) / PPPoE(sessionid=self.session) / PPP(proto=proto)

    def wait(self, want: Callable[[Any], bool], timeout: float, what: str) -> Any:
        """The next frame to us that ``want`` takes; LCP echoes answered on the way."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, address = self.sock.recvfrom(4096)
            except TimeoutError:
                break
            if address[2] == PACKET_OUTGOING:
                continue
            frame = Ether(data)
            if frame.dst != self.mac or frame.type not in (0x8863, 0x8864):
                continue
            self.received.append((time.time(), data))
            if PPP_LCP_Echo in frame and frame[PPP_LCP_Echo].code == 9:
                echo = frame[PPP_LCP_Echo]
                self.send(self.ppp(LCP) / PPP_LCP_Echo(code=10, id=echo.id, magic_number=MAGIC))
                self.echoes_answered += 1
                continue
            if want(frame):
                return frame
        raise SystemExit(f"timed out waiting for {what}")


def echo_reply(frame: Any, seq: int) -> bool:
    return IP in frame and ICMP in frame and frame[ICMP].type == 0 and frame[ICMP].seq == seq


def ipcp_answer(frame: Any, ident: int) -> bool:
    return (
        proto_is(frame, IPCP) and frame[PPP_IPCP].id == ident and frame[PPP_IPCP].code in (2, 3, 4)
    )


def proto_is(frame: Any, proto: int) -> bool:
    return PPP in frame and frame[PPP].proto == proto


def run(spec: dict[str, Any]) -> dict[str, Any]:
    c = Client(spec["iface"])
    try:
        return session(c, spec)
    finally:
        if spec.get("pcap"):
            c.pcap(spec["pcap"])


def session(c: Client, spec: dict[str, Any]) -> dict[str, Any]:
    began = time.monotonic()
    times: dict[str, float] = {}
    # --- discovery
    tags = [PPPoETag(tag_type=0x0101), PPPoETag(tag_type=0x0103, tag_value=b"netlmm")]
    c.send(Ether(src=c.mac, dst=c.ac) / PPPoED(code=0x09) / PPPoED_Tags(tag_list=tags))
    pado = c.wait(lambda f: PPPoED in f and f[PPPoED].code == 0x07, 5, "PADO")
    offered = {t.tag_type: bytes(t.tag_value) for t in pado[PPPoED_Tags].tag_list}
    c.ac = pado.src
    request = [PPPoETag(tag_type=0x0101), PPPoETag(tag_type=0x0104, tag_value=offered[0x0104])]
    c.send(Ether(src=c.mac, dst=c.ac) / PPPoED(code=0x19) / PPPoED_Tags(tag_list=request))
    pads = c.wait(lambda f: PPPoED in f and f[PPPoED].code == 0x65, 5, "PADS")
    c.session = pads[PPPoED].sessionid
    # --- LCP: ours (MRU, magic) and the server's (with the authentication protocol)
    options = [
        PPP_LCP_MRU_Option(max_recv_unit=1492),
        PPP_LCP_Magic_Number_Option(magic_number=MAGIC),
    ]
    c.send(c.ppp(LCP) / PPP_LCP_Configure(code=1, id=1, options=options))
    theirs, acked, auth = False, False, 0
    while not (theirs and acked):
        frame = c.wait(lambda f: proto_is(f, LCP) and PPP_LCP_Configure in f, 5, "LCP")
        conf = frame[PPP_LCP_Configure]
        if conf.code == 1:
            for option in conf.options:
                if option.type == 3:
                    auth = int(option.auth_protocol)
            c.send(c.ppp(LCP) / PPP_LCP_Configure(code=2, id=conf.id, options=conf.options))
            theirs = True
        elif conf.code == 2 and conf.id == 1:
            acked = True
    times["lcp"] = time.monotonic() - began
    # --- authentication: the user name is the NAI
    nai, secret = spec["nai"].encode(), spec["secret"].encode()
    if auth == PAP:
        c.send(c.ppp(PAP) / PPP_PAP_Request(id=1, username=nai, password=secret))
        answer = c.wait(lambda f: PPP_PAP_Response in f, 10, "PAP answer")
        ok = answer[PPP_PAP_Response].code == 2
    elif auth == CHAP:
        challenge = c.wait(
            lambda f: proto_is(f, CHAP) and f[PPP_CHAP_ChallengeResponse].code == 1, 5, "CHAP"
        )[PPP_CHAP_ChallengeResponse]
        value = hashlib.md5(bytes([challenge.id]) + secret + bytes(challenge.value)).digest()
        response = PPP_CHAP_ChallengeResponse(
            code=2, id=challenge.id, value=value, optional_name=nai
        )
        c.send(c.ppp(CHAP) / response)
        answer = c.wait(
            lambda f: proto_is(f, CHAP) and bytes(f[PPP].payload)[0] in (3, 4), 10, "CHAP answer"
        )
        ok = bytes(answer[PPP].payload)[0] == 3
    else:
        raise SystemExit(f"the server asked for authentication protocol {auth:#x}")
    times["auth"] = time.monotonic() - began
    result: dict[str, Any] = {
        "session": c.session,
        "ac": c.ac,
        "ac_name": offered.get(0x0102, b"").decode(),
        "auth": {PAP: "pap", CHAP: "chap"}[auth],
        "authenticated": ok,
    }
    if not ok:
        return result
    # --- IPCP: the server's request comes after the PBA; ours asks for an address and a DNS
    server = c.wait(lambda f: proto_is(f, IPCP) and f[PPP_IPCP].code == 1, 15, "IPCP request")
    times["ipcp_request"] = time.monotonic() - began
    ipcp = server[PPP_IPCP]
    c.send(c.ppp(IPCP) / PPP_IPCP(code=2, id=ipcp.id, options=ipcp.options))
    hoa, dns = "0.0.0.0", "0.0.0.0"
    for ident in (1, 2):
        ask = [PPP_IPCP_Option_IPAddress(data=hoa), PPP_IPCP_Option_DNS1(data=dns)]
        c.send(c.ppp(IPCP) / PPP_IPCP(code=1, id=ident, options=ask))
        reply = c.wait(partial(ipcp_answer, ident=ident), 5, "IPCP answer")[PPP_IPCP]
        if reply.code == 2:
            break
        for option in reply.options:
            if option.type == 3:
                hoa = option.data
            elif option.type == 129:
                dns = option.data
    result |= {"hoa": hoa, "dns": dns, "gateway": ipcp.options[0].data}
    times["ipcp"] = time.monotonic() - began
    # --- traffic: ICMP echo to the CN inside the session (the MS's IPv4 over PPP)
    rtts = []
    for seq in range(1, 4):
        sent = time.monotonic()
        c.send(c.ppp(IPV4) / IP(src=hoa, dst=spec["cn"]) / ICMP(id=0x4E4C, seq=seq))
        reply = c.wait(partial(echo_reply, seq=seq), 5, f"echo reply {seq}")
        rtts.append((time.monotonic() - sent) * 1000)
        assert reply[PPPoE].sessionid == c.session and reply[IP].dst == hoa
    result["rtt_ms"] = rtts
    if spec.get("terminate"):
        c.send(Ether(src=c.mac, dst=c.ac) / PPPoED(code=0xA7, sessionid=c.session))
    result["times"] = times
    result["echoes_answered"] = c.echoes_answered
    return result


def main() -> None:
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)


if __name__ == "__main__":
    main()
