"""hookline under test: ``hookline serve`` in its own process, on a fresh data dir, set up.

Setup order: start once so hookline creates its schema, write one user's state through
the API as a shape probe, stop; seed the users' state rows straight into SQLite in the
probe's exact shape (``orjson`` bytes, as ``store/sql.py`` writes them); start again and
create the rules through ``POST /api/v1/rules``.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.procs import Child, free_port, run_async, wait_http
from bench.workload import (
    BODY_TEMPLATE,
    MATCHED_TYPE,
    dest_event_type,
    user_id,
    user_level,
)

PROBE_USER = "bench-shape-probe"


# The one setting every run needs: the receiver listens on loopback, which the SSRF guard
# refuses by default. Everything else is what ``hookline serve`` does with no settings.
NEEDED_ENV = {"HOOKLINE_ALLOWED_NETWORKS": "127.0.0.0/8"}


@dataclass(frozen=True)
class HooklineSetup:
    """One configuration of hookline for a measurement."""

    users: int = 10_000
    dests: int = 1  # 0: no rule matches the events; N: one rule per destination port
    extra_rules: int = 0  # rules on other event types, never matched
    # HOOKLINE_* settings that differ from the defaults; empty: the settings a user gets.
    overrides: tuple[tuple[str, str], ...] = ()

    def with_overrides(self, **settings: str) -> HooklineSetup:
        """This setup with more settings changed (``HOOKLINE_NAME=value``)."""
        merged = dict(self.overrides) | settings
        return replace(self, overrides=tuple(sorted(merged.items())))

    def settings_label(self) -> str:
        """``default settings``, or the settings that differ from them."""
        if not self.overrides:
            return "default settings"
        return ", ".join(f"{k}={v}" for k, v in self.overrides) + " (not the default)"

    def label(self) -> str:
        return (
            f"{self.settings_label()}; users={self.users:,} dests={self.dests:,} "
            f"extra_rules={self.extra_rules:,}"
        )


def hookline_argv(port: int, data_dir: Path) -> list[str]:
    exe = Path(sys.executable).with_name("hookline")
    return [str(exe), "serve", "--port", str(port), "--data-dir", str(data_dir)]


class HooklineServer:
    """A running, set-up hookline; use as a context manager so it is always stopped."""

    def __init__(
        self, setup: HooklineSetup, receiver_port: int, work_dir: Path, log_dir: Path
    ) -> None:
        self.setup = setup
        self.receiver_port = receiver_port
        self.log_dir = log_dir
        self.data_dir = Path(tempfile.mkdtemp(prefix="hookline-", dir=work_dir))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.child: Child | None = None
        self.setup_seconds = 0.0
        self.exit_codes: list[int | None] = []

    def __enter__(self) -> HooklineServer:
        started = time.monotonic()
        try:
            if self.setup.users:
                self._start()
                shape = self._probe_shape()
                self._stop()
                seed_users(self.data_dir / "hookline.db", self.setup.users, shape)
            self._start()
            run_async(self._create_rules())
            if self.setup.users:
                self._check_seeded()
        except BaseException:
            self.close()
            raise
        self.setup_seconds = time.monotonic() - started
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def tail(self) -> str:
        return self.child.tail(40) if self.child else ""

    def close(self) -> None:
        """Stop the server and remove its data dir."""
        self._stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _start(self) -> None:
        # No HOOKLINE_* variable of the calling shell leaks in: defaults mean defaults.
        env = {**NEEDED_ENV, **dict(self.setup.overrides)}
        self.child = Child(
            f"hookline-{self.port}",
            hookline_argv(self.port, self.data_dir),
            self.log_dir,
            env,
            drop_prefix="HOOKLINE_",
        )
        wait_http(f"{self.base}/api/v1/rules", self.child)

    def _stop(self) -> None:
        if self.child is not None:
            self.exit_codes.append(self.child.stop(grace=30))
            self.child = None

    def _probe_shape(self) -> dict[str, Any]:
        """Write one state through the API and read back the row exactly as stored."""

        async def patch() -> None:
            async with aiohttp.ClientSession() as session:
                url = f"{self.base}/api/v1/users/{PROBE_USER}/state"
                async with session.patch(url, json={"level": "gold"}) as response:
                    if response.status >= 300:
                        raise RuntimeError(
                            f"PATCH state: {response.status} {await response.text()}"
                        )

        run_async(patch())
        # The WAL is only visible once the writer has checkpointed or from a reader: read now.
        with sqlite3.connect(self.data_dir / "hookline.db") as db:
            row = db.execute(
                "SELECT state FROM users WHERE user_ext_id = ?", (PROBE_USER,)
            ).fetchone()
        if row is None:
            raise RuntimeError("the state written through the API is not in the users table")
        shape: dict[str, Any] = orjson.loads(row[0])
        return shape

    def _check_seeded(self) -> None:
        async def get() -> Any:
            async with aiohttp.ClientSession() as session:
                url = f"{self.base}/api/v1/users/{user_id(1)}/state"
                async with session.get(url) as response:
                    return await response.json()

        state = run_async(get())
        if state.get("level") != user_level(1):
            raise RuntimeError(f"seeded state not visible through the API: {state!r}")

    async def _create_rules(self) -> None:
        rules = [*self._matched_rules(), *self._extra_rules()]
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for rule in rules:
            queue.put_nowait(rule)

        async def worker(session: aiohttp.ClientSession) -> None:
            while not queue.empty():
                rule = queue.get_nowait()
                async with session.post(f"{self.base}/api/v1/rules", json=rule) as response:
                    if response.status != 201 and response.status != 200:
                        text = await response.text()
                        raise RuntimeError(
                            f"creating rule {rule['name']}: {response.status} {text}"
                        )

        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(worker(session) for _ in range(16)))

    def _matched_rules(self) -> list[dict[str, Any]]:
        dests = self.setup.dests
        if dests == 1:
            return [self._rule("bench-spin", MATCHED_TYPE, self.receiver_port, BODY_TEMPLATE)]
        return [
            self._rule(
                f"bench-spin-d{i}", dest_event_type(i), self.receiver_port + i, BODY_TEMPLATE
            )
            for i in range(dests)
        ]

    def _extra_rules(self) -> list[dict[str, Any]]:
        body = '{"other": "{{event.user_ext_id}}"}'
        return [
            self._rule(f"other-{i}", f"other_type_{i}", self.receiver_port, body)
            for i in range(self.setup.extra_rules)
        ]

    @staticmethod
    def _rule(name: str, event_type: str, port: int, body: str) -> dict[str, Any]:
        return {
            "name": name,
            "enabled": True,
            "trigger": {"event_type": event_type},
            "activity": {
                "type": "webhook",
                "url": f"http://127.0.0.1:{port}/hook",
                "method": "POST",
                "content_type": "application/json",
                "body": body,
            },
        }


def seed_users(db_path: Path, users: int, shape: dict[str, Any]) -> None:
    """Insert ``users`` state rows shaped like ``shape`` (the probe's stored state)."""
    now = int(time.time() * 1000)

    def rows() -> Any:
        for i in range(users):
            uid = user_id(i)
            state = {
                key: (uid if key == "user_ext_id" else user_level(i) if key == "level" else value)
                for key, value in shape.items()
            }
            yield uid, orjson.dumps(state), now

    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA synchronous=OFF")
        db.executemany(
            "INSERT OR REPLACE INTO users (user_ext_id, state, updated_at) VALUES (?, ?, ?)",
            rows(),
        )
        db.execute("DELETE FROM users WHERE user_ext_id = ?", (PROBE_USER,))
