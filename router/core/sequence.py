"""16-bit sequence number arithmetic (RFC 6275 section 9.5.1).

A new value is "after" the last accepted one when it lies in the 32767 values that follow it,
modulo 2^16 (the window OPMIP's ``validate_sequence_number`` implements; wire-reference 7.3).
"""

from __future__ import annotations

MODULUS = 1 << 16
HALF = 1 << 15


def seq_after(cur: int, prev: int) -> bool:
    """Whether ``cur`` comes strictly after ``prev`` in 16-bit serial order."""
    return 0 < (cur - prev) % MODULUS < HALF


def seq_at_least(cur: int, ref: int) -> bool:
    """Whether ``cur`` equals ``ref`` or comes after it."""
    return cur == ref or seq_after(cur, ref)


def seq_next(value: int) -> int:
    return (value + 1) % MODULUS


def seq_max(a: int, b: int) -> int:
    """The later of two sequence numbers in serial order."""
    return b if seq_after(b, a) else a
