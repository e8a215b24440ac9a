"""Authenticated signaling between DMPA and DLMAP: RFC 4285 MN-HA authentication and MESG-ID.

The rules are in ``docs/protocol-auth.md``; in short:

* A peer whose ``[peer <ipv6>]`` section has an ``spi`` is *protected*: every MH sent to it
  carries the Mobility Message Replay Protection option (MESG-ID, an NTP timestamp) and then the
  Mobility Message Authentication option (MN-HA, HMAC-SHA1-96), signed with
  :func:`router.wire.mh_auth.sign`; every MH received from it must carry both, with that SPI, a
  right authenticator and a timestamp within ``replay_window`` seconds of our clock and newer
  than the last one accepted from that peer. Anything else is rejected before the core sees it.
* The authenticator's care-of address is the DMPA's address in both directions (the source of
  what a DMPA sends, the destination of what a DLMAP sends); the home address is ``::``
  (wire-reference section 4).
* Keys come from a file, one ``SPI HEX-KEY`` a line, that only its owner may read
  (:mod:`router.adapters.keyfile` reads it). They are held by :class:`KeyRing`, whose ``repr``
  never shows them, and are never logged.

Sans-I/O: the wall clock is an argument of every call that needs it (the MESG-ID timestamps
and the rate limits of the log lines and of the failure replies).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from enum import Enum
from ipaddress import IPv6Address

from router.core.common import RateLimiter
from router.core.counters import Counters, Family, Names
from router.wire import mh_auth
from router.wire.constants import AuthSubtype, Status
from router.wire.dialect import Dialect
from router.wire.mh import ZERO_ADDRESS, BindingAck, BindingUpdate, MobilityMessage
from router.wire.mh_options import (
    MobileNodeIdentifier,
    MobilityMessageAuthentication,
    MobilityMessageReplayProtection,
    MobilityOption,
)

log = logging.getLogger("netlmm")

#: RFC 4285: SPIs 0..255 are reserved.
MIN_SPI = 256
MAX_SPI = 0xFFFFFFFF
#: RFC 4285 section 6: the "close enough" default.
DEFAULT_REPLAY_WINDOW = 7.0
#: Seconds between 1900-01-01 (NTP era 0) and 1970-01-01.
NTP_UNIX_OFFSET = 2_208_988_800
#: At most one auth-failure PBA per peer per this many seconds (we must not be a reflector).
FAILURE_REPLY_INTERVAL = 0.1


class KeyRing:
    """SPI -> key. Its ``repr`` lists the SPIs only, so keys never reach a log or a traceback."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        self._keys = dict(keys)

    def get(self, spi: int) -> bytes | None:
        return self._keys.get(spi)

    @property
    def spis(self) -> tuple[int, ...]:
        return tuple(sorted(self._keys))

    def __contains__(self, spi: object) -> bool:
        return spi in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyRing) and other._keys == self._keys

    def __hash__(self) -> int:
        return hash(self.spis)

    def __repr__(self) -> str:
        return f"KeyRing(spis={list(self.spis)})"


def ntp_timestamp(unix: float) -> int:
    """64-bit NTP timestamp (32-bit seconds since 1900, 32-bit fraction) of a Unix time."""
    return int((unix + NTP_UNIX_OFFSET) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def ntp_to_unix(value: int) -> float:
    return value / (1 << 32) - NTP_UNIX_OFFSET


class Reason(Enum):
    """Why a received message was rejected (the counter is ``auth.rx.<value>``)."""

    MISSING = "missing"  # no AUTH option
    UNKNOWN_SPI = "unknown_spi"  # AUTH with an SPI that is not this peer's
    BAD_AUTHENTICATOR = "bad_authenticator"  # wrong authenticator (wrong key, changed bytes)
    NO_MESG_ID = "no_mesg_id"  # authentic, but no replay protection option
    STALE = "stale"  # MESG-ID outside the window
    REPLAYED = "replayed"  # MESG-ID not newer than the last accepted from this peer
    UNKNOWN_TYPE = "unknown_type"  # an MH type we cannot decode, so cannot verify


#: The PBA status a DLMAP answers a refused PBU with (RFC 4285 sections 5 and 6); None: dropped.
PBU_STATUS: dict[Reason, int | None] = {
    Reason.MISSING: Status.MIPV6_AUTH_FAIL,
    Reason.UNKNOWN_SPI: Status.MIPV6_AUTH_FAIL,
    Reason.BAD_AUTHENTICATOR: Status.MIPV6_AUTH_FAIL,
    Reason.NO_MESG_ID: Status.MIPV6_MESG_ID_REQD,
    Reason.STALE: Status.MIPV6_ID_MISMATCH,
    Reason.REPLAYED: None,
    Reason.UNKNOWN_TYPE: None,
}


class AuthCounter(Names):
    """What the guard counts (the node's registry: ``node`` group)."""

    TX_SIGNED = "auth.tx.signed"
    RX_OK = "auth.rx.ok"
    REPLY_SUPPRESSED = "auth.reply.suppressed"


#: Messages refused, by :class:`Reason`.
AUTH_RX = Family("auth.rx.{}", "messages refused by the RFC 4285 checks", (r.value for r in Reason))
#: The DLMAP's PBAs answering a refused PBU, by status code.
AUTH_REPLY = Family(
    "auth.reply.{}",
    "PBAs answering a refused PBU, by status",
    (status for status in PBU_STATUS.values() if status is not None),
)


class SignalingGuard:
    """Signs what a node sends and checks what it receives, per peer (see the module docstring).

    ``own`` is this node's address, ``is_dmpa`` its role (it decides the care-of address),
    ``spis`` the protected peers' SPIs, ``keys`` the key ring (replaced on a key reload).
    """

    def __init__(
        self,
        own: IPv6Address,
        is_dmpa: bool,
        spis: Mapping[IPv6Address, int],
        keys: KeyRing | None,
        *,
        replay_window: float = DEFAULT_REPLAY_WINDOW,
        counters: Counters | None = None,
    ) -> None:
        if spis and keys is None:
            raise ValueError("protected peers need a key ring")
        self.own, self.is_dmpa = own, is_dmpa
        self.spis = dict(spis)
        self.keys = keys or KeyRing({})
        self.window = replay_window
        self.counters = counters if counters is not None else Counters()
        self._last_rx: dict[IPv6Address, int] = {}  # peer -> last accepted MESG-ID
        self._last_tx = 0
        self._reply_limit = RateLimiter(FAILURE_REPLY_INTERVAL)
        self._log_limit = RateLimiter(1.0)

    @property
    def enabled(self) -> bool:
        return bool(self.spis)

    def protects(self, peer: IPv6Address) -> bool:
        return peer in self.spis

    def _care_of(self, peer: IPv6Address) -> IPv6Address:
        return self.own if self.is_dmpa else peer

    # --- sending --------------------------------------------------------------------------

    def seal(self, message: MobilityMessage, peer: IPv6Address, wall: float) -> bytes:
        """The wire bytes of ``message`` for ``peer``: MESG-ID (from ``wall``) and AUTH appended
        if protected.

        The checksum is left to the kernel (raw MH socket, wire-reference 3.2).
        """
        spi = self.spis.get(peer)
        if spi is None:
            return message.encode()
        key = self.keys.get(spi)
        if key is None:  # a reload cannot drop a needed SPI; kept as a guard
            raise OSError(f"no key for SPI {spi}")
        kept = [
            o
            for o in message.options
            if not isinstance(o, MobilityMessageAuthentication | MobilityMessageReplayProtection)
        ]
        options: tuple[MobilityOption, ...] = (
            *kept,
            MobilityMessageReplayProtection(self._next_stamp(wall)),
            MobilityMessageAuthentication(spi, bytes(mh_auth.AUTHENTICATOR_LENGTH)),
        )
        signed = dataclasses.replace(message, options=options)  # type: ignore[type-var]
        self.counters[AuthCounter.TX_SIGNED] += 1
        return mh_auth.sign(signed, key, self._care_of(peer), ZERO_ADDRESS)

    def _next_stamp(self, wall: float) -> int:
        """A fresh NTP timestamp, strictly increasing even when the clock is not."""
        stamp = max(ntp_timestamp(wall), self._last_tx + 1)
        self._last_tx = stamp
        return stamp

    # --- receiving ------------------------------------------------------------------------

    def check(
        self, data: bytes, message: MobilityMessage, src: IPv6Address, wall: float
    ) -> Reason | None:
        """None when ``message`` (decoded from ``data``) from ``src`` may go to the core.

        A message from an unprotected peer passes unchanged (the core refuses unknown peers).
        """
        spi = self.spis.get(src)
        if spi is None:
            return None
        auth = message.options[-1] if message.options else None
        if not isinstance(auth, MobilityMessageAuthentication):
            return self._reject(Reason.MISSING, src, wall)
        if auth.spi != spi:
            return self._reject(Reason.UNKNOWN_SPI, src, wall)
        key = self.keys.get(spi)
        if (
            key is None
            or auth.subtype != AuthSubtype.MN_HA
            or not mh_auth.verify(data, key, self._care_of(src), ZERO_ADDRESS)
        ):
            return self._reject(Reason.BAD_AUTHENTICATOR, src, wall)
        mesg_id = message.find(MobilityMessageReplayProtection)
        if mesg_id is None:
            return self._reject(Reason.NO_MESG_ID, src, wall)
        skew = ntp_to_unix(mesg_id.timestamp) - wall
        if abs(skew) > self.window:
            if self._log_limit.allow(("skew", src), wall):
                log.warning(
                    "signaling_clock_skew peer=%s skew_s=%.1f window_s=%.0f hint=check_ntp",
                    src,
                    skew,
                    self.window,
                )
            return self._reject(Reason.STALE, src, wall)
        last = self._last_rx.get(src)
        if last is not None and mesg_id.timestamp <= last:
            return self._reject(Reason.REPLAYED, src, wall)
        self._last_rx[src] = mesg_id.timestamp
        self.counters[AuthCounter.RX_OK] += 1
        return None

    def reject_unknown_type(self, src: IPv6Address, wall: float) -> bool:
        """An undecodable MH type from a protected peer is dropped (it cannot be verified)."""
        if src not in self.spis:
            return False
        self._reject(Reason.UNKNOWN_TYPE, src, wall)
        return True

    def _reject(self, reason: Reason, src: IPv6Address, wall: float) -> Reason:
        self.counters[AUTH_RX(reason.value)] += 1
        if self._log_limit.allow((reason, src), wall):
            log.warning("signaling_refused peer=%s reason=%s", src, reason.value)
        return reason

    def failure_reply(
        self,
        message: MobilityMessage,
        reason: Reason,
        src: IPv6Address,
        dialect: Dialect,
        wall: float,
    ) -> BindingAck | None:
        """A DLMAP's PBA for a refused PBU (None: the message is dropped without an answer).

        The PBA echoes the sequence number and the MN-ID, has lifetime 0, and is signed like
        everything sent to the peer (:meth:`seal`); at most one per peer every 0.1 s.
        """
        status = PBU_STATUS[reason]
        if self.is_dmpa or not isinstance(message, BindingUpdate) or status is None:
            return None
        if not self._reply_limit.allow(src, wall):
            self.counters[AuthCounter.REPLY_SUPPRESSED] += 1
            return None
        self.counters[AUTH_REPLY(status)] += 1
        mn_id = message.find(MobileNodeIdentifier)
        ipv4 = dialect.name == "draft" and dialect.bu_has_v(message.flags)
        return BindingAck(
            status=status,
            flags=dialect.pba_flags(ipv4=ipv4),
            sequence=message.sequence,
            lifetime=0,
            options=(mn_id,) if mn_id is not None else (),
        )
