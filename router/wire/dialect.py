"""The two wire dialects, chosen per peer: ``draft`` (the seed) and ``rfc5844`` (standard PMIPv6).

Both share one codec and one codepoint table (:mod:`router.wire.constants`); a dialect only says
where the seed's additions sit and what the seed's status codes are (wire-reference section 5):

========================  ===========================  ==================================
item                      ``draft`` (seed)             ``rfc5844``
========================  ===========================  ==================================
PBU V flag                0x0100 (IANA's F)            none; F keeps its meaning
V=0 / IPv6 prefix         V clear, HNP option (22)     HNP option (22) beside option 36
PBA V flag                0x10 (IANA's T)              none; T keeps its meaning
IPv4 HoA carrier          seed option, type 18, Len 6  options 36 (request) / 37 (reply)
"HoA unavailable"         142 (seed 3.3)               130 + reply status 132
"invalid IPv4 address"    143 (seed 3.3)               171 + reply status 130/131
========================  ===========================  ==================================

Every value is settable (``Dialect.draft(v_bu=0x0008)`` for a collision-free lab variant), and
:meth:`Dialect.validate` refuses a setting that would collide with what the codec needs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from router.wire.constants import BAFlag, BUFlag, OptionType, Status
from router.wire.errors import EncodeError

DialectName = Literal["draft", "rfc5844"]

#: Option types the codec needs for itself: a seed option may not be carried under them.
_RESERVED_OPTION_TYPES = frozenset(
    {
        OptionType.PAD1,
        OptionType.PADN,
        OptionType.MN_ID,
        OptionType.AUTH,
        OptionType.MESG_ID,
        OptionType.HANDOFF_INDICATOR,
        OptionType.ACCESS_TECHNOLOGY_TYPE,
        OptionType.TIMESTAMP,
        OptionType.IPV4_HOA_REQUEST,
        OptionType.IPV4_HOA_REPLY,
        OptionType.IPV4_DEFAULT_ROUTER,
    }
)
# Plain ints: flag arithmetic on IntFlag members is slow on a per-message path.
_A_P = int(BUFlag.A | BUFlag.P)
_H = int(BUFlag.H)
_BA_P = int(BAFlag.P)
#: Seed option data: 2 bytes of sequence number, 4 of IPv4 home address (seed 3.1.3).
SEED_OPTION_DATA_LENGTH = 6


@dataclass(frozen=True, slots=True)
class Dialect:
    """Where one peer expects the seed's additions. Build with :meth:`draft` or :meth:`rfc5844`."""

    name: DialectName
    #: Mask of the V flag in the BU flag word (0: the dialect has no V flag).
    bu_v_flag: int
    #: Mask of the V flag in the BA flag byte (0: none).
    ba_v_flag: int
    #: Option type carrying the seed's IPv4 HoA option (None: options 36/37 instead).
    seed_option_type: int | None
    #: PBA status for "IPv4 home address unavailable" (pool exhausted).
    status_hoa_unavailable: int
    #: PBA status for "invalid IPv4 address" (not the one allocated to that NAI).
    status_invalid_hoa: int

    @classmethod
    def draft(
        cls,
        *,
        v_bu: int = BUFlag.F,
        v_ba: int = BAFlag.T,
        seed_option_type: int = OptionType.EXPERIMENTAL,
        status_hoa_unavailable: int = Status.NOT_AUTHORIZED_FOR_PREFIX,
        status_invalid_hoa: int = Status.FORWARDING_SETUP_FAILED,
    ) -> Dialect:
        """The seed's dialect: V at the seed figures' positions, its option, 142 and 143."""
        dialect = cls(
            "draft",
            int(v_bu),  # plain ints: IntFlag arithmetic is slow on a per-message path
            int(v_ba),
            int(seed_option_type),
            int(status_hoa_unavailable),
            int(status_invalid_hoa),
        )
        dialect.validate()
        return dialect

    @classmethod
    def rfc5844(cls) -> Dialect:
        """Standard PMIPv6 IPv4 support (RFC 5844), for third-party peers."""
        return cls(
            "rfc5844",
            0,
            0,
            None,
            int(Status.INSUFFICIENT_RESOURCES),
            int(Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS),
        )

    def with_changes(self, **changes: int) -> Dialect:
        dialect = replace(self, **changes)  # type: ignore[arg-type]
        dialect.validate()
        return dialect

    def validate(self) -> None:
        """Raise :class:`EncodeError` for a setting the codec cannot honour."""
        problems = []
        if self.name == "draft":
            if not _single_bit(self.bu_v_flag, 16) or self.bu_v_flag & (
                BUFlag.A | BUFlag.H | BUFlag.P
            ):
                problems.append(f"bu_v_flag {self.bu_v_flag:#06x}: one bit, not A, H or P")
            if not _single_bit(self.ba_v_flag, 8) or self.ba_v_flag & BAFlag.P:
                problems.append(f"ba_v_flag {self.ba_v_flag:#04x}: one bit, not P")
            if (
                self.seed_option_type is None
                or not 0 <= self.seed_option_type <= 255
                or self.seed_option_type in _RESERVED_OPTION_TYPES
            ):
                problems.append(f"seed_option_type {self.seed_option_type}: in use by the codec")
        for name in ("status_hoa_unavailable", "status_invalid_hoa"):
            value = getattr(self, name)
            if not 128 <= value <= 255:
                problems.append(f"{name} {value}: a rejection status is 128..255")
        if problems:
            raise EncodeError("; ".join(problems))

    def is_seed_option(self, option_type: int, data_length: int) -> bool:
        """Whether an option of this type and data length is the seed's IPv4 HoA option."""
        return option_type == self.seed_option_type and data_length == SEED_OPTION_DATA_LENGTH

    def pbu_flags(self, *, home: bool = True, v: bool = True) -> int:
        """Flags of a PBU: A|H|P, plus V in the draft dialect (seed 3.2 step 5) for an IPv4-only
        MS. ``v=False`` is the V=0 form of seed 3.1.1: a dual-stack MS (or, with a Home Network
        Prefix option only, plain RFC 5213) whose PBU may carry an IPv6 home network prefix."""
        return (_A_P | _H if home else _A_P) | (self.bu_v_flag if v else 0)

    def pba_flags(self, *, ipv4: bool) -> int:
        """Flags of a PBA: P, plus V when the PBU had V set (seed 3.1.2)."""
        return _BA_P | self.ba_v_flag if ipv4 else _BA_P

    def bu_has_v(self, flags: int) -> bool:
        return self.bu_v_flag != 0 and bool(flags & self.bu_v_flag)

    def ba_has_v(self, flags: int) -> bool:
        return self.ba_v_flag != 0 and bool(flags & self.ba_v_flag)


def _single_bit(value: int, bits: int) -> bool:
    return 0 < value < (1 << bits) and value & (value - 1) == 0


DRAFT = Dialect.draft()
RFC5844 = Dialect.rfc5844()
DIALECTS: dict[str, Dialect] = {"draft": DRAFT, "rfc5844": RFC5844}
