"""The RFC 4285 authenticator of the Mobility Message Authentication option.

MN-HA (subtype 1), wire-reference section 4::

    Authenticator = First(96, HMAC_SHA1(key, Mobility Data))
    Mobility Data = care-of address | home address | MH Data
    MH Data       = the MH from its first byte up to and including the option's SPI field,
                    with the checksum field zero (Header Len already final)

MN-AAA (subtype 2) hashes ``SHA1(Mobility Data)`` under HMAC-SHA1 instead.

Project convention for proxy registration (RFC 4285 predates it): the care-of address is the
Proxy-CoA (the DMPA's address, source of the PBU and destination of the PBA) and the home address
is ``::`` by default, since an IPv4-only MS has no IPv6 home address.
"""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv6Address

from router.wire.constants import AuthSubtype, OptionType
from router.wire.errors import EncodeError
from router.wire.mh import (
    CHECKSUM_OFFSET,
    ZERO_ADDRESS,
    MobilityMessage,
    check_framing,
    fill_checksum,
    message_class,
    options_start,
)
from router.wire.mh_options import MobilityMessageAuthentication

#: Length of an HMAC-SHA1-96 authenticator.
AUTHENTICATOR_LENGTH = 12
#: Bytes of the AUTH option up to and including the SPI: type, length, subtype, SPI.
_AUTH_THROUGH_SPI = 7


def authenticator(
    key: bytes,
    mh_through_spi: bytes,
    care_of: IPv6Address,
    home: IPv6Address = ZERO_ADDRESS,
    subtype: int = AuthSubtype.MN_HA,
) -> bytes:
    """The 12-byte authenticator over ``mh_through_spi`` (checksum field already zero)."""
    mobility_data = care_of.packed + home.packed + mh_through_spi
    if subtype == AuthSubtype.MN_AAA:
        mobility_data = hashlib.sha1(mobility_data).digest()
    return hmac.new(key, mobility_data, hashlib.sha1).digest()[:AUTHENTICATOR_LENGTH]


def sign(
    message: MobilityMessage,
    key: bytes,
    care_of: IPv6Address,
    home: IPv6Address = ZERO_ADDRESS,
    *,
    src: IPv6Address | None = None,
    dst: IPv6Address | None = None,
) -> bytes:
    """Encode ``message``, whose last option is the AUTH option, with its authenticator filled.

    The authenticator in the given option only fixes the length (use 12 zero bytes); the
    checksum is computed last, over the finished message (wire-reference section 4).
    """
    auth = message.options[-1] if message.options else None
    if not isinstance(auth, MobilityMessageAuthentication):
        raise EncodeError("sign() needs the authentication option as the last option")
    if len(auth.authenticator) != AUTHENTICATOR_LENGTH:
        raise EncodeError(f"HMAC-SHA1-96 needs {AUTHENTICATOR_LENGTH} authenticator bytes")
    buf, offsets = message.layout()
    through_spi = offsets[-1] + _AUTH_THROUGH_SPI
    value = authenticator(key, bytes(buf[:through_spi]), care_of, home, auth.subtype)
    buf[through_spi : through_spi + AUTHENTICATOR_LENGTH] = value
    if src is not None and dst is not None:
        fill_checksum(buf, src, dst)
    return bytes(buf)


def find_auth_option(mh: bytes) -> int | None:
    """MH offset of the AUTH option's Type byte in a framed MH, or None if there is none.

    Raises a DecodeError subclass for a message :func:`router.wire.mh.decode_message` refuses.
    """
    check_framing(mh)
    pos = options_start(message_class(mh))
    found = None
    while pos < len(mh):
        if mh[pos] == OptionType.PAD1:
            pos += 1
            continue
        if pos + 1 >= len(mh):
            break
        if mh[pos] == OptionType.AUTH:
            found = pos
        pos += 2 + mh[pos + 1]
    return found


def verify(mh: bytes, key: bytes, care_of: IPv6Address, home: IPv6Address = ZERO_ADDRESS) -> bool:
    """Whether the AUTH option of a received MH carries the right authenticator.

    False when there is no AUTH option or it is malformed; the comparison is constant-time.
    """
    at = find_auth_option(mh)
    if at is None:
        return False
    length = mh[at + 1]
    if length != 5 + AUTHENTICATOR_LENGTH or at + 2 + length > len(mh):
        return False
    through_spi = at + _AUTH_THROUGH_SPI
    data = bytearray(mh[:through_spi])
    data[CHECKSUM_OFFSET : CHECKSUM_OFFSET + 2] = b"\x00\x00"
    expected = authenticator(key, bytes(data), care_of, home, mh[at + 2])
    return hmac.compare_digest(expected, mh[through_spi : through_spi + AUTHENTICATOR_LENGTH])
