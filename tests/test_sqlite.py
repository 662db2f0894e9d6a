"""The SQLite store's writer: a group's writes in one trip to the driver's thread."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite.core
import pytest

from hookline.deliveries import Delivery
from hookline.errors import StoreError
from hookline.events import Event, EventInput
from hookline.runtime import Runtime
from tests.helpers import due_delivery


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Every function aiosqlite runs on a connection's thread from now on: (connection, name)."""
    names: list[tuple[int, str]] = []
    real = aiosqlite.core.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        names.append((id(self), getattr(fn, "__name__", repr(fn))))
        return await real(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(aiosqlite.core.Connection, "_execute", counted)
    return names


def _writer_trips(trips: list[tuple[int, str]]) -> list[str]:
    """The trips of the connection that wrote (the readers' are left out)."""
    writer = next(conn for conn, name in trips if name == "_run_writes")
    return [name for conn, name in trips if conn == writer]


def _event(user: str, i: int) -> EventInput:
    return EventInput(None, "spin", user, None, None, {"i": i})


def _stored(i: int) -> Event:
    return Event(
        id=f"evt_{i}",
        eid=None,
        event_type="spin",
        user_ext_id="u-1",
        ext_brand_id=None,
        event_date=1,
        payload={"i": i},
        received_at=1,
    )


async def test_a_group_of_cached_users_is_one_trip_to_the_driver_thread(
    runtime: Runtime, trips: list[tuple[int, str]]
) -> None:
    await runtime.engine.submit([_event("u-1", 0)])  # reads u-1 once; now in the cache
    trips.clear()
    accepted = await runtime.engine.submit([_event("u-1", 1), _event("u-1", 2)])
    assert _writer_trips(trips) == ["_run_writes"]
    assert await runtime.store.get_event(accepted[1].id) is not None


async def test_a_group_that_reads_a_user_is_two_trips(
    runtime: Runtime, trips: list[tuple[int, str]]
) -> None:
    accepted = await runtime.engine.submit([_event("u-new", 0)])
    assert _writer_trips(trips) == ["_run_query", "_run_writes"]  # BEGIN and read; the rest
    assert await runtime.store.get_event(accepted[0].id) is not None


async def test_statements_through_sqlalchemy_join_a_transaction_begun_on_the_thread(
    runtime: Runtime,
) -> None:
    async with runtime.store.ingest() as tx:
        assert await tx.load_states([("", "nobody")]) == {}  # begins on the driver's thread
        assert await tx.load_counters([("", "nobody")]) == {}  # SQLAlchemy joins it
        await tx.insert_events([_stored(3)])
    assert await runtime.store.get_event("evt_3") is not None


async def test_a_write_refused_by_the_database_leaves_nothing_and_the_writer_usable(
    runtime: Runtime,
) -> None:
    async def write_twice() -> None:
        async with runtime.store.ingest() as tx:
            await tx.insert_events([_stored(1)])
            await tx.insert_events([_stored(1)])  # the same id twice: the second fails

    with pytest.raises(StoreError, match="IntegrityError"):
        await write_twice()
    assert await runtime.store.get_event("evt_1") is None
    async with runtime.store.ingest() as tx:
        await tx.insert_events([_stored(2)])
    assert await runtime.store.get_event("evt_2") is not None


def _due(id_: str, url: str, at: int = 1_000) -> Delivery:
    return due_delivery(
        url, id=id_, event_id="evt_1", timeout=15.0, created_at=at, next_attempt_at=at
    )


async def test_a_claim_leaves_out_full_hosts_and_leases_what_it_takes(runtime: Runtime) -> None:
    async with runtime.store.ingest() as tx:
        await tx.insert_events([_stored(1)])
        await tx.insert_deliveries(
            [
                _due("dlv_a1", "http://a.test/hook"),
                _due("dlv_a2", "http://a.test/hook"),
                _due("dlv_b1", "http://b.test/hook"),
            ]
        )
    full_a = {"a.test:80": 0}  # a destination is host:port, the port written out
    claimed = await runtime.store.claim_due(2_000, 10, 0, full_a, 32)
    assert [d.id for d in claimed] == ["dlv_b1"]
    assert await runtime.store.claim_due(2_000, 10, 0, full_a, 32) == []  # leased: not again
    assert {d.id for d in await runtime.store.claim_due(2_000, 10, 0, {}, 32)} == {
        "dlv_a1",
        "dlv_a2",
    }


async def test_a_claim_reads_past_a_full_hosts_backlog_only_when_asked(runtime: Runtime) -> None:
    # More of a.test's rows are due first than one look reads (twice the limit): b.test's
    # delivery is behind them, found only by the second look, which reads a.test's backlog.
    backlog = [_due(f"dlv_a{i:02d}", "http://a.test/hook", 1_000 + i) for i in range(25)]
    async with runtime.store.ingest() as tx:
        await tx.insert_events([_stored(1)])
        await tx.insert_deliveries([*backlog, _due("dlv_b1", "http://b.test/hook", 1_500)])
    full_a = {"a.test:80": 0}  # a destination is host:port, the port written out
    assert await runtime.store.claim_due(2_000, 10, 0, full_a, 32, look_past=False) == []
    claimed = await runtime.store.claim_due(2_000, 10, 0, full_a, 32, look_past=True)
    assert [d.id for d in claimed] == ["dlv_b1"]


async def test_reading_states_searches_the_users_key_and_never_scans_the_table(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The users' key is (ext_brand_id, user_ext_id): a lookup by user id alone scanned every
    row, a full scan per group of events once a million users held state."""
    from hookline.store.sqlite import SqliteIngest

    async with runtime.store.ingest() as tx:
        await tx.save_states({("5", "u-1"): {"a": 1}, ("", "u-1"): {"a": 2}}, 1)
    asked: list[tuple[str, tuple[Any, ...]]] = []
    real = SqliteIngest._fetch

    async def recorded(self: SqliteIngest, sql: str, params: Any) -> Any:
        asked.append((sql, tuple(params)))
        return await real(self, sql, params)

    monkeypatch.setattr(SqliteIngest, "_fetch", recorded)
    async with runtime.store.ingest() as tx:
        states = await tx.load_states([("5", "u-1"), ("", "u-1"), ("7", "u-1")])
    assert states == {("5", "u-1"): {"a": 1}, ("", "u-1"): {"a": 2}}
    reads = [(sql, params) for sql, params in asked if "FROM users" in sql]
    assert reads
    with sqlite3.connect(tmp_path / "hookline.db") as db:
        for sql, params in reads:
            plan = " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "SEARCH users USING" in plan and "SCAN users" not in plan, plan
