"""The SQLite store: batches commit whole, state reloads, bad files are reported or set aside."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from router.adapters.store import Store, StoreError
from router.core.actions import Persist


def test_batch_round_trip_and_delete(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite")
    store.apply(
        [
            Persist("binding", "a@x", {"nai": "a@x", "hoa": "192.0.2.2"}),
            Persist("binding", "b@x", {"nai": "b@x", "hoa": "192.0.2.3"}),
            Persist("peer", "2001:db8:1::1", {"peer": "2001:db8:1::1", "sequence": 7}),
        ]
    )
    store.apply([Persist("binding", "a@x", None)])
    store.close()
    again = Store(tmp_path / "state.sqlite")
    assert again.load() == {
        "binding": {"b@x": {"nai": "b@x", "hoa": "192.0.2.3"}},
        "peer": {"2001:db8:1::1": {"peer": "2001:db8:1::1", "sequence": 7}},
    }


def test_a_failed_batch_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite")
    bad = Persist("binding", "c@x", {"unserialisable": object()})
    with pytest.raises(TypeError):
        store.apply([Persist("binding", "a@x", {"nai": "a@x"}), bad])
    assert store.load() == {}


def test_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    Store(path).close()
    reader = sqlite3.connect(path)  # WAL is a property of the file: any connection sees it
    try:
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        reader.close()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"state\.sqlite: not a usable SQLite database"):
        Store(path)


def test_corrupt_database_can_start_fresh_and_keeps_the_bad_copy(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"garbage" * 1000)
    store = Store(path, on_corrupt="fresh")
    assert store.load() == {}
    assert (tmp_path / "state.sqlite.corrupt-1").read_bytes().startswith(b"garbage")


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    Store(path).close()
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)


def test_a_missing_database_is_created_or_refused_as_configured(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no state database"):
        Store(tmp_path / "absent.sqlite", on_missing="error")
    assert not (tmp_path / "absent.sqlite").exists()
    Store(tmp_path / "absent.sqlite").close()  # the default creates it
    Store(tmp_path / "absent.sqlite", on_missing="error").close()
