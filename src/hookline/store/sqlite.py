"""The embedded default: one SQLite file in WAL mode, nothing else to install."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from hookline.errors import StoreError
from hookline.store.sql import SqlIngest, SqlStore, Statement


def _engine(path: Path, synchronous: str, *, writer: bool) -> AsyncEngine:
    # One writer connection: writers queue in the pool (cheap, async) rather than in
    # SQLite's busy handler; readers get their own connections and never block it (WAL).
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}",
        pool_size=1 if writer else 4,
        max_overflow=0 if writer else 4,
        pool_timeout=300,
        connect_args={"timeout": 30},
        # Every use of the writer ends its own transaction (commit or rollback, and a
        # connection whose rollback failed is discarded), so the pool need not roll back
        # again on each return: that was one more trip to the driver's thread per write.
        pool_reset_on_return=None if writer else "rollback",
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, issue BEGIN, so the writer can make it IMMEDIATE.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA busy_timeout=30000")
        # SQLite checks foreign keys only on connections that ask, outside a transaction.
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # An ingest transaction may have begun on the driver's thread (SqliteIngest) before
        # SQLAlchemy is asked for a statement in it; SQLAlchemy then joins that transaction.
        if not _in_transaction(conn.connection.dbapi_connection):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


async def _pragma(conn: AsyncConnection, sql: str) -> None:
    """Run a PRAGMA on the driver itself, outside any transaction (where it would be ignored)."""
    raw = await conn.get_raw_connection()
    cursor = await raw.driver_connection.execute(sql)  # type: ignore[union-attr]
    await cursor.close()


def _run_writes(
    db: sqlite3.Connection, statements: Sequence[Statement], *, begin: bool, commit: bool
) -> None:
    """Run on the driver's thread: the statements, after BEGIN and before COMMIT if asked.

    A failure rolls back whatever transaction is open, whoever began it.
    """
    try:
        if begin:
            db.execute("BEGIN IMMEDIATE")
        for sql, rows in statements:
            db.executemany(sql, rows)
        if commit:
            db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _run_query(
    db: sqlite3.Connection, sql: str, params: Sequence[Any], *, begin: bool
) -> list[tuple[Any, ...]]:
    """Run on the driver's thread: one query, after BEGIN IMMEDIATE if asked."""
    if begin:
        db.execute("BEGIN IMMEDIATE")
    return db.execute(sql, params).fetchall()


async def _on_driver_thread(conn: AsyncConnection, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(sqlite3_connection, ...)`` on aiosqlite's thread, as one call.

    Through SQLAlchemy every statement is three trips to that thread (cursor, execute, close)
    and each trip waits for the event loop to take the GIL back; a group commit made eight
    to fifteen of them before its 202. aiosqlite runs any function on its thread with
    ``_execute``; it has no public name for that.
    """
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    return await driver._execute(fn, driver._conn, *args, **kwargs)


def _in_transaction(conn: Any) -> bool:
    """Whether SQLite itself has a transaction open on this (idle) driver connection."""
    return bool(conn.driver_connection._conn.in_transaction)


class SqliteIngest(SqlIngest):
    """The ingest transaction sent to the driver's thread whole: reads begin it, writes end it.

    The first read opens the transaction (BEGIN IMMEDIATE) in the same call as its query;
    the writes and the COMMIT go as one call at the end. Statements through SQLAlchemy (the
    journeys', the counters') still work: SQLAlchemy then owns the transaction and commits.
    """

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn)
        self.begun = False  # a BEGIN sent by this object, not by SQLAlchemy

    def _open(self) -> bool:
        return self.begun or self._conn.in_transaction()

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        begin = not self._open()
        rows: list[tuple[Any, ...]] = await _on_driver_thread(
            self._conn, _run_query, sql, params, begin=begin
        )
        self.begun = self.begun or begin
        return rows

    async def commit(self) -> None:
        if self._conn.in_transaction():
            await _on_driver_thread(
                self._conn, _run_writes, self.pending, begin=False, commit=False
            )
            await self._conn.commit()
        else:
            await _on_driver_thread(
                self._conn, _run_writes, self.pending, begin=not self.begun, commit=True
            )


class SqliteStore(SqlStore):
    """The SQL store on SQLite, whose migrations rebuild tables with foreign keys unchecked.

    A rule that an older hookline's race left pointing at a deleted webhook is copied as
    it is; the rule index skips it, loudly, until it is fixed or deleted.
    """

    async def _before_migrations(self, conn: AsyncConnection) -> None:
        await _pragma(conn, "PRAGMA foreign_keys=OFF")

    async def _after_migrations(self, conn: AsyncConnection) -> None:
        await _pragma(conn, "PRAGMA foreign_keys=ON")

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[SqlIngest]:
        """A transaction of one trip to the driver's thread per read, and one for the rest.

        A group of cached users that resends no eid reads nothing: BEGIN, its writes and
        COMMIT are a single call; a claim is two (BEGIN and its query; leases and COMMIT).
        """
        async with self._writer() as conn:
            tx = SqliteIngest(conn)
            yield tx
            await tx.commit()

    async def _write_statements(self, statements: Sequence[Statement]) -> None:
        async with self._writer() as conn:
            await _on_driver_thread(conn, _run_writes, statements, begin=True, commit=True)

    @asynccontextmanager
    async def _writer(self) -> AsyncIterator[AsyncConnection]:
        """The writer connection, outside SQLAlchemy's transaction; discarded after a failure.

        After an error its transaction state is unknown, and the pool does not roll back on
        return (see ``_engine``): a fresh connection is safer than a guess.
        """
        try:
            async with self.engine.connect() as conn:
                try:
                    yield conn
                except BaseException:
                    await conn.invalidate()
                    raise
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise StoreError(f"the database failed: {exc.__class__.__name__}: {exc}") from exc


def open_sqlite(path: Path, *, synchronous: str = "FULL") -> SqliteStore:
    """A store on ``path``; ``synchronous=FULL`` makes every commit survive power loss."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(
        _engine(path, synchronous, writer=True),
        read_engine=_engine(path, synchronous, writer=False),
    )
