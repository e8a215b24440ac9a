"""Durable state in PostgreSQL (``[node] store = postgresql``): the same rows as the SQLite
store (:mod:`router.adapters.store`), shared by the two DLMAPs of an active/standby pair.

The client is asyncpg, on the node's own loop, imported only when this store is opened (the
``netlmm[postgresql]`` extra). The promise is the SQLite store's: what one loop turn persists
is written in one transaction, and the runner (:mod:`router.app.runner`) holds that turn's
other actions (its PBAs first of all) until :meth:`PgStore.commit` has returned.

Tables (all rows scoped by the DLMAP identity, its IPv6 address, so one database can hold
several DLMAP identities):

- ``netlmm_identity``: one row per identity with its **epoch**. A process that becomes the
  active DLMAP raises the epoch (:meth:`PgStore.claim`) before it reads the state and answers;
  every write transaction first takes a share lock on that row and checks the epoch it holds,
  so once another process has claimed, a stale holder's writes fail (:class:`StoreFenced`)
  and none of its PBAs leave. The row also keeps the RFC 5847 restart counter, which a
  takeover does not change (the state is the same state).
- ``netlmm_state``: ``(identity, tbl, key) -> record`` (JSON text), like SQLite's ``state``.
- ``netlmm_address``: who holds each home address, derived from the ``binding`` and ``lease``
  rows in the same transaction; ``(identity, hoa)`` is its primary key and ``(identity, nai)``
  is unique, so one address per MS holds in the database itself: a batch that would give an
  address to two NAIs (or two addresses to one NAI) fails whole. ``netlmm_prefix`` does the
  same for the IPv6 home network prefixes of dual-stack bindings (a V=0 binding's row has
  no IPv4 address).

Every write is an upsert or a delete of a row by its key, so a batch whose commit was uncertain
(a connection lost before the answer) is simply written again: allocation is idempotent per NAI.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.adapters.store import StoreError, StoreWriteError, encode_batch
from router.core.actions import Persist

SCHEMA_VERSION = 1
#: Seconds to connect, and the longest any statement may take (a database host cut off must
#: show as a failed write to retry, not as a commit that never returns).
CONNECT_TIMEOUT = 3.0
COMMAND_TIMEOUT = 5.0
#: Milliseconds the server lets a session of ours sit in an open transaction waiting for us.
#: A DLMAP cut off (its host, its links) in the middle of a write leaves its transaction open
#: on the server, holding the share lock on the identity row: the standby's claim would wait
#: for it until the server noticed the lost peer (TCP keepalive: hours), time out and stop.
#: Our transactions never wait on anything but the network between their statements; a
#: session ended by this is a failed write, retried on a new connection.
IDLE_IN_TRANSACTION_MS = 1000
#: Tables whose rows give an NAI its address (record fields ``nai`` and ``hoa``); a binding's
#: address wins over a lease's.
ADDRESS_TABLES = ("binding", "lease")


@dataclass(frozen=True, slots=True)
class HoldRule:
    """A table whose keys hold one-per-NAI: ``field`` of the rows of ``sources`` (the first
    source that has one wins) goes into ``table`` (``field`` the primary key, ``nai`` unique)."""

    table: str
    field: str
    sql_type: str
    sources: tuple[str, ...]

    @property
    def release(self) -> str:
        return f"DELETE FROM {self.table} WHERE identity = $1 AND nai = ANY($2::text[])"

    @property
    def hold(self) -> str:
        return (
            f"INSERT INTO {self.table} (identity, {self.field}, nai) SELECT $1, "
            f"v::{self.sql_type}, n FROM unnest($2::text[], $3::text[]) AS u(v, n)"
        )


#: The IPv4 home addresses (bindings and leases) and the IPv6 home network prefixes (bindings).
RULES = (
    HoldRule("netlmm_address", "hoa", "inet", ADDRESS_TABLES),
    HoldRule("netlmm_prefix", "prefix", "cidr", ("binding",)),
)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS netlmm_schema (version integer NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS netlmm_identity (
        name text PRIMARY KEY,
        epoch bigint NOT NULL,
        holder text NOT NULL,
        network text,
        restart_counter integer,
        claimed_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS netlmm_state (
        identity text NOT NULL,
        tbl text NOT NULL,
        key text NOT NULL,
        record text NOT NULL,
        PRIMARY KEY (identity, tbl, key)
    )""",
    """CREATE TABLE IF NOT EXISTS netlmm_address (
        identity text NOT NULL,
        hoa inet NOT NULL,
        nai text NOT NULL,
        PRIMARY KEY (identity, hoa),
        UNIQUE (identity, nai)
    )""",
    """CREATE TABLE IF NOT EXISTS netlmm_prefix (
        identity text NOT NULL,
        prefix cidr NOT NULL,
        nai text NOT NULL,
        PRIMARY KEY (identity, prefix),
        UNIQUE (identity, nai)
    )""",
)

_FENCE = "SELECT epoch FROM netlmm_identity WHERE name = $1 FOR SHARE"
#: The source tables of the rules, and the fields the rules read of their rows.
_SOURCES = frozenset(t for r in RULES for t in r.sources)
_FIELDS = tuple(dict.fromkeys(r.field for r in RULES))
_DELETE = (
    "DELETE FROM netlmm_state s USING unnest($2::text[], $3::text[]) AS u(t, k) "
    "WHERE s.identity = $1 AND s.tbl = u.t AND s.key = u.k"
)
_UPSERT = (
    "INSERT INTO netlmm_state (identity, tbl, key, record) "
    "SELECT $1, t, k, r FROM unnest($2::text[], $3::text[], $4::text[]) AS u(t, k, r) "
    "ON CONFLICT (identity, tbl, key) DO UPDATE SET record = EXCLUDED.record"
)
#: A batch that changes no holding, in one statement (one round trip, its own transaction):
#: the identity's row share-locked and its epoch read once (a CTE with a locking clause is
#: evaluated once), the deletes and upserts done only if it is ours; the epoch read comes back.
_ONE_STATEMENT = (
    "WITH fence AS (SELECT epoch FROM netlmm_identity WHERE name = $1 FOR SHARE), "
    "ours AS (SELECT 1 FROM fence WHERE epoch = $2), "
    "gone AS (DELETE FROM netlmm_state s USING unnest($3::text[], $4::text[]) AS u(t, k) "
    "WHERE EXISTS (SELECT 1 FROM ours) AND s.identity = $1 AND s.tbl = u.t AND s.key = u.k), "
    "put AS (INSERT INTO netlmm_state (identity, tbl, key, record) "
    "SELECT $1, t, k, r FROM unnest($5::text[], $6::text[], $7::text[]) AS u(t, k, r) "
    "WHERE EXISTS (SELECT 1 FROM ours) "
    "ON CONFLICT (identity, tbl, key) DO UPDATE SET record = EXCLUDED.record) "
    "SELECT epoch FROM fence"
)
_CLAIM = (
    "INSERT INTO netlmm_identity (name, epoch, holder, network) VALUES ($1, 1, $2, $3) "
    "ON CONFLICT (name) DO UPDATE SET epoch = netlmm_identity.epoch + 1, "
    "holder = EXCLUDED.holder, claimed_at = now() "
    "RETURNING epoch, restart_counter, network"
)
_COUNTER = "UPDATE netlmm_identity SET restart_counter = $2 WHERE name = $1"


class StoreFenced(StoreWriteError):
    """Another process has claimed this DLMAP identity (a higher epoch): this one must stop."""


def read_password_file(path: Path) -> str:
    """The database password: the file's first line. Refused if group or others may access it
    (mode 600), like the RFC 4285 key file; the password is never put in a message."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot read: {type(exc).__name__}") from None
    if not stat.S_ISREG(mode):
        raise StoreError(f"{path} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(
            f"{path} holds the database password and others may access it "
            f"(mode {stat.S_IMODE(mode):04o}): chmod 600"
        )
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise StoreError(f"{path}: empty (the password is the first line)")
    return lines[0]


def _asyncpg() -> Any:
    try:
        import asyncpg  # optional: only a node with store = postgresql needs it
    except ImportError:
        raise StoreError(
            "store = postgresql needs asyncpg: pip install 'netlmm[postgresql]'"
        ) from None
    return asyncpg


class PgStore:
    """``PgStore(dsn, identity, password_file=None, holder="")``: open with :meth:`open`, take
    the identity with :meth:`claim` (or watch it as a standby with :meth:`fetch`), read the
    state with :meth:`fetch` then :meth:`load`, write with :meth:`defer` + :meth:`commit`."""

    #: The runner awaits :meth:`commit` (and holds the turn's other actions until it returns).
    asynchronous = True

    def __init__(
        self,
        dsn: str,
        identity: str,
        *,
        password_file: Path | None = None,
        holder: str = "",
        network: str | None = None,
    ) -> None:
        self.dsn = dsn
        #: The HoA network this identity serves (kept with it: a claim with another fails).
        self.network = network
        self.identity = identity
        self.holder = holder
        self.password_file = password_file
        self.path = f"postgresql identity {identity}"  # what messages name
        #: The epoch this process holds (0: none yet: a standby, or not claimed).
        self.epoch = 0
        #: The RFC 5847 restart counter stored with the identity (None: never stored).
        self.restart_counter: int | None = None
        self._db: Any = None
        self._password: str | None = None
        self._pending: dict[tuple[str, str], str | None] = {}
        #: What the address rules read of the pending rows of their source tables.
        self._pending_fields: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._snapshot: dict[str, dict[str, dict[str, Any]]] = {}
        #: (table, nai) -> hoa of the committed binding and lease rows (the address table's source).
        self._holds: dict[str, dict[tuple[str, str], str]] = {r.table: {} for r in RULES}
        #: A commit failed, perhaps after the server committed it (a connection lost around
        #: COMMIT): ``_holds`` may be behind the database until a commit succeeds, so until then
        #: every NAI a batch touches is released and held again, never skipped as unchanged.
        self._holds_uncertain = False
        #: Wall time of the last successful fetch (a standby's lag) and of the last commit.
        self.fetched_at: float | None = None
        self.committed_at: float | None = None

    # --- connection -----------------------------------------------------------------------

    async def open(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Connect and create the tables if they are not there; :class:`StoreError` if the
        database cannot be reached or has another schema version."""
        asyncpg = _asyncpg()
        self._password = (
            None if self.password_file is None else read_password_file(self.password_file)
        )
        try:
            await self._connect(timeout)
            async with self._db.transaction():
                # one creator at a time: two nodes starting together must not race on DDL
                await self._db.execute("SELECT pg_advisory_xact_lock(4801)")
                for statement in _SCHEMA:
                    await self._db.execute(statement)
                version = await self._db.fetchval("SELECT max(version) FROM netlmm_schema")
                if version is None:
                    await self._db.execute(
                        "INSERT INTO netlmm_schema (version) VALUES ($1)", SCHEMA_VERSION
                    )
                elif version != SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path}: schema version {version}, this netlmm reads {SCHEMA_VERSION}"
                    )
        except StoreError:
            await self._abort()
            raise
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._abort()
            raise StoreError(f"{self.path}: cannot open the database: {_why(exc)}") from None
        except ValueError as exc:  # a DSN asyncpg cannot use (a port, sslmode, ...): no traceback
            await self._abort()
            raise StoreError(f"{self.path}: the DSN is not usable: {exc}") from None

    async def _connect(self, timeout: float = CONNECT_TIMEOUT) -> Any:
        """A connection (a new one if there is none or it broke); every statement on it is
        bounded by :data:`COMMAND_TIMEOUT`."""
        if self._db is None or self._db.is_closed():
            self._db = await _asyncpg().connect(
                self.dsn,
                password=self._password,
                timeout=timeout,
                command_timeout=COMMAND_TIMEOUT,
                server_settings={
                    "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS)
                },
            )
        return self._db

    async def _abort(self) -> None:
        if self._db is not None:
            self._db.terminate()
            self._db = None

    def close(self) -> None:
        """Drop the connection (after the runner's last commit: see ``ActionRunner.drain``)."""
        if self._db is not None:
            self._db.terminate()
            self._db = None

    # --- identity and fencing -------------------------------------------------------------

    async def claim(self) -> int:
        """Take the identity: raise its epoch (waiting for a stale holder's write in flight to
        end) and return the new one. After this the old holder's writes fail. An identity
        that serves another HoA network (``network``, set at the first claim) is refused: the
        two DLMAPs of a pair must be configured alike."""
        try:
            db = await self._connect()
            async with db.transaction():
                row = await db.fetchrow(_CLAIM, self.identity, self.holder, self.network)
                if self.network is not None and row["network"] not in (None, self.network):
                    raise StoreError(
                        f"{self.path}: the identity serves HoA network {row['network']}, this "
                        f"node is configured with {self.network} (dlmap.network): not claimed"
                    )
        except StoreError:
            raise
        except Exception as exc:
            self.close()
            raise StoreError(f"{self.path}: cannot claim the identity: {_why(exc)}") from None
        self.epoch = int(row["epoch"])
        counter = row["restart_counter"]
        self.restart_counter = None if counter is None else int(counter)
        return self.epoch

    async def current_epoch(self) -> tuple[int, str] | None:
        """The identity's epoch and holder as the database has them now (None: never claimed)."""
        db = await self._connect()
        row = await db.fetchrow(
            "SELECT epoch, holder FROM netlmm_identity WHERE name = $1", self.identity
        )
        return None if row is None else (int(row["epoch"]), str(row["holder"]))

    # --- reading --------------------------------------------------------------------------

    async def fetch(self) -> int:
        """Read every row of the identity (a claim first, for the state to be final); returns
        the number of rows. :meth:`load` then gives them."""
        try:
            rows = await (await self._connect()).fetch(
                "SELECT tbl, key, record FROM netlmm_state WHERE identity = $1 ORDER BY tbl, key",
                self.identity,
            )
        except Exception as exc:
            self.close()
            raise StoreError(f"{self.path}: cannot read the state: {_why(exc)}") from None
        tables: dict[str, dict[str, dict[str, Any]]] = {}
        holds: dict[str, dict[tuple[str, str], str]] = {r.table: {} for r in RULES}
        for tbl, key, record in rows:
            value = json.loads(record)
            tables.setdefault(tbl, {})[key] = value
            for rule in RULES:
                if tbl in rule.sources and value.get(rule.field) is not None:
                    holds[rule.table][(tbl, key)] = str(value[rule.field])
        self._snapshot, self._holds = tables, holds
        self._holds_uncertain = False  # read from the database itself
        self.fetched_at = time.time()
        return len(rows)

    def load(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every record, by table and key, as the last :meth:`fetch` read them."""
        return self._snapshot

    # --- writing --------------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def defer(self, persists: Iterable[Persist]) -> None:
        """Add a batch to what the next commit writes (records become JSON here: a batch with
        one that cannot is refused whole, :class:`StoreRecordError`). What the address rules
        read of a row (its ``hoa``, its ``prefix``) is kept beside it, from the record itself:
        the commit does not decode the JSON again."""
        persists = list(persists)
        self._pending.update(encode_batch(self.path, persists))
        fields = self._pending_fields
        for p in persists:
            if p.table in _SOURCES:
                record = p.record
                fields[(p.table, p.key)] = (
                    None if record is None else {f: record.get(f) for f in _FIELDS}
                )

    def _hold_changes(
        self, fields: dict[tuple[str, str], dict[str, Any] | None]
    ) -> tuple[
        list[tuple[str, tuple[str, str], str | None]],
        list[tuple[HoldRule, list[str], list[str], list[str]]],
    ]:
        """For each rule, the NAIs whose holding a batch changes (released, then held anew
        with their new value, if any), and the updates of the committed view to make once the
        batch is committed. An NAI a batch touches but whose address (or prefix) stays the same
        (a refresh), or that holds none before and after, is left alone: its row in the
        database is already that one, or there is none."""
        updates: list[tuple[str, tuple[str, str], str | None]] = []
        changes = []
        # After a fetch the view has every holding of the identity: an NAI it says holds
        # nothing has no row to release. Before one, only what this process wrote is known.
        known = self.fetched_at is not None
        sure = not self._holds_uncertain
        for rule in RULES:
            rows = self._holds[rule.table]
            after: dict[tuple[str, str], str | None] = {}
            for (table, key), row in fields.items():
                if table not in rule.sources:
                    continue
                value = None if row is None else row.get(rule.field)
                after[(table, key)] = None if value is None else str(value)
            if not after:
                continue
            updates += [(rule.table, where, value) for where, value in after.items()]
            touched: list[str] = []
            values: list[str] = []
            nais: list[str] = []
            # Once the view is complete, a row whose value for this rule is the one committed
            # cannot change its NAI's holding: only the NAIs with a changed row are looked at.
            changed = {
                where[1]
                for where, value in after.items()
                if not (known and sure) or rows.get(where) != value
            }
            for nai in sorted(changed):
                before = _held(rows, rule.sources, nai)
                now = _held(rows, rule.sources, nai, after)
                if sure and before == now and (now is not None or known):
                    continue  # held already by this NAI, or nothing held: nothing to write
                touched.append(nai)
                if now is not None:
                    values.append(now)
                    nais.append(nai)
            if touched:
                changes.append((rule, touched, values, nais))
        return updates, changes

    async def apply(self, persists: Iterable[Persist]) -> int:
        self.defer(persists)
        return await self.commit()

    async def commit(self) -> int:
        """Write the backlog in one transaction, after checking the epoch; returns the rows.

        :class:`StoreFenced` if another process holds the identity now; :class:`StoreWriteError`
        for any other failure (the backlog is kept: the same rows are written again later).

        A batch that changes no holding and not the restart counter (refreshes, peer rows: the
        common case) is one statement, so one round trip: the epoch check (the same share lock
        on the identity's row) gates its deletes and upserts, and it commits on its own.
        """
        if not self._pending:
            return 0
        pending = self._pending
        deletes = [(t, k) for (t, k), r in pending.items() if r is None]
        writes = [(t, k, r) for (t, k), r in pending.items() if r is not None]
        updates, changes = self._hold_changes(self._pending_fields)
        counter = pending.get(("meta", "restart_counter"))
        ident = self.identity
        try:
            db = await self._connect()
            if not changes and counter is None:
                epoch = await db.fetchval(
                    _ONE_STATEMENT, ident, self.epoch,
                    [d[0] for d in deletes], [d[1] for d in deletes],
                    [w[0] for w in writes], [w[1] for w in writes], [w[2] for w in writes],
                )  # fmt: skip
                self._check_epoch(epoch, pending)
            else:
                async with db.transaction():
                    self._check_epoch(await db.fetchval(_FENCE, ident), pending)
                    if deletes:
                        tables, keys = [d[0] for d in deletes], [d[1] for d in deletes]
                        await db.execute(_DELETE, ident, tables, keys)
                    if writes:
                        await db.execute(
                            _UPSERT, ident, [w[0] for w in writes], [w[1] for w in writes],
                            [w[2] for w in writes],
                        )  # fmt: skip
                    for rule, touched, values, nais in changes:  # releases first: a swap is fine
                        await db.execute(rule.release, ident, touched)
                        if nais:
                            await db.execute(rule.hold, ident, values, nais)
                    if counter is not None:  # the identity's row keeps it too (show, operators)
                        await db.execute(_COUNTER, ident, int(json.loads(counter)["value"]))
        except StoreFenced:
            raise
        except Exception as exc:  # asyncpg's errors, OSError, a lost connection, a timeout
            if not isinstance(exc, _asyncpg().PostgresError):  # the connection itself: a new one
                self.close()
            self._holds_uncertain = True
            raise StoreWriteError(
                f"{self.path}: write of {len(pending)} rows failed ({_why(exc)}); "
                "kept in memory, will retry"
            ) from None
        for table, where, value in updates:
            if value is None:
                self._holds[table].pop(where, None)
            else:
                self._holds[table][where] = value
        self._pending = {}
        self._pending_fields = {}
        self._holds_uncertain = False
        self.committed_at = time.time()
        return len(pending)

    def _check_epoch(self, epoch: object, pending: dict[tuple[str, str], str | None]) -> None:
        if epoch != self.epoch:
            raise StoreFenced(
                f"{self.path}: fenced: epoch {epoch} in the database, this process "
                f"holds {self.epoch}; {len(pending)} rows not written"
            )


def _held(
    rows: dict[tuple[str, str], str],
    sources: tuple[str, ...],
    nai: str,
    after: dict[tuple[str, str], str | None] | None = None,
) -> str | None:
    """What ``nai`` holds: the value of the first of ``sources`` that has one, in the committed
    rows, or in ``after`` (a batch's rows) where the batch has the row."""
    for table in sources:
        where = (table, nai)
        value = after[where] if after is not None and where in after else rows.get(where)
        if value is not None:
            return value
    return None


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
