"""The store's promises on both engines (SQLite, and a real PostgreSQL 15 the fixture starts):
batches commit whole, the last write of a key wins, state reloads, a batch written twice (an
uncertain commit retried) gives the same state. PostgreSQL besides: one address per NAI held by
the table keys, and fencing by epoch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from router.adapters.store import Store, StoreRecordError, StoreWriteError
from router.adapters.store_pg import PgStore, StoreFenced
from router.core.actions import Persist

IDENTITY = "2001:db8:100::1"


class Engine:
    """One store as the tests drive it: the same calls whatever the engine, on one loop."""

    def __init__(self, kind: str, where: str, loop: asyncio.AbstractEventLoop) -> None:
        self.kind, self.where, self.loop = kind, where, loop
        self.store = self._open()

    def _open(self) -> Store | PgStore:
        if self.kind == "sqlite":
            return Store(Path(self.where))
        store = PgStore(self.where, IDENTITY, holder="test")
        self.loop.run_until_complete(store.open())
        self.loop.run_until_complete(store.claim())
        return store

    def apply(self, persists: list[Persist]) -> None:
        store = self.store
        if isinstance(store, PgStore):
            self.loop.run_until_complete(store.apply(persists))
        else:
            store.apply(persists)

    def load(self) -> dict[str, dict[str, dict[str, Any]]]:
        if isinstance(self.store, PgStore):
            self.loop.run_until_complete(self.store.fetch())
        return self.store.load()

    def reopen(self) -> None:
        self.store.close()
        self.store = self._open()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    loop = asyncio.new_event_loop()
    if request.param == "sqlite":
        where = str(tmp_path / "state.sqlite")
    else:
        where = request.getfixturevalue("pg_dsn")
    made = Engine(request.param, where, loop)
    try:
        yield made
    finally:
        made.store.close()
        loop.close()


def binding(nai: str, hoa: str) -> Persist:
    return Persist("binding", nai, {"nai": nai, "hoa": hoa})


def lease(nai: str, hoa: str) -> Persist:
    return Persist("lease", nai, {"nai": nai, "hoa": hoa, "expires_wall": None})


def test_batch_round_trip_and_delete(engine: Engine) -> None:
    engine.apply(
        [
            binding("a@x", "192.0.2.2"),
            binding("b@x", "192.0.2.3"),
            Persist("peer", "2001:db8:1::1", {"peer": "2001:db8:1::1", "sequence": 7}),
        ]
    )
    engine.apply([Persist("binding", "a@x", None)])
    engine.reopen()
    assert engine.load() == {
        "binding": {"b@x": {"nai": "b@x", "hoa": "192.0.2.3"}},
        "peer": {"2001:db8:1::1": {"peer": "2001:db8:1::1", "sequence": 7}},
    }


def test_the_last_write_of_a_key_in_a_batch_wins(engine: Engine) -> None:
    engine.apply([binding("a@x", "192.0.2.2"), Persist("binding", "a@x", None)])
    engine.apply([Persist("meta", "k", {"value": 1}), Persist("meta", "k", {"value": 2})])
    assert engine.load() == {"meta": {"k": {"value": 2}}}


def test_a_batch_with_a_record_json_cannot_hold_writes_nothing(engine: Engine) -> None:
    bad = Persist("binding", "c@x", {"unserialisable": object()})
    with pytest.raises(StoreRecordError):
        engine.apply([binding("a@x", "192.0.2.2"), bad])
    assert engine.store.backlog == 0
    assert engine.load() == {}


def test_a_batch_written_twice_gives_the_same_state(engine: Engine) -> None:
    """An uncertain commit (the answer lost) is retried: every write is by key."""
    batch = [binding("a@x", "192.0.2.2"), lease("b@x", "192.0.2.3"), Persist("lease", "z", None)]
    engine.apply(batch)
    first = engine.load()
    engine.apply(batch)
    assert engine.load() == first
    assert first["binding"]["a@x"]["hoa"] == "192.0.2.2"


# --- PostgreSQL only: the address rules in the database, fencing ---------------------------


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[Engine]:
    loop = asyncio.new_event_loop()
    made = Engine("postgresql", pg_dsn, loop)
    try:
        yield made
    finally:
        made.store.close()
        loop.close()


def addresses(engine: Engine) -> list[tuple[str, str]]:
    store = engine.store
    assert isinstance(store, PgStore)
    rows = engine.loop.run_until_complete(
        store._db.fetch("SELECT host(hoa) AS hoa, nai FROM netlmm_address ORDER BY hoa")
    )
    return [(row["hoa"], row["nai"]) for row in rows]


def test_the_address_table_follows_bindings_and_leases(pg: Engine) -> None:
    pg.apply([binding("a@x", "192.0.2.2"), lease("b@x", "192.0.2.3")])
    assert addresses(pg) == [("192.0.2.2", "a@x"), ("192.0.2.3", "b@x")]
    # the binding goes, its lease runs on: the NAI still holds the address
    pg.apply([Persist("binding", "a@x", None), lease("a@x", "192.0.2.2")])
    assert addresses(pg) == [("192.0.2.2", "a@x"), ("192.0.2.3", "b@x")]
    pg.apply([Persist("lease", "a@x", None)])
    assert addresses(pg) == [("192.0.2.3", "b@x")]


def test_two_nais_never_hold_one_address_a_batch_that_tries_fails_whole(pg: Engine) -> None:
    pg.apply([binding("a@x", "192.0.2.2")])
    with pytest.raises(StoreWriteError, match="netlmm_address"):
        pg.apply([binding("b@x", "192.0.2.2"), Persist("meta", "k", {"value": 1})])
    store = pg.store
    assert isinstance(store, PgStore)
    store._pending.clear()  # what the runner would keep retrying: dropped here, by the test
    assert pg.load() == {"binding": {"a@x": {"nai": "a@x", "hoa": "192.0.2.2"}}}
    assert addresses(pg) == [("192.0.2.2", "a@x")]


def test_an_address_can_move_between_nais_within_one_batch(pg: Engine) -> None:
    pg.apply([binding("a@x", "192.0.2.2"), binding("b@x", "192.0.2.3")])
    pg.apply([binding("a@x", "192.0.2.3"), binding("b@x", "192.0.2.2")])
    assert addresses(pg) == [("192.0.2.2", "b@x"), ("192.0.2.3", "a@x")]


class _LostAfterCommit:
    """A connection whose next transaction commits on the server, then fails on the client
    (as a connection lost right after COMMIT): the commit's outcome is unknown to the store."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def transaction(self) -> Any:
        real = self._db.transaction()

        class Lost:
            async def __aenter__(self) -> Any:
                return await real.__aenter__()

            async def __aexit__(self, *exc: Any) -> None:
                await real.__aexit__(*exc)
                if exc[0] is None:
                    raise ConnectionResetError("lost after COMMIT")

        return Lost()


def test_an_uncertain_commit_that_went_through_leaves_no_stale_address_row(pg: Engine) -> None:
    store = pg.store
    assert isinstance(store, PgStore)
    pg.apply([binding("a@x", "192.0.2.2")])
    store._db = _LostAfterCommit(store._db)
    with pytest.raises(StoreWriteError):  # the move to .3 reached the database all the same
        pg.apply([binding("a@x", "192.0.2.3")])
    assert store._db is None  # the store dropped the connection; it opens a new one
    pg.loop.run_until_complete(store._connect())
    assert addresses(pg) == [("192.0.2.3", "a@x")]
    # the retry carries the NAI back to .2, the value the store last saw committed
    pg.apply([binding("a@x", "192.0.2.2")])
    assert addresses(pg) == [("192.0.2.2", "a@x")]
    pg.apply([binding("b@x", "192.0.2.3")])  # so .3 is free for another NAI
    assert addresses(pg) == [("192.0.2.2", "a@x"), ("192.0.2.3", "b@x")]


def test_the_keys_hold_even_against_sql_that_is_not_ours(pg: Engine) -> None:
    import asyncpg

    pg.apply([binding("a@x", "192.0.2.2")])
    store = pg.store
    assert isinstance(store, PgStore)
    insert = "INSERT INTO netlmm_address (identity, hoa, nai) VALUES ($1, $2, $3)"
    with pytest.raises(asyncpg.UniqueViolationError):  # the address, to another NAI
        pg.loop.run_until_complete(store._db.execute(insert, IDENTITY, "192.0.2.2", "b@x"))
    with pytest.raises(asyncpg.UniqueViolationError):  # the NAI, a second address
        pg.loop.run_until_complete(store._db.execute(insert, IDENTITY, "192.0.2.9", "a@x"))


@pytest.fixture
def standby(pg: Engine, pg_dsn: str) -> Iterator[PgStore]:
    """A second process's store on the same database (the pair's standby): open, not claimed."""
    store = PgStore(pg_dsn, IDENTITY, holder="standby")
    pg.loop.run_until_complete(store.open())
    try:
        yield store
    finally:
        store.close()


def test_a_takeover_fences_the_old_holder(pg: Engine, standby: PgStore) -> None:
    old, new, loop = pg.store, standby, pg.loop
    assert isinstance(old, PgStore)
    pg.apply([binding("a@x", "192.0.2.2")])
    assert loop.run_until_complete(new.claim()) == old.epoch + 1
    # the old active, cut off from its peer but still reaching the database, cannot allocate
    with pytest.raises(StoreFenced, match="fenced"):
        pg.apply([binding("b@x", "192.0.2.3")])
    loop.run_until_complete(new.fetch())
    assert new.load() == {"binding": {"a@x": {"nai": "a@x", "hoa": "192.0.2.2"}}}
    loop.run_until_complete(new.apply([binding("c@x", "192.0.2.4")]))
    assert addresses(pg) == [("192.0.2.2", "a@x"), ("192.0.2.4", "c@x")]
    assert loop.run_until_complete(new.current_epoch()) == (new.epoch, "standby")


def test_a_claim_waits_for_a_write_in_flight_then_fences_the_next(pg: Engine, pg_dsn: str) -> None:
    """The claim and the fence check lock the same row: a write that started before the claim
    commits first (the new holder then reads it), any later one fails."""
    old = pg.store
    assert isinstance(old, PgStore)
    new = PgStore(pg_dsn, IDENTITY, holder="standby")
    loop = pg.loop

    async def race() -> None:
        await new.open()
        tx = old._db.transaction()
        await tx.start()
        await old._db.fetchval("SELECT epoch FROM netlmm_identity WHERE name = $1 FOR SHARE",
                               IDENTITY)  # fmt: skip
        claim = asyncio.ensure_future(new.claim())
        await asyncio.sleep(0.2)
        assert not claim.done()  # waits for the writer's transaction
        await tx.commit()
        await asyncio.wait_for(claim, 5)

    loop.run_until_complete(race())
    with pytest.raises(StoreFenced):
        pg.apply([binding("b@x", "192.0.2.3")])
    new.close()


def test_a_database_of_another_schema_version_is_refused(pg: Engine, pg_dsn: str) -> None:
    store = pg.store
    assert isinstance(store, PgStore)
    pg.loop.run_until_complete(store._db.execute("UPDATE netlmm_schema SET version = 99"))
    other = PgStore(pg_dsn, IDENTITY)
    from router.adapters.store import StoreError

    with pytest.raises(StoreError, match="schema version 99"):
        pg.loop.run_until_complete(other.open())


def test_an_unreachable_database_is_one_clear_error(tmp_path: Path) -> None:
    from router.adapters.store import StoreError

    dsn = f"postgresql://postgres@/x?host={tmp_path}&port=5432"
    store = PgStore(dsn, IDENTITY)
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(StoreError, match="cannot open the database"):
            loop.run_until_complete(store.open(timeout=2.0))
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("dsn", "why"),
    [
        ("postgresql://db.example.net:notaport/x", "the DSN is not usable: invalid literal"),
        ("postgresql://[2001:db8::1/x", "the DSN is not usable: Invalid IPv6 URL"),
        ("postgresql://db.example.net/x?sslmode=bogus", "cannot open the database: .*sslmode"),
    ],
)
def test_a_dsn_asyncpg_cannot_use_is_one_clear_error(dsn: str, why: str) -> None:
    """Refused by asyncpg before any connection (no database needed): a StoreError, which
    ``netlmm run`` reports as one start_failed line with key node.store_dsn, not a traceback."""
    from router.adapters.store import StoreError

    store = PgStore(dsn, IDENTITY)
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(StoreError, match=why):
            loop.run_until_complete(store.open(timeout=2.0))
    finally:
        loop.close()


def test_a_claim_with_another_hoa_network_is_refused(pg_dsn: str) -> None:
    """The two DLMAPs of a pair must serve the same HoA network: the identity keeps the one of
    its first claim, and a process configured with another cannot take it."""
    from router.adapters.store import StoreError

    loop = asyncio.new_event_loop()
    first = PgStore(pg_dsn, IDENTITY, holder="a", network="192.0.2.0/24")
    other = PgStore(pg_dsn, IDENTITY, holder="b", network="198.51.100.0/24")
    try:
        loop.run_until_complete(first.open())
        assert loop.run_until_complete(first.claim()) == 1
        loop.run_until_complete(other.open())
        with pytest.raises(StoreError, match=r"serves HoA network 192\.0\.2\.0/24"):
            loop.run_until_complete(other.claim())
        assert loop.run_until_complete(first.current_epoch()) == (1, "a")  # not raised
    finally:
        first.close()
        other.close()
        loop.close()


def test_an_ipv6_only_binding_holds_no_ipv4_address(pg: Engine) -> None:
    """A V=0 registration (an IPv6 home network prefix only) has no HoA in its row."""
    row = {"nai": "v6@x", "hoa": None, "prefix": "2001:db8:7::/64"}
    ipv6_only = Persist("binding", "v6@x", row)
    pg.apply([binding("a@x", "192.0.2.2"), ipv6_only])
    assert addresses(pg) == [("192.0.2.2", "a@x")]
    pg.reopen()
    assert pg.load()["binding"]["v6@x"]["prefix"] == "2001:db8:7::/64"
    pg.apply([binding("v6@x", "192.0.2.3")])  # the same NAI asks for IPv4 too later
    assert addresses(pg) == [("192.0.2.2", "a@x"), ("192.0.2.3", "v6@x")]


def test_two_nais_never_hold_one_ipv6_prefix(pg: Engine) -> None:
    """The IPv6 home network prefixes (dual stack) are held one per NAI by their own table."""

    def v6(nai: str, prefix: str) -> Persist:
        return Persist("binding", nai, {"nai": nai, "hoa": None, "prefix": prefix})

    pg.apply([v6("a@x", "2001:db8:7::/64"), v6("b@x", "2001:db8:7:1::/64")])
    store = pg.store
    assert isinstance(store, PgStore)
    rows = pg.loop.run_until_complete(
        store._db.fetch("SELECT text(prefix) AS p, nai FROM netlmm_prefix ORDER BY prefix")
    )
    expected = [("2001:db8:7::/64", "a@x"), ("2001:db8:7:1::/64", "b@x")]
    assert [(r["p"], r["nai"]) for r in rows] == expected
    with pytest.raises(StoreWriteError, match="netlmm_prefix"):
        pg.apply([v6("c@x", "2001:db8:7::/64")])


def test_a_prefix_only_binding_holds_no_address(pg: Engine) -> None:
    """Issue 18: a plain RFC 5213 binding (V=0, HNP only) has no IPv4 address to hold; a
    dual-stack one holds its IPv4 address as any binding does."""
    v6only = {"nai": "c@x", "hoa": None, "prefix": "2001:db8:ff00::/64", "dmpa": "2001:db8::1"}
    dual = {"nai": "d@x", "hoa": "192.0.2.4", "prefix": "2001:db8:ff00:1::/64"}
    pg.apply([Persist("binding", "c@x", v6only), Persist("binding", "d@x", dual)])
    assert addresses(pg) == [("192.0.2.4", "d@x")]
    assert pg.load()["binding"]["c@x"]["prefix"] == "2001:db8:ff00::/64"
    pg.apply([Persist("binding", "d@x", {**dual, "hoa": None})])  # the MS gave up IPv4
    assert addresses(pg) == []


def address_row_versions(engine: Engine) -> list[tuple[str, str]]:
    """The address rows with their row version (``xmin``): a row written again gets a new one."""
    store = engine.store
    assert isinstance(store, PgStore)
    sql = "SELECT nai, xmin::text AS v FROM netlmm_address ORDER BY nai"
    return [(r["nai"], r["v"]) for r in engine.loop.run_until_complete(store._db.fetch(sql))]


def test_a_refresh_writes_its_record_and_leaves_the_address_row_alone(pg: Engine) -> None:
    """A batch that changes no holding (a binding refreshed at the same address, a peer row) is
    one statement: the records are written, the address rows are not rewritten."""
    pg.apply([binding("a@x", "192.0.2.2"), binding("b@x", "192.0.2.3")])
    before = address_row_versions(pg)
    refreshed = Persist("binding", "a@x", {"nai": "a@x", "hoa": "192.0.2.2", "sequence": 7})
    pg.apply([refreshed, Persist("peer", "p", {"sequence": 1}), Persist("lease", "z", None)])
    assert address_row_versions(pg) == before
    assert pg.load()["binding"]["a@x"]["sequence"] == 7
    pg.apply([Persist("peer", "p", None)])  # a delete alone, the same way
    assert "peer" not in pg.load()
    pg.apply([binding("a@x", "192.0.2.4")])  # a real change is written as before
    assert addresses(pg) == [("192.0.2.3", "b@x"), ("192.0.2.4", "a@x")]


def test_a_takeover_fences_a_refresh_of_the_old_holder(pg: Engine, standby: PgStore) -> None:
    """The one-statement write checks the epoch as the transaction does: nothing is written."""
    old, new, loop = pg.store, standby, pg.loop
    assert isinstance(old, PgStore)
    pg.apply([binding("a@x", "192.0.2.2")])
    loop.run_until_complete(new.claim())
    refreshed = Persist("binding", "a@x", {"nai": "a@x", "hoa": "192.0.2.2", "sequence": 9})
    with pytest.raises(StoreFenced, match="fenced"):
        pg.apply([refreshed, Persist("peer", "p", {"sequence": 1})])
    assert old.backlog == 2  # kept, as any failed write
    loop.run_until_complete(new.fetch())
    assert new.load() == {"binding": {"a@x": {"nai": "a@x", "hoa": "192.0.2.2"}}}


def test_a_store_that_has_not_read_the_state_still_releases_what_it_did_not_write(
    pg: Engine,
) -> None:
    """Without a fetch the store knows only the holdings it wrote itself: a binding removed
    by a process that never read it still takes its address row with it."""
    pg.apply([binding("a@x", "192.0.2.2")])
    pg.store.close()
    store = PgStore(pg.where, IDENTITY, holder="test")
    pg.loop.run_until_complete(store.open())
    pg.loop.run_until_complete(store.claim())
    pg.store = store
    pg.apply([Persist("binding", "a@x", None)])
    assert addresses(pg) == []
