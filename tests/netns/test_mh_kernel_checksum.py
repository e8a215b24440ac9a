"""The Linux kernel checks our MH checksums: what we compute is what it accepts.

A raw ``IPPROTO_MH`` socket verifies the checksum at offset 4 and silently drops a bad one
(wire-reference 3.2). We send with the kernel's own checksumming turned off
(``IPV6_CHECKSUM = -1``), so only our bytes are on the wire, inside a namespace of our own.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv6Address

import pytest

from netlmm_lab.netns import namespace
from router.wire.dialect import DRAFT, RFC5844
from router.wire.mh import (
    BindingAck,
    BindingError,
    BindingRevocationAck,
    BindingRevocationIndication,
    BindingUpdate,
    Heartbeat,
    MobilityMessage,
)
from router.wire.mh_options import (
    IPv4HomeAddressRequest,
    MobileNodeIdentifier,
    RestartCounter,
    SeedIPv4HomeAddress,
    Timestamp,
)
from tests.netns.children import run_child

LOOPBACK = IPv6Address("::1")
NAI = MobileNodeIdentifier.from_nai("ms1@example.net")

MESSAGES: list[MobilityMessage] = [
    BindingUpdate(1, DRAFT.pbu_flags(), 900, (NAI, SeedIPv4HomeAddress(0, IPv4Address("0.0.0.0")))),
    BindingUpdate(
        2,
        RFC5844.pbu_flags(),
        900,
        (NAI, Timestamp.from_unix(1.7e9), IPv4HomeAddressRequest(IPv4Address("192.0.2.9"))),
    ),
    BindingAck(
        0,
        DRAFT.pba_flags(ipv4=True),
        1,
        900,
        (NAI, SeedIPv4HomeAddress(1, IPv4Address("192.0.2.9"))),
    ),
    BindingRevocationIndication(2, 7, 0xC000, (NAI,)),
    BindingRevocationAck(0, 7, 0xC000),
    BindingError(2),
    Heartbeat(3, 0, (RestartCounter(1),)),
]


@pytest.mark.root
def test_kernel_accepts_our_checksums_and_drops_a_bad_one(root: None) -> None:
    wires = [m.encode(LOOPBACK, LOOPBACK) for m in MESSAGES]
    with namespace("mh") as ns:
        report = json.loads(run_child(ns, "mh_checksum", json.dumps([w.hex() for w in wires])))
    assert report["verify_offset"] == 4  # the receiving socket verifies at offset 4
    for wire, received in zip(wires, report["results"], strict=True):
        # Only the good copy arrives: the corrupted one was dropped by the kernel's check.
        assert received == [wire.hex()]
