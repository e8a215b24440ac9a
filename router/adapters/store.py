"""Durable state in SQLite (WAL): what the cores ask for with :class:`~router.core.actions.Persist`.

One table of ``(table, key) -> JSON record`` rows: the cores own the shape of their records, the
store only keeps them. :meth:`Store.apply` writes a batch (one loop turn's worth) in a single
transaction and returns once it is committed, so the caller can send the replies that depend on
it ("a binding is on disk before its PBA leaves"). ``synchronous=FULL`` makes a commit survive a
power cut, not only a crash of the process.

A database that is not SQLite, fails its integrity check, or has a schema from another version
raises :class:`StoreError` with the path and the reason; with ``on_corrupt="fresh"`` the bad file
is moved aside (``<name>.corrupt-<n>``) and an empty store starts instead. A missing file starts
an empty store, or is an error with ``on_missing="error"``. Never a silent partial state.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from router.core.actions import Persist

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    tbl TEXT NOT NULL,
    key TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (tbl, key)
) WITHOUT ROWID
"""


class StoreError(Exception):
    """The state database cannot be used; the message says which file and why."""


class Store:
    def __init__(
        self,
        path: Path,
        *,
        on_corrupt: Literal["error", "fresh"] = "error",
        on_missing: Literal["create", "error"] = "create",
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        if on_missing == "error" and not path.exists():
            # A node that has run before must not silently come back with no bindings.
            raise StoreError(f"{path}: no state database (expected one: on_missing=error)")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except StoreError:
            if on_corrupt != "fresh":
                raise
            self._move_aside()
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                db.close()
                raise StoreError(f"{self.path}: integrity check failed: {check}")
            if version not in (0, SCHEMA_VERSION):
                db.close()
                raise StoreError(
                    f"{self.path}: schema version {version}, this netlmm reads {SCHEMA_VERSION}"
                )
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable SQLite database: {exc}") from None
        return db

    def _move_aside(self) -> None:
        for n in range(1, 1000):
            target = self.path.with_name(f"{self.path.name}.corrupt-{n}")
            if not target.exists():
                self.path.rename(target)
                for suffix in ("-wal", "-shm"):
                    side = self.path.with_name(self.path.name + suffix)
                    if side.exists():
                        side.rename(target.with_name(target.name + suffix))
                return
        raise StoreError(f"{self.path}: too many corrupt copies beside it")

    def apply(self, persists: Iterable[Persist]) -> int:
        """Write a batch in one transaction; returns the number of rows written or deleted.

        Within a batch only the last write of each (table, key) matters, so earlier ones are
        dropped before they reach SQLite (a loop turn often touches a peer's row many times).
        """
        last: dict[tuple[str, str], dict[str, object] | None] = {}
        for p in persists:
            last[(p.table, p.key)] = p.record
        writes = [
            (table, key, json.dumps(record, separators=(",", ":")))
            for (table, key), record in last.items()
            if record is not None
        ]
        deletes = [(table, key) for (table, key), record in last.items() if record is None]
        db = self._db
        db.execute("BEGIN")
        try:
            if deletes:
                db.executemany("DELETE FROM state WHERE tbl = ? AND key = ?", deletes)
            if writes:
                db.executemany(
                    "INSERT OR REPLACE INTO state (tbl, key, record) VALUES (?, ?, ?)", writes
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(last)

    def load(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every record, by table and key."""
        tables: dict[str, dict[str, dict[str, Any]]] = {}
        rows = self._db.execute("SELECT tbl, key, record FROM state ORDER BY tbl, key")
        for tbl, key, record in rows:
            tables.setdefault(tbl, {})[key] = json.loads(record)
        return tables

    def close(self) -> None:
        self._db.close()
