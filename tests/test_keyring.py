"""API keys in the store and in memory: only hashes stored, no database read per request."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hookline.errors import NotFound
from hookline.keyring import KeyRing, RingConfig
from hookline.keys import ApiKey, Role, key_hash
from hookline.store import schema as t
from hookline.store.sqlite import SqliteStore, open_sqlite


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = open_sqlite(tmp_path / "hookline.db")
    await s.open()
    yield s
    await s.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """The real store, counting the reads the ring makes."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.reads = 0

    async def insert_key(self, key: ApiKey) -> None:
        await self.store.insert_key(key)

    async def list_keys(self, *, active_only: bool = False) -> list[ApiKey]:
        self.reads += 1
        return await self.store.list_keys(active_only=active_only)

    async def revoke_key(self, key_id: str, now: int) -> ApiKey | None:
        return await self.store.revoke_key(key_id, now)


def _database_bytes(directory: Path) -> bytes:
    """The database file and its write-ahead log, where a fresh write may still be."""
    return b"".join(p.read_bytes() for p in sorted(directory.glob("hookline.db*")))


async def test_only_the_hash_and_first_characters_are_stored(
    store: SqliteStore, tmp_path: Path
) -> None:
    ring = KeyRing(store)
    await ring.load()
    record, text = await ring.create(Role.INGEST, ("b1", "5"), "shop")
    assert text.startswith("hlk_") and len(text) > 40
    assert record.id.startswith("key_") and record.hash == key_hash(text)
    assert text.startswith(record.shown) and len(record.shown) < len(text) // 2
    (stored,) = await store.list_keys()
    assert stored == record
    assert stored.brands == ("b1", "5") and stored.role is Role.INGEST
    raw = _database_bytes(tmp_path)
    assert text.encode() not in raw
    assert record.hash.encode() in raw


async def test_revoke_keeps_the_first_time_and_unknown_is_not_found(store: SqliteStore) -> None:
    ring = KeyRing(store)
    await ring.load()
    record, text = await ring.create(Role.READ, (), "")
    revoked = await ring.revoke(record.id)
    assert revoked.revoked_at is not None
    assert (await ring.revoke(record.id)).revoked_at == revoked.revoked_at
    assert await ring.find(text) is None
    assert [k.id for k in await store.list_keys()] == [record.id]
    assert await store.list_keys(active_only=True) == []
    with pytest.raises(NotFound):
        await ring.revoke("key_nope")


async def test_known_keys_are_found_without_reading_the_database(store: SqliteStore) -> None:
    counting = CountingStore(store)
    clock = Clock()
    ring = KeyRing(counting, RingConfig(refresh=5.0, miss_reload=1.0), clock=clock)
    await ring.load()
    record, text = await ring.create(Role.ADMIN, (), "root")
    reads = counting.reads
    for _ in range(1000):
        assert await ring.find(text) == record
    assert counting.reads == reads
    # A flood of wrong keys costs one reload per miss_reload, not one read each.
    clock.now += 2
    for i in range(1000):
        assert await ring.find(f"hlk_wrong{i}") is None
    assert counting.reads == reads + 1
    clock.now += 1.5
    assert await ring.find("hlk_wrong") is None
    assert counting.reads == reads + 2


async def test_keys_changed_by_another_process_arrive(store: SqliteStore) -> None:
    """A key made elsewhere works at once; one revoked elsewhere stops within ``refresh``."""
    clock = Clock()
    here = KeyRing(store, RingConfig(refresh=5.0, miss_reload=1.0), clock=clock)
    elsewhere = KeyRing(store)
    await here.load()
    assert here.active == 0
    clock.now += 2  # past miss_reload, as any real first use is
    record, text = await elsewhere.create(Role.INGEST, (), "")
    assert await here.find(text) == record
    assert here.active == 1
    await elsewhere.revoke(record.id)
    clock.now += 1
    await here.refresh()
    assert await here.find(text) == record  # still within refresh: held in memory
    clock.now += 5
    await here.refresh()
    assert await here.find(text) is None
    assert here.active == 0


async def test_a_reload_is_as_old_as_the_read_that_made_it(store: SqliteStore) -> None:
    """A revoke committed while a reload's read was under way may be missing from it: the
    reload counts as fresh from when its read began, so the revoke arrives within
    ``refresh`` of its commit (what ``hookline keys revoke --data-dir`` waits for)."""
    clock = Clock()

    class SlowStore(CountingStore):
        async def list_keys(self, *, active_only: bool = False) -> list[ApiKey]:
            keys = await super().list_keys(active_only=active_only)
            clock.now += 3.0  # the read took 3 s
            return keys

    slow = SlowStore(store)
    ring = KeyRing(slow, RingConfig(refresh=5.0), clock=clock)
    await ring.load()
    clock.now += 2.5  # 5.5 s after the read began, 2.5 s after it ended
    await ring.refresh()
    assert slow.reads == 2


async def test_a_version_2_database_gets_the_keys_table_on_open(tmp_path: Path) -> None:
    path = tmp_path / "hookline.db"
    store = open_sqlite(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:  # as a hookline from before keys left it
        db.execute("DROP TABLE api_keys")
        version = db.execute(
            "SELECT value FROM hookline_meta WHERE key = 'schema_version'"
        ).fetchone()
    store = open_sqlite(path)
    await store.open()
    try:
        ring = KeyRing(store)
        await ring.load()
        _, text = await ring.create(Role.ADMIN, (), "first")
        assert (await KeyRing(store).find(text)) is not None
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        after = db.execute("SELECT value FROM hookline_meta WHERE key = 'schema_version'")
        assert after.fetchone() == version == (str(t.SCHEMA_VERSION),)
        indexes = {row[1] for row in db.execute("PRAGMA index_list(api_keys)")}
    assert "ux_api_keys_hash" in indexes
