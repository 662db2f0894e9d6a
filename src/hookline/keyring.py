"""The API keys a running hookline accepts, held in memory: no database read per request.

Loaded when hookline starts, and changed in place by the creates and revokes made through
it. Keys made or revoked elsewhere (another process, ``hookline keys ... --data-dir``)
arrive by a reload of the whole (small) table: at most ``refresh`` seconds after the last
one, and at once on an unknown key, but then at most once per ``miss_reload`` seconds, so
a flood of wrong keys costs one read a second, not one read each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from hookline.errors import InvalidInput, NotFound, StoreError
from hookline.events import now_ms
from hookline.keys import KEY_PREFIX, ApiKey, Role, issue, key_hash
from hookline.store.base import KeyStore

log = logging.getLogger("hookline.keys")


@dataclass(frozen=True)
class RingConfig:
    # How stale the ring may get about keys changed by another process (seconds).
    refresh: float = 5.0
    # The least time between two reloads caused by a key the ring does not know.
    miss_reload: float = 1.0


class KeyRing:
    """Key hash → active key, with the writes that keep it true."""

    def __init__(
        self,
        store: KeyStore,
        config: RingConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config = config or RingConfig()
        self._clock = clock
        self._by_hash: dict[str, ApiKey] = {}
        # Keys ever made here, revoked ones too: once there was one, hookline stays closed.
        self._made = 0
        self._loaded_at: float | None = None
        # Serialises reloads with writes, so a reload cannot bring back a key just revoked.
        self._lock = asyncio.Lock()

    @property
    def active(self) -> int:
        """How many keys are not revoked (as of the last load or local change)."""
        return len(self._by_hash)

    @property
    def made(self) -> int:
        """How many keys were ever made, revoked ones included (as of the last load).

        Revoking the last key must not open hookline again: it is what an operator does
        when a key leaks, and then the revoked key would work as an admin's.
        """
        return self._made

    async def load(self) -> None:
        async with self._lock:
            await self._load()

    async def _load(self) -> None:
        # The time the read began: a change committed after it may be missing from it, so
        # the ring counts its age from then (``hookline keys --data-dir`` relies on it).
        began = self._clock()
        keys = await self.store.list_keys()
        self._by_hash = {k.hash: k for k in keys if k.revoked_at is None}
        self._made = len(keys)
        self._loaded_at = began

    async def refresh(self, max_age: float | None = None) -> None:
        """Reload if the ring is older than ``max_age`` (default: ``config.refresh``)."""
        age = self.config.refresh if max_age is None else max_age
        if self._fresh(age):
            return
        async with self._lock:
            if self._fresh(age):  # another request reloaded while this one waited
                return
            try:
                await self._load()
            except StoreError as exc:
                # Keep serving from memory; try again after the interval, not per request.
                self._loaded_at = self._clock()
                log.warning("could not reload the API keys, keeping those held: %s", exc.detail)

    def _fresh(self, max_age: float) -> bool:
        return self._loaded_at is not None and self._clock() - self._loaded_at < max_age

    async def find(self, text: str) -> ApiKey | None:
        """The active key whose text this is, or None."""
        digest = key_hash(text)
        key = self._by_hash.get(digest)
        if key is None:
            # Perhaps made elsewhere since the last load.
            await self.refresh(self.config.miss_reload)
            key = self._by_hash.get(digest)
        return key

    async def create(self, role: Role, brands: tuple[str, ...], name: str) -> tuple[ApiKey, str]:
        """Store a new key; answer its record and its text (shown once, never kept)."""
        record, text = issue(role, brands, name, now_ms())
        async with self._lock:
            await self.store.insert_key(record)
            self._by_hash[record.hash] = record
            self._made += 1
        log.info("API key %s created (role %s)", record.id, record.role.value)
        return record, text

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (again is fine: it keeps its first revocation time)."""
        if key_id.startswith(KEY_PREFIX):
            # A leaked key in hand instead of its id: say how to find the id, never echo it.
            raise InvalidInput(
                f"this is a key ({KEY_PREFIX}...), not a key's id (key_...): find its id with "
                "`hookline keys list` (or GET /api/v1/keys) by its first 12 characters, "
                "key_prefix",
                field="key_id",
            )
        async with self._lock:
            record = await self.store.revoke_key(key_id, now_ms())
            if record is None:
                raise NotFound(f"no API key {key_id!r}", field="key_id")
            self._by_hash.pop(record.hash, None)
        log.info("API key %s revoked", record.id)
        return record

    async def list(self) -> list[ApiKey]:
        return await self.store.list_keys()
