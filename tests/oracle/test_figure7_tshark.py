"""Seed figure 7 (handover) as the pair harness plays it, decoded by Wireshark field by field.

A DLMAP and two DMPAs in memory (tests/pair: every message through the wire codec) register an
MS at DMPA 1 and hand it over to DMPA 2. Steps 3 to 5 of the figure - "Proxy Binding Revocation
with IPv4 HoA option" to the old DMPA, "Proxy Binding Revocation Ack. with IPv4 HoA option"
back, then "Proxy MIP6 BA with IPv4 HoA option" to the new DMPA - are written to a pcap exactly
as they left (same bytes, same addresses, so the checksums must verify) and tshark's decode of
each is compared with what was encoded (tests/oracle/test_mh_tshark.py's ``compare``), in both
dialects. The pcap is kept under the test's tmp_path for a look in Wireshark.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from router.core.dmpa import Profile
from router.wire.constants import IPPROTO_MH
from router.wire.dialect import DRAFT, RFC5844, Dialect
from router.wire.ethernet import MacAddress
from router.wire.mh import BindingAck, BindingRevocationAck, BindingRevocationIndication
from tests.oracle.test_mh_tshark import compare
from tests.oracle.tshark import Dissection, Field, dissect, ipv6_packet, write_pcap
from tests.pair.harness import DLMAP_ADDRESS, DMPA1, DMPA2, Pair, Wire

pytestmark = pytest.mark.tshark

MS = MacAddress.parse("02:00:00:00:00:01")
NAI = "ms1@example.net"


def figure_7(dialect: Dialect) -> tuple[list[Wire], IPv4Address]:
    """Register, hand over; the BRI, BRA and new PBA on the wire, and the MS's HoA."""
    pair = Pair(dialect)
    pair.profiles[MS] = Profile(NAI, "dlmap", DLMAP_ADDRESS)
    pair.attach(MS, DMPA1)
    hoa = pair.dmpas[DMPA1].visitors[MS].hoa
    assert hoa is not None
    pair.advance(10)
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(1)
    steps = [w for w in pair.sent if w.dst == DMPA1 or w.src == DMPA1 or w.dst == DMPA2][-3:]
    kinds = [type(w.message) for w in steps]
    assert kinds == [BindingRevocationIndication, BindingRevocationAck, BindingAck]
    assert [(w.src, w.dst) for w in steps] == [
        (DLMAP_ADDRESS, DMPA1),
        (DMPA1, DLMAP_ADDRESS),
        (DLMAP_ADDRESS, DMPA2),
    ]
    return steps, hoa


def field(dissection: Dissection, name: str) -> Field:
    found = [f for f in dissection.fields if f.name == name]
    assert found, f"tshark shows no {name}"
    return found[0]


@pytest.mark.parametrize("dialect", [DRAFT, RFC5844], ids=["draft", "rfc5844"])
def test_figure_7_bri_bra_and_pba_carry_the_hoa_option_as_tshark_reads_them(
    tshark_path: str, tmp_path: Path, dialect: Dialect
) -> None:
    steps, hoa = figure_7(dialect)
    pcap = tmp_path / f"figure7-{dialect.name}.pcap"
    write_pcap(pcap, [ipv6_packet(w.src, w.dst, IPPROTO_MH, w.data) for w in steps])
    dissections = dissect(tshark_path, pcap, "mipv6")
    assert len(dissections) == 3
    for wire, dissection in zip(steps, dissections, strict=True):
        problems = compare(wire.message, wire.data, dissection.fields)
        assert problems == [], f"{type(wire.message).__name__}: {problems}"
        assert not dissection.malformed
    bri, bra, pba = dissections
    assert field(bri, "mip6.bri_br.type").show == "1" and field(bra, "mip6.bri_br.type").show == "2"
    assert field(bra, "mip6.bri_status").show == "0"
    assert field(bri, "mip6.bri_seqnr").show == field(bra, "mip6.bri_seqnr").show
    assert field(pba, "mip6.ba.status").show == "0"
    for dissection in (bri, bra, pba):  # the MN-ID: the MS's NAI in each
        assert field(dissection, "mip6.mnid.identifier").value == NAI.encode().hex()
    if dialect.name == "draft":
        # The seed option is the Experimental option (type 18) to tshark; the option's raw
        # bytes: type, length, Seq# (the per-MS sequence number), the HoA.
        bri_seq, bra_seq, pba_seq = (
            field(d, "mip6.options.em").value[4:8] for d in (bri, bra, pba)
        )
        assert bri_seq == bra_seq == pba_seq != "0000"  # the per-MS sequence number
        for dissection in (bri, bra, pba):
            assert field(dissection, "mip6.options.em").value.endswith(hoa.packed.hex())
        assert field(bri, "mip6.bri_iv").show == "1" and field(bra, "mip6.bri_av").show == "1"
    else:
        for dissection in (bri, bra):  # the IPv4 HoA Request option (36) names the HoA
            assert field(dissection, "mip6.options.ipv4hareq").show
            assert field(dissection, "mip6.ipv4ha.ha").show == str(hoa)
        assert field(pba, "mip6.options.ipv4harep").show
        assert field(pba, "mip6.ipv4ha.ha").show == str(hoa)
        assert field(pba, "mip6.ipv4aa.sts").show == "0"
