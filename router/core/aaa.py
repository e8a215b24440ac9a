"""The embedded AAA: local profiles from the configuration (MAC or NAI -> profile, allowed).

The DMPA core asks with :class:`~router.core.actions.AAARequest` and is answered with a
:class:`~router.core.dmpa.Profile` or ``None`` (Access-Reject); where the answer comes from
(this table, or RADIUS in the services layer) is the adapter's business, not the core's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from router.core.dmpa import AddressMode, Profile
from router.wire.ethernet import MacAddress


@dataclass(frozen=True, slots=True)
class LocalProfile:
    """One configured subscriber: matched by MAC address, by NAI, or both."""

    nai: str
    mode: AddressMode
    dlmap: IPv6Address
    mac: MacAddress | None = None
    hoa: IPv4Address | None = None
    gateway: IPv4Address | None = None
    allowed: bool = True
    #: Dual-stack: the DMPA asks for an IPv6 home network prefix too.
    ipv6: bool = False
    #: A PPP MS's secret (its PAP password or CHAP-MD5 secret); None: no PPP authentication.
    password: bytes | None = None
    #: DNS servers for this MS's IPCP (a PPP MS); empty: the node's ``dmpa.dns``.
    dns: tuple[IPv4Address, ...] = ()

    def profile(self) -> Profile:
        return Profile(self.nai, self.mode, self.dlmap, self.hoa, self.gateway, self.ipv6)


class LocalAAA:
    """Profiles looked up by MAC first, then by NAI; a profile not ``allowed`` is a reject."""

    def __init__(self, profiles: Iterable[LocalProfile]) -> None:
        self._by_mac: dict[MacAddress, LocalProfile] = {}
        self._by_nai: dict[str, LocalProfile] = {}
        for p in profiles:
            if p.mode == "static" and p.hoa is None:
                raise ValueError(f"profile {p.nai}: mode static needs a home address")
            if p.mac is not None:
                if p.mac in self._by_mac:
                    raise ValueError(f"MAC {p.mac} is in two profiles")
                self._by_mac[p.mac] = p
            if p.nai in self._by_nai:
                raise ValueError(f"NAI {p.nai} is in two profiles")
            self._by_nai[p.nai] = p

    def authenticate(self, mac: MacAddress, nai: str | None = None) -> Profile | None:
        """The MS's profile, or None (unknown or not allowed: Access-Reject)."""
        found = self._by_mac.get(mac)
        if found is None and nai is not None:
            found = self._by_nai.get(nai)
        if found is None or not found.allowed:
            return None
        return found.profile()

    def check_ppp(
        self,
        nai: str,
        password: bytes | None = None,
        chap: tuple[int, bytes, bytes] | None = None,
    ) -> Profile | None:
        """A PPP MS (seed 4.1) proved ``nai`` with its PAP ``password`` or a CHAP-MD5 answer
        (identifier, challenge, response; RFC 1994 2): the profile of that NAI when it holds
        the secret they match, else None. The MAC plays no part: the NAI is the identity."""
        found = self._by_nai.get(nai)
        if found is None or not found.allowed or found.password is None:
            return None
        if password is not None:
            ok = hmac.compare_digest(password, found.password)
        elif chap is not None:
            identifier, challenge, response = chap
            expected = hashlib.md5(bytes((identifier,)) + found.password + challenge).digest()
            ok = hmac.compare_digest(response, expected)
        else:
            ok = False
        return found.profile() if ok else None

    def why_rejected(self, mac: MacAddress, nai: str | None = None) -> str:
        """Why :meth:`authenticate` said None, for the log line."""
        found = self._by_mac.get(mac)
        if found is None and nai is not None:
            found = self._by_nai.get(nai)
        if found is None:
            return "no profile for this MAC (local AAA: add a [profile] with mac = this MAC)"
        return f"profile {found.nai} says allowed = no"

    def static_addresses(self) -> dict[str, IPv4Address]:
        """NAI -> static home address, for the DLMAP's pool (same profiles on both sides)."""
        return {p.nai: p.hoa for p in self._by_nai.values() if p.hoa is not None}
