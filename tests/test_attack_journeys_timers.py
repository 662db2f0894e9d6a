"""Journeys attacked through their timers: what a step after a wait does, and what it costs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.events import now_ms
from hookline.journey_runner import TIMER_RETRY_MS
from hookline.journeys import Instance
from hookline.store import journey_sql
from tests.helpers import Hookline, Receiver, spin_event
from tests.test_journeys_e2e import create, hook, instances, journey


async def until_due_later(h: Hookline, journey_id: str, instance_id: str, after: int) -> None:
    """Wait until the instance's timer is set beyond ``after`` (ms)."""
    for _ in range(400):
        found = {i["id"]: i for i in await instances(h, journey_id)}
        due = found[instance_id]["due_at"]
        if due is not None and due > after:
            return
        await asyncio.sleep(0.025)  # polling the API: no event to await from outside
    raise AssertionError(found[instance_id])


async def test_a_timer_whose_step_cannot_be_stored_holds_back_no_other_and_is_put_off(
    hookline: Hookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = await create(
        hookline,
        journey(
            {
                "wait": {"type": "delay", "duration": 0.3, "next": "after"},
                "after": hook(receiver, "/after"),
            },
            start="wait",
        ),
    )
    resp = await hookline.post("/api/v1/events", [spin_event(f"u-{i}") for i in range(3)])
    assert resp.status_code == 202, resp.text
    waiting = await instances(hookline, j["id"], status="active")
    assert len(waiting) == 3
    poisoned = waiting[1]["id"]
    tries: list[int] = []
    save = journey_sql.save_instances

    async def failing_for_one(
        conn: AsyncConnection, changed: Iterable[Instance], before: Mapping[str, Instance]
    ) -> None:
        changed = list(changed)
        if any(i.id == poisoned for i in changed):
            tries.append(len(changed))
            raise RuntimeError("this instance's step cannot be stored")
        await save(conn, changed, before)

    monkeypatch.setattr(journey_sql, "save_instances", failing_for_one)
    started = now_ms()
    # The other two walk on, whether their timers were claimed with the failing one or not.
    await receiver.wait_for(2, "/after")
    # The failing one is put off, not claimed again and again in a loop that holds the writer.
    await until_due_later(hookline, j["id"], poisoned, started + TIMER_RETRY_MS // 2)
    assert len(tries) <= 4, tries
    still = {i["id"]: i for i in await instances(hookline, j["id"])}
    assert still[poisoned]["status"] == "active" and still[poisoned]["block"] == "wait"
    assert len(receiver.on("/after")) == 2
