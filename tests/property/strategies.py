"""Hypothesis strategies derived from the wire registries and the fields' type hints.

Every option class in ``OPTION_CLASSES`` and every message class in ``MESSAGE_CLASSES`` gets a
strategy built from its dataclass fields (``U16`` -> integers in range, ``SizeRange`` -> binary
of that size, addresses -> addresses), so a class added to a registry is covered with no new test
code. The few fields with a rule the hints cannot say are listed in ``OVERRIDES``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import fields
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from hypothesis import strategies as st

from router.wire.constants import MNIDSubtype
from router.wire.dialect import DRAFT, RFC5844, Dialect
from router.wire.errors import EncodeError
from router.wire.fields import IntRange, SizeRange
from router.wire.mh import MESSAGE_CLASSES, MobilityMessage
from router.wire.mh_options import (
    OPTION_CLASSES,
    ExperimentalOption,
    MobileNodeIdentifier,
    MobilityMessageAuthentication,
    MobilityOption,
    PadN,
    SeedIPv4HomeAddress,
    UnknownOption,
)

#: The dialects every property runs in: both defaults and a re-configured draft.
DIALECTS: dict[str, Dialect] = {
    "draft": DRAFT,
    "rfc5844": RFC5844,
    "draft-custom": Dialect.draft(v_bu=0x0008, v_ba=0x01, seed_option_type=200),
}

nai_bytes = (
    st.text(min_size=1, max_size=60)
    .map(lambda s: s.encode("utf-8"))
    .filter(lambda b: 1 <= len(b) <= 254)
)

OVERRIDES: dict[tuple[type, str], st.SearchStrategy[Any]] = {}


def _mn_id() -> st.SearchStrategy[MobileNodeIdentifier]:
    nai = st.builds(MobileNodeIdentifier, identifier=nai_bytes, subtype=st.just(MNIDSubtype.NAI))
    other = st.builds(
        MobileNodeIdentifier,
        identifier=st.binary(min_size=1, max_size=32),
        subtype=st.integers(0, 255).filter(lambda v: v != MNIDSubtype.NAI),
    )
    return st.one_of(nai, other)


def _field_strategy(cls: type, name: str, hint: Any) -> st.SearchStrategy[Any]:
    if (cls, name) in OVERRIDES:
        return OVERRIDES[(cls, name)]
    for meta in getattr(hint, "__metadata__", ()):
        if isinstance(meta, IntRange):
            return st.integers(meta.lo, meta.hi)
        if isinstance(meta, SizeRange):
            return st.binary(min_size=meta.lo, max_size=meta.hi)
    base = typing.get_origin(hint) or hint
    if hint is IPv4Address:
        return st.ip_addresses(v=4)
    if hint is IPv6Address:
        return st.ip_addresses(v=6)
    if hint is bool:
        return st.booleans()
    if base is typing.Annotated:  # pragma: no cover - unconstrained annotation
        return _field_strategy(cls, name, typing.get_args(hint)[0])
    raise TypeError(f"no strategy for {cls.__name__}.{name}: {hint!r}; add one to OVERRIDES")


def from_fields(cls: type, **fixed: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A strategy for dataclass ``cls`` from its type hints (``fixed`` overrides fields)."""
    if cls is MobileNodeIdentifier:
        return _mn_id()
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs = {
        f.name: fixed[f.name] if f.name in fixed else _field_strategy(cls, f.name, hints[f.name])
        for f in fields(cls)
        if f.name != "options"
    }
    return st.builds(cls, **kwargs)


def option_strategy(dialect: Dialect) -> st.SearchStrategy[MobilityOption]:
    """Any option that decodes back to itself in ``dialect`` (padding excluded: it is derived)."""
    known = set(OPTION_CLASSES)
    choices: list[st.SearchStrategy[MobilityOption]] = [
        from_fields(cls) for cls in OPTION_CLASSES.values() if cls not in (PadN,)
    ]
    if dialect.seed_option_type is not None:
        choices.append(
            from_fields(SeedIPv4HomeAddress, carrier_type=st.just(dialect.seed_option_type))
        )
    choices.append(
        from_fields(UnknownOption).filter(
            lambda o: o.type_value not in known and o.type_value != dialect.seed_option_type
        )
    )

    def decodes_as_itself(option: MobilityOption) -> bool:
        if isinstance(option, ExperimentalOption | UnknownOption):
            # Data of the seed option's size under its type would (rightly) decode as it.
            return not dialect.is_seed_option(option.option_type, len(option.data()))
        return True

    return st.one_of(choices).filter(decodes_as_itself)


@st.composite
def options_tuple(draw: st.DrawFn, dialect: Dialect) -> tuple[MobilityOption, ...]:
    plain = [
        o
        for o in draw(st.lists(option_strategy(dialect), max_size=6))
        if not isinstance(o, MobilityMessageAuthentication)
    ]
    if draw(st.booleans()):
        plain.append(draw(from_fields(MobilityMessageAuthentication)))
    return tuple(plain)


@st.composite
def message_strategy(
    draw: st.DrawFn, dialect: Dialect, cls: type[MobilityMessage]
) -> MobilityMessage:
    message = draw(from_fields(cls, options=st.just(())))
    options = draw(options_tuple(dialect))
    try:
        built: MobilityMessage = dataclasses.replace(message, options=options)  # type: ignore[type-var]
        built.encode()
    except EncodeError:  # more than 2048 bytes of MH: not a message anyone can send
        from hypothesis import reject

        reject()
    return built


ALL_MESSAGE_CLASSES = MESSAGE_CLASSES
