"""The AAA front the DMPA's composition root uses: local profiles (the default) or RADIUS.

The DMPA core emits :class:`~router.core.actions.AAARequest`; the app awaits
:meth:`AAA.authenticate` and hands the answer to ``DMPA.aaa_result`` (``None`` = Access-Reject,
whatever the cause: the counters tell a reject from a timeout). The backend is chosen once, by
configuration; there is no silent fallback from RADIUS to the local table, so an MS the RADIUS
servers do not answer for stays out rather than getting a profile nobody authorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from router.adapters.radius import Credentials, RadiusClient, RadiusConfig, RadiusCounter
from router.core.aaa import LocalAAA, LocalProfile
from router.core.counters import Counters
from router.core.dmpa import Profile
from router.wire.ethernet import MacAddress


@dataclass(frozen=True, slots=True)
class AAAConfig:
    backend: Literal["local", "radius"] = "local"
    profiles: tuple[LocalProfile, ...] = ()
    radius: RadiusConfig | None = None

    def errors(self) -> list[str]:
        if self.backend == "radius" and self.radius is None:
            return ["aaa.backend: radius needs a [radius] section"]
        if self.backend not in ("local", "radius"):
            return [f"aaa.backend: local or radius, not {self.backend!r}"]
        return []


class AAA:
    """``await authenticate(mac, nai)`` -> profile or ``None``; counters as a plain dict."""

    def __init__(self, config: AAAConfig) -> None:
        problems = config.errors()
        if problems:
            raise ValueError("; ".join(problems))
        self.backend = config.backend
        self._local = LocalAAA(config.profiles)
        self._radius = RadiusClient(config.radius) if config.radius is not None else None
        self._local_counters = Counters(
            dict.fromkeys((RadiusCounter.REQUESTS, RadiusCounter.ACCEPT, RadiusCounter.REJECT), 0)
        )

    @property
    def counters(self) -> dict[str, int]:
        if self.backend == "radius" and self._radius is not None:
            return self._radius.counters
        return self._local_counters

    async def authenticate(self, mac: MacAddress, nai: str | None = None) -> Profile | None:
        if self.backend == "radius" and self._radius is not None:
            return await self._radius.authenticate(mac, nai)
        self._local_counters[RadiusCounter.REQUESTS] += 1
        profile = self._local.authenticate(mac, nai)
        outcome = RadiusCounter.ACCEPT if profile is not None else RadiusCounter.REJECT
        self._local_counters[outcome] += 1
        return profile

    async def authenticate_ppp(
        self,
        mac: MacAddress,
        nai: str,
        password: bytes | None = None,
        chap: tuple[int, bytes, bytes] | None = None,
    ) -> Profile | None:
        """A PPP MS's credentials (PAP password or CHAP-MD5 answer) for ``nai``: RADIUS
        checks them (User-Password, CHAP-Password); the local table against the profile's
        ``password``."""
        if self.backend == "radius" and self._radius is not None:
            credentials = Credentials(password=password, chap=chap)
            return await self._radius.authenticate(mac, nai, credentials)
        self._local_counters[RadiusCounter.REQUESTS] += 1
        profile = self._local.check_ppp(nai, password, chap)
        outcome = RadiusCounter.ACCEPT if profile is not None else RadiusCounter.REJECT
        self._local_counters[outcome] += 1
        return profile

    def why_rejected(self, mac: MacAddress, nai: str | None = None) -> str:
        """The reason of a None from :meth:`authenticate`, as the log says it."""
        if self.backend == "radius":
            return "access-reject (or no answer) from RADIUS"
        return self._local.why_rejected(mac, nai)

    def set_profiles(self, profiles: tuple[LocalProfile, ...]) -> None:
        """New local profiles (SIGHUP); visitors already admitted keep theirs."""
        self._local = LocalAAA(profiles)

    def close(self) -> None:
        if self._radius is not None:
            self._radius.close()
