"""The timer batch path: many due instances stepped in one commit, each once, none lost."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hookline import journey_runner
from hookline.events import now_ms
from hookline.journeys import FinishReason, Instance, InstanceStatus, on_timer
from hookline.state import UserKey
from hookline.store import journey_sql
from hookline.store.sqlite import open_sqlite
from tests.helpers import Hookline, Receiver, spin_event
from tests.test_journeys_e2e import create, hook, instances, journey


async def _due_now(h: Hookline, count: int) -> list[tuple[str, UserKey]]:
    """Claim ``count`` due instances by hand (the timer is stopped), once they are due."""
    store = h.runtime.engine.journey_store
    assert store is not None
    for _ in range(400):
        due = await store.due(now_ms(), count)
        if len(due) >= count:
            return due
        await asyncio.sleep(0.01)  # waiting for the clock to pass a due time
    raise AssertionError(f"only {len(due)} of {count} instances fell due")


async def test_a_batch_in_which_one_step_fails_steps_the_others_and_puts_that_one_off(
    hookline: Hookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_for_u2(journey: Any, inst: Instance, *args: Any) -> Any:
        if inst.user_ext_id == "u-2":
            raise RuntimeError("a bug in one step")
        return on_timer(journey, inst, *args)

    monkeypatch.setattr(journey_runner, "on_timer", failing_for_u2)
    timer = hookline.runtime.engine.journey_timer
    assert timer is not None
    await timer.stop()
    made = await create(
        hookline,
        journey(
            {
                "hello": {"type": "delay", "duration": 0.2, "next": "later"},
                "later": hook(receiver, "/later", '{"u": "{{event.user_ext_id}}"}'),
            }
        ),
    )
    resp = await hookline.post("/api/v1/events", [spin_event(f"u-{i}") for i in range(5)])
    assert resp.status_code == 202, resp.text
    due = await _due_now(hookline, 5)

    before = now_ms()
    await hookline.runtime.engine.submit_timers(due)  # commits, though one step failed
    arrived = await receiver.wait_for(4, "/later")
    assert sorted(r.json()["u"] for r in arrived) == ["u-0", "u-1", "u-3", "u-4"]
    (waiting,) = await instances(hookline, made["id"], status="active")
    assert waiting["user_ext_id"] == "u-2" and waiting["block"] == "hello"
    assert waiting["due_at"] >= before + journey_runner.TIMER_RETRY_MS
    assert len(await instances(hookline, made["id"], status="finished")) == 4


@pytest.mark.parametrize("together", [False, True], ids=["event_first", "same_commit"])
async def test_an_instance_moved_by_an_event_while_its_timer_is_claimed_moves_once(
    hookline: Hookline, receiver: Receiver, together: bool
) -> None:
    timer = hookline.runtime.engine.journey_timer
    assert timer is not None
    await timer.stop()
    made = await create(
        hookline,
        journey(
            {
                "hello": {
                    "type": "wait_for_event",
                    "event_type": "deposit_made",
                    "timeout": 0.2,
                    "next": "paid",
                    "on_timeout": "late",
                },
                "paid": hook(receiver, "/paid"),
                "late": hook(receiver, "/late"),
            }
        ),
    )
    await hookline.post("/api/v1/events", spin_event("u-1"))
    claimed = await _due_now(hookline, 1)
    deposit = {**spin_event("u-1"), "event_type": "deposit_made"}
    engine = hookline.runtime.engine
    if together:
        # Queued before the writer looks: one group, one commit, the timer first.
        await asyncio.gather(
            engine.submit_timers(claimed), hookline.post("/api/v1/events", deposit)
        )
    else:
        await hookline.post("/api/v1/events", deposit)
        await engine.submit_timers(claimed)
    (inst,) = await instances(hookline, made["id"])
    assert inst["status"] == "finished"
    await hookline.idle()
    sent = receiver.on("/paid") + receiver.on("/late")
    assert len(sent) == 1
    if not together:
        assert len(receiver.on("/paid")) == 1  # the event came first; the timer found it moved


async def test_a_moved_instance_saved_in_place_reads_back_as_it_was_written(
    tmp_path: Path,
) -> None:
    store = open_sqlite(tmp_path / "h.db")
    await store.open()
    entered = Instance(
        id="jri_1",
        journey_id="jrn_1",
        version=2,
        user_ext_id="u-1",
        ext_brand_id=5,
        status=InstanceStatus.ACTIVE,
        block="wait",
        entered_at=1,
        updated_at=1,
        entry_event={"seq": 1},
        last_event={"seq": 1},
        due_at=10,
        block_since=1,
    )
    user = entered.user
    try:
        async with store.engine.begin() as conn:
            await journey_sql.save_instances(conn, [entered], {})
        async with store.engine.begin() as conn:
            (loaded,) = await journey_sql.load_active(conn, [user])
            assert loaded == entered
            by_event = replace(loaded, last_event={"seq": 2}, waiting_for="x", due_at=20)
            await journey_sql.save_instances(conn, [by_event], {loaded.id: loaded})
        async with store.engine.begin() as conn:
            (loaded,) = await journey_sql.load_active(conn, [user])
            assert loaded == by_event
            done = replace(
                loaded,
                status=InstanceStatus.FINISHED,
                block=None,
                block_since=3,
                due_at=None,
                waiting_for=None,
                converted_at=2,
                finish_reason=FinishReason.GOAL,
                finished_at=3,
                updated_at=3,
            )
            await journey_sql.save_instances(conn, [done], {loaded.id: loaded})
        async with store.engine.begin() as conn:
            assert await journey_sql.load_active(conn, [user]) == []
        (stored,) = await journey_sql.JourneyStore(store.engine).list_instances()
        assert stored == done
    finally:
        await store.close()


async def test_the_waiting_for_index_an_older_hookline_made_is_dropped_on_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.db"
    store = open_sqlite(path)
    await store.open()
    await store.close()
    # As an older hookline left it: nothing reads it, yet every wait and entry moved it.
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE INDEX ix_journey_instances_waiting"
            " ON journey_instances (user_ext_id, waiting_for)"
        )
    db.close()
    store = open_sqlite(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        # The user's instances are still found by index, not by reading the table.
        plan = " ".join(
            str(r[3])
            for r in db.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM journey_instances "
                "WHERE user_ext_id IN ('a', 'b') AND (status = 'active' OR goal_until >= 5)"
            )
        )
    db.close()
    assert "ix_journey_instances_waiting" not in names
    assert "ix_journey_instances_user" in names and "ix_journey_instances_due" in names
    assert "USING INDEX ix_journey_instances_user" in plan
