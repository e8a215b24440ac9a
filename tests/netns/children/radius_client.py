"""The client side of the RADIUS lab (``tests/netns/radius``), run inside its NAS namespace.

``python -m tests.netns.children.radius_client '<json spec>'`` authenticates one MS with
:class:`router.adapters.radius.RadiusClient` (or the AAA front), optionally with a fake server
socket in the same loop, and prints one JSON line: the outcome, the counters, the elapsed time
and what the fake server saw.

Fake servers (``spec["fake"]``, bound in this namespace, never in the root one):

- ``silent``: reads requests and never answers (a server that is down or drops us);
- ``bad``: answers each request with four bad replies: a wrong Identifier, a wrong Response
  Authenticator (another secret), no Message-Authenticator, a wrong Message-Authenticator;
- ``bad_then_good``: the same four, then a good Access-Accept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from ipaddress import IPv6Address, ip_address
from typing import Any, cast

from pyrad.packet import AccessAccept, AuthPacket

from router.adapters.aaa import AAA, AAAConfig
from router.adapters.radius import (
    Credentials,
    RadiusClient,
    RadiusConfig,
    RadiusServer,
    dictionary,
)
from router.wire.ethernet import MacAddress


class FakeServer(asyncio.DatagramProtocol):
    def __init__(self, behaviour: str, secret: bytes) -> None:
        self.behaviour = behaviour
        self.secret = secret
        self.requests = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport is not a DatagramTransport subclass in 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.requests += 1
        if self.behaviour == "silent" or self.transport is None:
            return
        request = AuthPacket(packet=data, secret=self.secret, dict=dictionary())
        for reply in self.replies(request):
            self.transport.sendto(reply, addr)

    def accept(self, request: AuthPacket, secret: bytes, sign: bool = True) -> bytes:
        reply = request.CreateReply(message_authenticator=sign)
        reply.code = AccessAccept
        reply.secret = secret
        reply["PMIP6-Home-LMA-IPv6-Address"] = "2001:db8:5::10"
        reply["Mobile-Node-Identifier"] = b"fake@home.example"
        raw: bytes = reply.ReplyPacket()
        return raw

    def replies(self, request: AuthPacket) -> list[bytes]:
        good = self.accept(request, self.secret)
        wrong_id = bytearray(self.accept(request, self.secret))
        wrong_id[1] = (wrong_id[1] + 1) % 256
        wrong_id[4:20] = hashlib.md5(
            bytes(wrong_id[:4]) + request.authenticator + bytes(wrong_id[20:]) + self.secret
        ).digest()
        wrong_secret = self.accept(request, b"not-the-secret")
        unsigned = self.accept(request, self.secret, sign=False)
        # A Message-Authenticator of zeros, with a Response Authenticator that is right.
        at = good.index(bytes((80, 18)), 20) + 2
        zeroed = good[:at] + bytes(16) + good[at + 16 :]
        zeroed = (
            zeroed[:4]
            + hashlib.md5(zeroed[:4] + request.authenticator + zeroed[20:] + self.secret).digest()
            + zeroed[20:]
        )
        bad = [bytes(wrong_id), wrong_secret, unsigned, zeroed]
        return [*bad, good] if self.behaviour == "bad_then_good" else bad


def _credentials(spec: dict[str, Any]) -> Credentials | None:
    """A PPP MS's proof: ``password`` (PAP), or ``chap_secret`` (its CHAP-MD5 response to a
    fresh challenge, computed here as the MS would, RFC 1994 2)."""
    if "password" in spec:
        return Credentials(password=spec["password"].encode())
    if "chap_secret" in spec:
        identifier, challenge = 42, os.urandom(16)
        response = hashlib.md5(
            bytes((identifier,)) + spec["chap_secret"].encode() + challenge
        ).digest()
        return Credentials(chap=(identifier, challenge, response))
    return None


def _server(entry: dict[str, Any]) -> RadiusServer:
    return RadiusServer(ip_address(entry["address"]), entry["secret"].encode(), entry["port"])


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    fake: FakeServer | None = None
    fake_transport = None
    if "fake" in spec:
        entry = spec["fake"]
        fake = FakeServer(entry["behaviour"], entry["secret"].encode())
        fake_transport, _ = await loop.create_datagram_endpoint(
            lambda: fake, local_addr=(entry["address"], entry["port"])
        )
    config = RadiusConfig(
        tuple(_server(s) for s in spec["servers"]),
        nas_identifier="dmpa-test",
        nas_ipv6_address=IPv6Address(spec.get("nas_ipv6", "2001:db8:5::1")),
        dynamic_mode=spec.get("dynamic_mode", "dhcp"),
        mac_realm=spec.get("mac_realm"),
        timeout=spec.get("timeout", 2.0),
        retries=spec.get("retries", 1),
    )
    mac = MacAddress.parse(spec["mac"])
    started = time.monotonic()
    result: dict[str, Any]
    if spec.get("front"):
        front = AAA(AAAConfig(backend="radius", radius=config))
        profile = await front.authenticate(mac, spec.get("nai"))
        counters = front.counters
        front.close()
        result = {"result": "accept" if profile else "none", "dhcp4_server": None, "server": None}
    elif spec.get("concurrent"):
        # Many MSs at once on one client: one socket, distinct Identifiers, answers matched.
        async with RadiusClient(config) as client:
            outcomes = await asyncio.gather(
                *(client.access(mac, n) for n in spec["concurrent"]), return_exceptions=False
            )
            counters = client.counters
        return {
            "counters": {k: v for k, v in counters.items() if v},
            "results": [[o.result, o.profile.nai if o.profile else None] for o in outcomes],
        }
    else:
        async with RadiusClient(config) as client:
            outcome = await client.access(mac, spec.get("nai"), _credentials(spec))
            counters = client.counters
        profile = outcome.profile
        result = {
            "result": outcome.result,
            "reason": outcome.reason,
            "dhcp4_server": str(outcome.dhcp4_server) if outcome.dhcp4_server else None,
            "server": str(outcome.server.address) if outcome.server else None,
        }
    result["elapsed"] = time.monotonic() - started
    result["counters"] = {k: v for k, v in counters.items() if v}
    result["profile"] = (
        None
        if profile is None
        else {
            "nai": profile.nai,
            "mode": profile.mode,
            "dlmap": str(profile.dlmap),
            "hoa": str(profile.hoa) if profile.hoa else None,
            "gateway": str(profile.gateway) if profile.gateway else None,
        }
    )
    result["max_wait"] = config.max_wait
    if fake is not None:
        result["fake_requests"] = fake.requests
    if fake_transport is not None:
        fake_transport.close()
    return result


def main(argv: list[str]) -> None:
    """``argv`` is ``[<json spec>]`` (see ``authenticate`` in test_radius.py)."""
    print(json.dumps(asyncio.run(run(json.loads(argv[0])))))


if __name__ == "__main__":
    main(sys.argv[1:])
