"""The embedded default: one SQLite file in WAL mode, nothing else to install."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


def open_sqlite(path: Path, *, synchronous: str = "FULL") -> SqlStore:
    """A store on ``path``; ``synchronous=FULL`` makes every commit survive power loss."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqlStore(
        _engine(path, synchronous, writer=True),
        read_engine=_engine(path, synchronous, writer=False),
    )
