"""PPPoE and PPP frames (router/wire/ppp.py) against an independent codec: scapy builds what
we decode and decodes what we build, field by field; garbage raises only DecodeError."""

from __future__ import annotations

import random
import struct
from ipaddress import IPv4Address

import pytest
from scapy.layers.ppp import (
    PPP,
    PPP_IPCP,
    PPP_CHAP_ChallengeResponse,
    PPP_IPCP_Option_DNS1,
    PPP_IPCP_Option_IPAddress,
    PPP_LCP_Auth_Protocol_Option,
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

from router.wire.errors import DecodeError
from router.wire.ppp import (
    CHAP_MD5,
    ChapPacket,
    Code,
    ControlPacket,
    IpcpOption,
    LcpOption,
    Message,
    Option,
    PapRequest,
    PPPoECode,
    PPPoEFrame,
    Protocol,
    Tag,
    TagType,
)

NAI = b"alice@home.example"


def test_discovery_both_ways() -> None:
    ours = PPPoEFrame.discovery(
        PPPoECode.PADO,
        0,
        (Tag(TagType.AC_NAME, b"dmpa1"), Tag(TagType.SERVICE_NAME), Tag(TagType.AC_COOKIE, b"c")),
    ).encode()
    theirs = PPPoED(ours)
    assert (theirs.version, theirs.type, theirs.code, theirs.sessionid) == (1, 1, 0x07, 0)
    tags = [(t.tag_type, bytes(t.tag_value)) for t in theirs[PPPoED_Tags].tag_list]
    assert tags == [(0x0102, b"dmpa1"), (0x0101, b""), (0x0104, b"c")]

    built = PPPoED(code=0x09) / PPPoED_Tags(
        tag_list=[
            PPPoETag(tag_type=0x0101, tag_value=b""),
            PPPoETag(tag_type=0x0103, tag_value=b"hu"),
        ]
    )
    frame = PPPoEFrame.decode(bytes(built) + b"\0" * 20)  # Ethernet padding is ignored
    assert frame.code == PPPoECode.PADI and frame.session == 0
    assert frame.tags() == (Tag(TagType.SERVICE_NAME), Tag(TagType.HOST_UNIQ, b"hu"))


def test_lcp_configure_request_both_ways() -> None:
    options = (
        Option(LcpOption.MRU, struct.pack("!H", 1492)),
        Option(LcpOption.AUTH_PROTOCOL, struct.pack("!HB", Protocol.CHAP, CHAP_MD5)),
        Option(LcpOption.MAGIC_NUMBER, struct.pack("!I", 0x1234ABCD)),
    )
    lcp = ControlPacket.configure(Code.CONFIGURE_REQUEST, 7, options)
    ours = PPPoEFrame.session_ppp(0x2A, Protocol.LCP, lcp.encode()).encode()
    theirs = PPPoE(ours)
    assert theirs.sessionid == 0x2A and theirs[PPP].proto == 0xC021
    conf = theirs[PPP_LCP_Configure]
    assert (conf.code, conf.id, conf.len) == (1, 7, 4 + 4 + 5 + 6)
    assert conf.options[0].max_recv_unit == 1492
    assert conf.options[1].auth_protocol == 0xC223 and conf.options[1].algorithm == 5
    assert conf.options[2].magic_number == 0x1234ABCD

    built = (
        PPPoE(sessionid=3)
        / PPP(proto=0xC021)
        / PPP_LCP_Configure(
            code=1,
            id=9,
            options=[
                PPP_LCP_MRU_Option(max_recv_unit=1400),
                PPP_LCP_Auth_Protocol_Option(auth_protocol=0xC023),
                PPP_LCP_Magic_Number_Option(magic_number=7),
            ],
        )
    )
    protocol, info = PPPoEFrame.decode(bytes(built)).ppp()
    assert protocol == Protocol.LCP
    packet = ControlPacket.decode(info)
    assert (packet.code, packet.identifier) == (Code.CONFIGURE_REQUEST, 9)
    assert packet.options() == (
        Option(LcpOption.MRU, b"\x05\x78"),
        Option(LcpOption.AUTH_PROTOCOL, b"\xc0\x23"),
        Option(LcpOption.MAGIC_NUMBER, b"\0\0\0\x07"),
    )


def test_echo_and_terminate() -> None:
    echo = ControlPacket(Code.ECHO_REQUEST, 4, struct.pack("!I", 0xCAFE) + b"x")
    theirs = PPP_LCP_Echo(echo.encode())
    assert (theirs.code, theirs.id, theirs.magic_number) == (9, 4, 0xCAFE)
    assert ControlPacket.decode(bytes(PPP_LCP_Echo(code=10, id=4, magic_number=5))).magic() == 5


def test_pap_both_ways() -> None:
    ours = PapRequest(3, NAI, b"secret").encode()
    theirs = PPP_PAP_Request(ours)
    assert (theirs.id, theirs.username, theirs.password) == (3, NAI, b"secret")
    built = bytes(PPP_PAP_Request(id=5, username=NAI, password=b"pw"))
    assert PapRequest.decode(ControlPacket.decode(built)) == PapRequest(5, NAI, b"pw")
    ack = PPP_PAP_Response(Message(2, 5, b"welcome", pap=True).encode())
    assert (ack.code, ack.id, ack.message) == (2, 5, b"welcome")


def test_chap_both_ways() -> None:
    challenge = ChapPacket(1, 8, bytes(range(16)), b"dmpa1").encode()
    theirs = PPP_CHAP_ChallengeResponse(challenge)
    assert (theirs.code, theirs.id, theirs.value, theirs.optional_name) == (
        1,
        8,
        bytes(range(16)),
        b"dmpa1",
    )
    built = bytes(PPP_CHAP_ChallengeResponse(code=2, id=8, value=b"r" * 16, optional_name=NAI))
    assert ChapPacket.decode(ControlPacket.decode(built)) == ChapPacket(2, 8, b"r" * 16, NAI)


def test_ipcp_both_ways() -> None:
    options = (
        Option(IpcpOption.IP_ADDRESS, IPv4Address("192.0.2.100").packed),
        Option(IpcpOption.PRIMARY_DNS, IPv4Address("198.51.100.53").packed),
    )
    ours = ControlPacket.configure(Code.CONFIGURE_NAK, 2, options).encode()
    theirs = PPP_IPCP(ours)
    assert (theirs.code, theirs.id) == (3, 2)
    assert [(o.type, o.data) for o in theirs.options] == [
        (3, "192.0.2.100"),
        (129, "198.51.100.53"),
    ]
    built = bytes(
        PPP_IPCP(
            code=1,
            id=1,
            options=[
                PPP_IPCP_Option_IPAddress(data="0.0.0.0"),
                PPP_IPCP_Option_DNS1(data="0.0.0.0"),
            ],
        )
    )
    assert ControlPacket.decode(built).options() == (
        Option(IpcpOption.IP_ADDRESS, bytes(4)),
        Option(IpcpOption.PRIMARY_DNS, bytes(4)),
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x11\x09\x00\x00\x00\x05\x01\x01",  # LENGTH past the data
        b"\x21\x09\x00\x00\x00\x00",  # version 2
    ],
)
def test_bad_pppoe_headers(data: bytes) -> None:
    with pytest.raises(DecodeError):
        PPPoEFrame.decode(data)


def test_garbage_raises_only_decode_errors() -> None:
    rng = random.Random(17)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(3000):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
        for decode in (
            lambda d: PPPoEFrame(0, 0, d).tags(),
            lambda d: PPPoEFrame(0, 0, d).ppp(),
            lambda d: ControlPacket.decode(d).options(),
            lambda d: PapRequest.decode(ControlPacket.decode(d)),
            lambda d: ChapPacket.decode(ControlPacket.decode(d)),
            PPPoEFrame.decode,
        ):
            try:
                decode(data)
                outcomes["decoded"] += 1
            except DecodeError:
                outcomes["refused"] += 1
    assert outcomes["decoded"] > 100 and outcomes["refused"] > 100, outcomes
