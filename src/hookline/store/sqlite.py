"""The embedded default: one SQLite file in WAL mode, nothing else to install."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from hookline.store.sql import SqlStore


def _engine(path: Path, synchronous: str, *, writer: bool) -> AsyncEngine:
    # One writer connection: writers queue in the pool (cheap, async) rather than in
    # SQLite's busy handler; readers get their own connections and never block it (WAL).
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}",
        pool_size=1 if writer else 4,
        max_overflow=0 if writer else 4,
        pool_timeout=300,
        connect_args={"timeout": 30},
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
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


async def _pragma(conn: AsyncConnection, sql: str) -> None:
    """Run a PRAGMA on the driver itself, outside any transaction (where it would be ignored)."""
    raw = await conn.get_raw_connection()
    cursor = await raw.driver_connection.execute(sql)  # type: ignore[union-attr]
    await cursor.close()


class SqliteStore(SqlStore):
    """The SQL store on SQLite, whose migrations rebuild tables with foreign keys unchecked.

    A rule that an older hookline's race left pointing at a deleted webhook is copied as
    it is; the rule index skips it, loudly, until it is fixed or deleted.
    """

    async def _before_migrations(self, conn: AsyncConnection) -> None:
        await _pragma(conn, "PRAGMA foreign_keys=OFF")

    async def _after_migrations(self, conn: AsyncConnection) -> None:
        await _pragma(conn, "PRAGMA foreign_keys=ON")


def open_sqlite(path: Path, *, synchronous: str = "FULL") -> SqliteStore:
    """A store on ``path``; ``synchronous=FULL`` makes every commit survive power loss."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(
        _engine(path, synchronous, writer=True),
        read_engine=_engine(path, synchronous, writer=False),
    )
