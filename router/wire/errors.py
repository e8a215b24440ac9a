"""Typed errors of the wire layer.

Two families, kept apart on purpose (h11's local/remote split):

* :class:`DecodeError` and its subclasses: the *peer's* bytes are wrong. Every decoder in
  ``router.wire`` raises only these on bad input, never ``struct.error``, ``IndexError`` or
  ``ValueError``. Each carries the field that was wrong and its byte offset from the start of the
  buffer handed to the outermost decoder, so a log line or a counter can say where.
* :class:`EncodeError`: *we* tried to build an impossible message (a field out of range). That is
  a bug in our code, raised at construction time.
"""

from __future__ import annotations


class WireError(Exception):
    """Base of every error raised by ``router.wire``."""


class DecodeError(WireError):
    """The bytes do not form a valid message. ``field`` and ``offset`` say where."""

    def __init__(self, message: str, *, field: str, offset: int) -> None:
        super().__init__(f"{field} at offset {offset}: {message}")
        self.reason = message
        self.field = field
        self.offset = offset


class TruncatedError(DecodeError):
    """Fewer bytes than a fixed part or a length field says there are."""


class LengthError(DecodeError):
    """A length field is impossible: past its container, below a minimum, not the fixed size."""


class AlignmentError(DecodeError):
    """A length breaks the alignment the format requires (e.g. an MH not a multiple of 8 octets)."""


class FieldValueError(DecodeError):
    """A field holds a value the format forbids (wrong version, Payload Proto != 59, ...)."""


class TextEncodingError(DecodeError):
    """A text field is not valid in its encoding (an NAI that is not UTF-8)."""


class ChecksumError(DecodeError):
    """A checksum does not verify."""


class UnknownTypeError(DecodeError):
    """A message type this codec does not know. ``type_value`` is the number seen.

    For the Mobility Header this is the case RFC 6275 section 9.2 answers with a Binding Error
    of status 2 (unrecognized MH type): the exception carries what that reply needs.
    """

    def __init__(self, message: str, *, field: str, offset: int, type_value: int) -> None:
        super().__init__(message, field=field, offset=offset)
        self.type_value = type_value


class EncodeError(WireError, ValueError):
    """A message was built with a field that cannot be encoded (our bug, not the peer's)."""


def need(buf_len: int, offset: int, size: int, field: str) -> None:
    """Raise :class:`TruncatedError` unless ``size`` bytes exist at ``offset``."""
    if offset < 0 or offset + size > buf_len:
        raise TruncatedError(
            f"need {size} bytes, {max(buf_len - offset, 0)} left", field=field, offset=offset
        )


def check_uint(value: int, bits: int, field: str) -> None:
    """Raise :class:`EncodeError` unless ``value`` is an unsigned integer of ``bits`` bits."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise EncodeError(f"{field}={value!r} does not fit in {bits} unsigned bits")
