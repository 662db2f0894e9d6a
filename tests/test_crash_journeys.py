"""Crash safety of journey delays: SIGKILL ``hookline serve`` while users wait and timers fire.

200 users enter a journey (a webhook, a short delay, a webhook). The server is killed with
SIGKILL as soon as the first user's step after the delay reaches the receiver: by then some
users' timers have been committed (their second webhook is in the outbox or sent) and the
others are still waiting. After a restart on the same data directory every user gets the
step after the delay, and gets it once: a retry of the same delivery (same ``webhook-id``)
is allowed, a second delivery for the same step is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from tests.helpers import serve_aiohttp
from tests.test_crash import Server, _list_deliveries, _wait_settled
from tests.test_crash import server as server  # the fixture, used by name

USERS = 200
BATCH = 10
DELAY_S = 1.5  # long enough that the kill lands while later entrants still wait
BODY = '{"user": "{{state.user_ext_id}}", "step": "{{journey.block}}"}'
SETTLE_TIMEOUT = 90.0


@dataclass
class StepReceiver:
    """Records, per step and user, the ``webhook-id`` of every request that arrives."""

    base_url: str = ""
    seen: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{step}", self._handle)
        self._runner, self.base_url = await serve_aiohttp(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        data = orjson.loads(await request.read())
        async with self.changed:
            users = self.seen.setdefault(data["step"], {})
            users.setdefault(data["user"], []).append(request.headers.get("webhook-id", ""))
            self.changed.notify_all()
        return web.Response(status=200, text="ok")

    def users(self, step: str) -> dict[str, list[str]]:
        return self.seen.get(step, {})

    async def wait_until(self, enough: Any, timeout: float) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(enough), timeout)


@pytest.fixture
async def step_receiver() -> AsyncIterator[StepReceiver]:
    r = StepReceiver()
    await r.start()
    yield r
    await r.stop()


def _journey(receiver: StepReceiver) -> dict[str, Any]:
    def hook(step: str, **more: Any) -> dict[str, Any]:
        activity = {"url": f"{receiver.base_url}/{step}", "body": BODY}
        return {"type": "webhook", "activity": activity, **more}

    return {
        "name": "crash-delay",
        "status": "active",
        "entry": {"trigger": {"event_type": "crash_enter"}},
        "start": "first",
        "blocks": {
            "first": hook("first", next="wait"),
            "wait": {"type": "delay", "duration": DELAY_S, "next": "second"},
            "second": hook("second"),
        },
    }


async def _until_everyone_finished(api: httpx.AsyncClient, journey_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        with contextlib.suppress(httpx.TransportError):
            resp = await api.get(f"/api/v1/journeys/{journey_id}/stats")
            stats: dict[str, Any] = resp.json()
            if resp.status_code == 200 and stats["active"] == 0:
                return stats
        assert time.monotonic() < deadline, "users still inside the journey"
        await asyncio.sleep(0.1)  # polling the API of another process: no event to await


@pytest.mark.timeout(240)
async def test_sigkill_during_delays_gives_every_waiting_user_the_next_step_exactly_once(
    server: Server, step_receiver: StepReceiver
) -> None:
    server.start()
    await server.wait_healthy()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as api:
        resp = await api.post("/api/v1/journeys", json=_journey(step_receiver))
        assert resp.status_code == 201, resp.text
        journey_id = resp.json()["id"]

        # Entries spread over many commits, so the timers come due over several rounds.
        for start in range(0, USERS, BATCH):
            events = [
                {"eid": f"enter-{u}", "event_type": "crash_enter", "user_ext_id": f"u-{u}"}
                for u in range(start, start + BATCH)
            ]
            resp = await api.post("/api/v1/events", json=events)
            assert resp.status_code == 202, resp.text

        await step_receiver.wait_until(lambda: step_receiver.users("second"), 60)
        server.kill()
        await server.wait_exit()
        second_before_kill = set(step_receiver.users("second"))
        assert 0 < len(second_before_kill) < USERS, "the kill must land while users wait"

        server.start()
        await server.wait_healthy()
        stats = await _until_everyone_finished(api, journey_id)
        await _wait_settled(api, SETTLE_TIMEOUT)
        await step_receiver.wait_until(lambda: len(step_receiver.users("second")) == USERS, 30)

        assert stats["entered"] == USERS
        assert stats["treatment"]["finished"] == {"completed": USERS}
        everyone = {f"u-{u}" for u in range(USERS)}
        for step in ("first", "second"):
            got = step_receiver.users(step)
            assert set(got) == everyone, step
            # Sent again after the crash is fine, with the same webhook-id; a second distinct
            # delivery of one step is a duplicate the crash caused.
            twice = {user: ids for user, ids in got.items() if len(set(ids)) != 1}
            assert twice == {}, f"{step}: users with more than one delivery: {twice}"
        deliveries = await _list_deliveries(api, journey_id=journey_id)
        assert len(deliveries) == 2 * USERS
        assert {d["status"] for d in deliveries} == {"succeeded"}
