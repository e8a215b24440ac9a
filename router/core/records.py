"""How the DLMAP writes its state as rows (:class:`~router.core.actions.Persist` records):
addresses as text (the revocations in flight are :mod:`router.core.revocation`'s)."""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address
from socket import inet_ntoa


def text(address: IPv4Address | IPv6Address) -> str:
    """Addresses as text for the database, quickly: the ipaddress module formats in Python."""
    if address.version == 4:
        return inet_ntoa(address.packed)
    return _text6(address)


@lru_cache(maxsize=65536)
def _text6(address: IPv4Address | IPv6Address) -> str:
    return str(address)  # DMPAs are few: cached
