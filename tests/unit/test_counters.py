"""Declared counters (router/core/counters.py): names, families, the registry, and that every
group a node shows holds only declared names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.app.counters import GROUPS
from router.core.counters import Counters, Family, Names, declared_names, is_declared
from tests.unit.nodes import DLMAP_INI, DMPA_INI, dlmap_node, dmpa_node


class Example(Names):
    SENT = "x.sent"
    LOST = "x.lost"


PARTS = Family("x.by.{}", "by colour", ("red", "blue"))
OPEN = Family("x.error.{}.seen")


def test_a_member_is_its_name_for_readers_printers_and_json() -> None:
    counters = Counters()
    counters[Example.SENT] += 2
    assert counters["x.sent"] == 2 and counters["never"] == 0
    assert "never" not in counters  # reading a name never counted does not add it
    assert json.dumps(counters) == '{"x.sent": 2}'
    assert f"{Example.SENT}" == "x.sent" and sorted([Example.SENT, "a"]) == ["a", "x.sent"]


def test_a_family_makes_its_names_and_knows_them() -> None:
    assert PARTS("red") == "x.by.red" and OPEN("ENOENT") == "x.error.ENOENT.seen"
    with pytest.raises(KeyError, match="no part 'green'"):
        PARTS("green")
    assert "x.by.blue" in PARTS and "x.by.green" not in PARTS and "x.by" not in PARTS
    assert OPEN.part("x.error.EPERM.seen") == "EPERM" and OPEN.part("x.sent") is None
    assert PARTS.names == ("x.by.blue", "x.by.red") and OPEN.names is None
    with pytest.raises(ValueError):
        Family("no.placeholder")


def test_declared_names_and_membership() -> None:
    names, families = declared_names((Example, PARTS, Example.LOST))
    assert names == {"x.sent", "x.lost"} and families == [PARTS]
    assert is_declared("x.by.red", (PARTS,)) and not is_declared("x.by.red", (Example,))


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[object, object]]:
    import asyncio

    from router.adapters.store import Store
    from router.app import config

    loop = asyncio.new_event_loop()
    dlmap_settings, _ = config.loads(DLMAP_INI)
    dmpa_settings, _ = config.loads(DMPA_INI)
    stores = [Store(tmp_path / "lm.sqlite"), Store(tmp_path / "m1.sqlite")]
    try:
        yield (
            dlmap_node(dlmap_settings, stores[0], loop),
            dmpa_node(dmpa_settings, stores[1], loop),
        )
    finally:
        for store in stores:
            store.close()
        loop.close()


def test_every_counter_a_node_shows_is_declared_in_its_group(nodes: tuple[object, ...]) -> None:
    """What the registries hold at start (the RADIUS and local AAA tables, the limits' stats,
    the fastpath's table) is declared; what is counted later is typed (mypy)."""
    shown = 0
    for node in nodes:
        groups = node.show("counters")  # type: ignore[attr-defined]
        for group, counters in groups.items():
            for name in counters:
                assert is_declared(name, GROUPS[group]), f"{group}: {name}"
                shown += 1
    assert shown > 100
