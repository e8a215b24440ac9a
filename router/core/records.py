"""How the DLMAP writes its state as rows (:class:`~router.core.actions.Persist` records):
addresses as text, and the revocations in flight (:class:`Revocation`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address
from socket import inet_ntoa

from router.wire.mh import BindingRevocationIndication
from router.wire.mh_options import SeedIPv4HomeAddress


def text(address: IPv4Address | IPv6Address) -> str:
    """Addresses as text for the database, quickly: the ipaddress module formats in Python."""
    if address.version == 4:
        return inet_ntoa(address.packed)
    return _text6(address)


@lru_cache(maxsize=65536)
def _text6(address: IPv4Address | IPv6Address) -> str:
    return str(address)  # DMPAs are few: cached


@dataclass(slots=True)
class Revocation:
    """A BRI in flight: retransmitted until its BRA comes, or ``retries_left`` runs out."""

    nai: str
    peer: IPv6Address
    message: BindingRevocationIndication
    retries_left: int


def revocation_key(key: tuple[IPv6Address, int]) -> str:
    """The row key of the revocation of (peer, BRI sequence number)."""
    return f"{text(key[0])}/{key[1]}"


def revocation_record(
    nai: str, peer: IPv6Address, bri: BindingRevocationIndication
) -> dict[str, object]:
    """The row of a revocation in flight: what re-sends its BRI after a restart."""
    seed = bri.find(SeedIPv4HomeAddress)
    return {
        "nai": nai,
        "peer": text(peer),
        "sequence": bri.sequence,
        "trigger": bri.trigger,
        "flags": bri.flags,
        "hoa": text(seed.address) if seed is not None else None,
        "option_sequence": seed.sequence if seed is not None else None,
    }
