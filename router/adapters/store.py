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

A write that fails (disk full, read-only or failing file system) raises :class:`StoreWriteError`
and keeps its batch in memory (the last record of each key: bounded by the live state); the next
:meth:`Store.apply` or :meth:`Store.retry` writes it together with what came since, in one
transaction. A transaction is atomic in SQLite's WAL, so a crash at any point leaves either the
old rows or the new ones on disk, never part of a batch.
"""

from __future__ import annotations

import contextlib
import json
import os
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


class StoreUnavailable(StoreError):
    """The database cannot be opened for a reason outside it (disk full, read-only, I/O)."""


#: SQLite result codes (and extended ones, by prefix) that say nothing about the file itself.
_UNAVAILABLE = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_BUSY")


class StoreWriteError(StoreError):
    """A batch could not be committed; it is kept and written by the next apply or retry."""


class StoreRecordError(StoreError, TypeError):
    """A batch with a record JSON cannot hold (our bug): refused whole, the backlog is kept."""


#: Records as compact JSON: ``json.dumps(record, separators=(",", ":"))`` builds an encoder per
#: call (any non-default argument does); one, made once, gives the same text.
_to_json = json.JSONEncoder(separators=(",", ":")).encode


def encode_batch(where: object, persists: Iterable[Persist]) -> dict[tuple[str, str], str | None]:
    """A batch of Persist actions as the rows a store writes: only the last of a key counts,
    records as compact JSON, None a deletion. A record that cannot be JSON refuses the whole
    batch (:class:`StoreRecordError`, naming ``where``), so it never reaches a backlog where it
    would fail every later write. Both engines (SQLite here, PostgreSQL) defer through it."""
    last = {(p.table, p.key): p.record for p in persists}
    batch: dict[tuple[str, str], str | None] = {}
    refused: list[str] = []
    for (table, key), record in last.items():
        try:
            batch[(table, key)] = None if record is None else _to_json(record)
        except (TypeError, ValueError) as exc:
            refused.append(f"{table}/{key} ({exc})")
    if refused:
        raise StoreRecordError(f"{where}: batch refused, records: {', '.join(refused)}")
    return batch


class Store:
    #: Written in the loop turn itself (the PostgreSQL store is awaited instead).
    asynchronous = False

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
        #: Rows not yet on disk, (table, key) -> the record as JSON (None: delete).
        self._pending: dict[tuple[str, str], str | None] = {}
        if on_missing == "error" and not path.exists():
            # A node that has run before must not silently come back with no bindings.
            raise StoreError(f"{path}: no state database (expected one: on_missing=error)")
        path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(path.parent, os.W_OK):  # EROFS shows here even for root
            raise StoreError(
                f"{path.parent}: the state directory is not writable (read-only file system?)"
            )
        try:
            self._db = self._open()
        except StoreUnavailable:
            raise
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
        except sqlite3.OperationalError as exc:
            name = getattr(exc, "sqlite_errorname", "")
            if name.startswith(_UNAVAILABLE):  # the file may be fine: never moved aside
                raise StoreUnavailable(f"{self.path}: cannot open ({name}: {exc})") from None
            raise StoreError(f"{self.path}: not a usable SQLite database: {exc}") from None
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

    @property
    def backlog(self) -> int:
        """Rows waiting for a successful write."""
        return len(self._pending)

    def defer(self, persists: Iterable[Persist]) -> None:
        """Add a batch to the backlog without touching the disk (while writes are failing).

        Records become JSON here, so a batch with one that cannot (a bug of ours) is refused
        whole by :class:`StoreRecordError` and never reaches the backlog, where it would fail
        every later write.
        """
        self._pending.update(encode_batch(self.path, persists))

    def apply(self, persists: Iterable[Persist]) -> int:
        """Write the backlog and a batch in one transaction; returns the rows written or deleted.

        Within a batch only the last write of each (table, key) matters, so earlier ones are
        dropped before they reach SQLite (a loop turn often touches a peer's row many times).
        Raises :class:`StoreWriteError` if the commit fails; nothing is lost from memory then.
        """
        self.defer(persists)
        return self.retry()

    def retry(self) -> int:
        """Write the backlog (if any) in one transaction; :class:`StoreWriteError` on failure."""
        if not self._pending:
            return 0
        last = self._pending
        writes = [
            (table, key, record) for (table, key), record in last.items() if record is not None
        ]
        deletes = [(table, key) for (table, key), record in last.items() if record is None]
        db = self._db
        try:
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
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:  # SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR...
            name = getattr(exc, "sqlite_errorname", type(exc).__name__)
            raise StoreWriteError(
                f"{self.path}: write of {len(last)} rows failed ({name}: {exc}); "
                "kept in memory, will retry"
            ) from None
        count = len(last)
        self._pending = {}
        return count

    def load(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every record, by table and key."""
        tables: dict[str, dict[str, dict[str, Any]]] = {}
        rows = self._db.execute("SELECT tbl, key, record FROM state ORDER BY tbl, key")
        for tbl, key, record in rows:
            tables.setdefault(tbl, {})[key] = json.loads(record)
        return tables

    def close(self) -> None:
        self._db.close()
