"""Journeys attacked through their timers: what a step after a wait does, and what it costs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.events import now_ms
from hookline.journey_runner import (
    GROUP_EVENTS_PER_ROOT,
    MAX_CHAIN_DEPTH,
    MAX_CHAIN_EVENTS,
    MAX_STORED_CUTS,
    TIMER_IDLE,
    TIMER_RETRY_MS,
)
from hookline.journeys import Instance
from hookline.store import journey_sql
from tests.helpers import Hookline, Receiver, spin_event
from tests.test_attack_journeys import _write
from tests.test_journeys_e2e import create, hook, instances, journey, until_finished


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


async def test_an_entry_payload_with_its_own_event_id_still_walks_and_links_the_real_event(
    hookline: Hookline, receiver: Receiver
) -> None:
    """{{event.event_id}} is the payload's when it has one; the delivery's event is the real."""
    j = await create(
        hookline,
        journey(
            {
                "wait": {"type": "delay", "duration": 0.05, "next": "after"},
                "after": hook(receiver, "/after", '{"e": {{event.event_id}}}'),
            },
            start="wait",
            entry={"trigger": {"event_type": "minigame_spin_issued"}, "mode": "every_time"},
        ),
    )
    own_ids: list[Any] = [{"x": [1, 2]}, 12345, "evt_not_this_one"]
    sent = [spin_event(payload={"event_id": own}) for own in own_ids]
    resp = await hookline.post("/api/v1/events", sent)
    assert resp.status_code == 202, resp.text
    entered = [e["id"] for e in resp.json()["events"]]
    got = await receiver.wait_for(3, "/after")
    assert sorted(map(str, (r.json()["e"] for r in got))) == sorted(map(str, own_ids))
    linked = []
    for r in got:
        delivery = await hookline.client.get(f"/api/v1/deliveries/{r.headers['webhook-id']}")
        assert delivery.status_code == 200, delivery.text
        linked.append(delivery.json()["event_id"])
    assert sorted(linked) == sorted(entered)
    assert all(i["status"] == "finished" for i in await instances(hookline, j["id"]))


async def test_a_journey_that_enters_itself_again_through_a_delay_is_cut_at_depth_8(
    hookline: Hookline,
) -> None:
    """Each walk waits, then emits the event that enters the journey again: without a depth
    kept across the timer this looped for ever (and doubled at each turn with two emits)."""
    j = await create(
        hookline,
        {
            "name": "again-and-again",
            "status": "active",
            "entry": {"trigger": {"event_type": "again"}, "mode": "every_time"},
            "start": "wait",
            "blocks": {
                "wait": {"type": "delay", "duration": 0.05, "next": "emit"},
                "emit": {"type": "emit_event", "event_type": "again"},
            },
        },
    )
    resp = await hookline.post("/api/v1/events", {"event_type": "again", "user_ext_id": "u-1"})
    assert resp.status_code == 202, resp.text
    for _ in range(400):
        stats = (await hookline.client.get(f"/api/v1/journeys/{j['id']}/stats")).json()
        if stats["chain_cuts"] and not stats["active"]:
            break
        await asyncio.sleep(0.025)  # polling the API: no event to await from outside
    else:
        raise AssertionError(stats)
    # Nobody waits any more, so nothing can enter again: the loop is over, not slowed.
    assert stats["entered"] == MAX_CHAIN_DEPTH + 1, stats
    assert stats["finished"] == {"completed": MAX_CHAIN_DEPTH + 1}
    cuts = (await hookline.client.get(f"/api/v1/journeys/{j['id']}/chain-cuts")).json()["data"]
    assert sorted(c["event_type"] for c in cuts) == [
        "again",
        "campaign_finished",
        "campaign_started",
    ]
    assert {c["depth"] for c in cuts} == {MAX_CHAIN_DEPTH}
    deepest = await hookline.client.get(f"/api/v1/events/{cuts[0]['event_id']}")
    assert deepest.json()["event_type"] == "again"  # the event that entered the last walk


async def _entered_then_stopped(
    make_hookline: Any, receiver: Receiver, events: list[dict[str, Any]], body: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """``events`` enter a journey that waits an hour, then posts to /after (with ``body``);
    the server is stopped, for a test to edit its database before the next start. The
    journey, and the ids of the events."""
    first = await make_hookline()
    blocks = {
        "wait": {"type": "delay", "duration": "1h", "next": "after"},
        "after": hook(receiver, "/after", body),
    }
    j = await create(first, journey(blocks, start="wait"))
    resp = await first.post("/api/v1/events", events)
    assert resp.status_code == 202, resp.text
    await first.stop()
    return j, [e["id"] for e in resp.json()["events"]]


async def test_a_chain_depth_edited_by_hand_makes_its_row_unreadable_not_a_failing_step(
    make_hookline: Any, receiver: Receiver, tmp_path: Path
) -> None:
    j, _ = await _entered_then_stopped(
        make_hookline,
        receiver,
        [spin_event("u-0"), spin_event("u-1")],
        '{"u": "{{event.user_ext_id}}"}',
    )
    _write(
        tmp_path / "data" / "hookline.db",
        [
            ("UPDATE journey_instances SET chain_depth = 'deep' WHERE user_ext_id = 'u-0'", ()),
            ("UPDATE journey_instances SET due_at = 1 WHERE journey_id = ?", (j["id"],)),
        ],
    )
    h = await make_hookline()
    (received,) = await receiver.wait_for(1, "/after")
    assert received.json() == {"u": "u-1"}
    for _ in range(400):  # the timer meets the unreadable row in its next round
        health = (await h.client.get("/healthz")).json()
        if health["problem_count"]:
            break
        await asyncio.sleep(0.025)  # polling the API: no event to await from outside
    (problem,) = health["problems"]
    assert problem["kind"] == "journey_instance" and "chain_depth" in problem["detail"]
    store = h.runtime.engine.journey_store
    assert store is not None
    assert await store.due(now_ms(), 10) == []  # its timer is cleared, not claimed for ever


async def test_blocks_that_each_emit_the_trigger_again_stop_at_a_thousand_events(
    hookline: Hookline,
) -> None:
    """Depth alone bounds no fan-out: four emit blocks were 4**8 entries in one commit."""
    emits = 4
    blocks: dict[str, Any] = {
        f"e{i}": {"type": "emit_event", "event_type": "fan", "next": f"e{i + 1}"}
        for i in range(emits)
    }
    del blocks[f"e{emits - 1}"]["next"]
    j = await create(
        hookline,
        {
            "name": "fan-out",
            "status": "active",
            "entry": {"trigger": {"event_type": "fan"}, "mode": "every_time"},
            "start": "e0",
            "blocks": blocks,
        },
    )
    resp = await hookline.post("/api/v1/events", {"event_type": "fan", "user_ext_id": "u-1"})
    assert resp.status_code == 202, resp.text
    stats = (await hookline.client.get(f"/api/v1/journeys/{j['id']}/stats")).json()
    # Each entry emits campaign_started too: about a fifth of the events are entries.
    assert MAX_CHAIN_EVENTS // (emits + 2) <= stats["entered"] <= MAX_CHAIN_EVENTS, stats
    cuts = await hookline.client.get(f"/api/v1/journeys/{j['id']}/chain-cuts?limit=1000")
    depths = {c["depth"] for c in cuts.json()["data"]}
    assert min(depths) < MAX_CHAIN_DEPTH  # cut for its breadth too, not only its depth
    # Another event starts a chain of its own.
    again = await hookline.post("/api/v1/events", {"event_type": "fan", "user_ext_id": "u-2"})
    assert again.status_code == 202, again.text
    more = (await hookline.client.get(f"/api/v1/journeys/{j['id']}/stats")).json()
    assert more["entered"] == 2 * stats["entered"]


def _fan_out(name: str, trigger: str, emits: int) -> dict[str, Any]:
    """A journey entered every time by ``trigger`` whose ``emits`` blocks each emit it."""
    blocks: dict[str, Any] = {
        f"e{i}": {"type": "emit_event", "event_type": trigger, "next": f"e{i + 1}"}
        for i in range(emits)
    }
    del blocks[f"e{emits - 1}"]["next"]
    return {
        "name": name,
        "status": "active",
        "entry": {"trigger": {"event_type": trigger}, "mode": "every_time"},
        "start": "e0",
        "blocks": blocks,
    }


async def test_a_batch_into_a_fan_out_is_bounded_for_the_whole_commit(hookline: Hookline) -> None:
    """The bound per event let a batch of n events cause n thousand in one commit (a batch
    of 1,000: a million events, minutes of the writer). Every event still starts its own
    chain, so the last of the batch enters as the first did."""
    j = await create(hookline, _fan_out("fan-batch", "fan", 4))
    users = 40
    batch = [{"event_type": "fan", "user_ext_id": f"u-{i}"} for i in range(users)]
    resp = await hookline.post("/api/v1/events", batch)
    assert resp.status_code == 202, resp.text
    stats = (await hookline.client.get(f"/api/v1/journeys/{j['id']}/stats")).json()
    # Each entry was an event sent or emitted: at most the commit's budget plus the batch.
    most = MAX_CHAIN_EVENTS + users * GROUP_EVENTS_PER_ROOT + users
    assert users * 2 <= stats["entered"] <= most, stats  # was about 40 * 200
    assert stats["chain_cuts"] > 0
    for i in (0, users - 1):  # the first and the last user of the batch both got in
        assert await instances(hookline, j["id"], user_ext_id=f"u-{i}"), i


async def test_a_full_batch_is_cut_as_each_of_its_events_alone_would_be(
    hookline: Hookline,
) -> None:
    """The commit's budget cuts no ordinary journeys: 1,000 users each enter two journeys
    (one loops on its own trigger until depth 8) in one commit, as if each came alone."""
    greet = await create(
        hookline,
        {
            "name": "greet",
            "status": "active",
            "entry": {"trigger": {"event_type": "signup"}},
            "start": "say",
            "blocks": {"say": {"type": "emit_event", "event_type": "greeted"}},
        },
    )
    follow = await create(hookline, _fan_out("follow", "greeted", 1))  # a loop, 8 deep
    batch = [{"event_type": "signup", "user_ext_id": f"u-{i}"} for i in range(1000)]
    resp = await hookline.post("/api/v1/events", batch)
    assert resp.status_code == 202, resp.text
    greet_stats = (await hookline.client.get(f"/api/v1/journeys/{greet['id']}/stats")).json()
    assert greet_stats["entered"] == 1000 and greet_stats["chain_cuts"] == 0, greet_stats
    # follow re-emits its own trigger: each user's chain is cut by its depth only, as it is
    # for one event sent alone.
    alone = await hookline.post("/api/v1/events", {"event_type": "signup", "user_ext_id": "x"})
    assert alone.status_code == 202, alone.text
    follow_stats = (await hookline.client.get(f"/api/v1/journeys/{follow['id']}/stats")).json()
    assert follow_stats["entered"] % 1001 == 0, follow_stats
    cuts = await hookline.client.get(f"/api/v1/journeys/{follow['id']}/chain-cuts?limit=1000")
    assert {c["depth"] for c in cuts.json()["data"]} == {MAX_CHAIN_DEPTH}


async def test_a_stopped_journey_lets_its_users_go_a_page_per_commit(
    hookline: Hookline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop read every user inside into one commit: a million waiting users, gigabytes."""
    j = await create(hookline, journey({"wait": {"type": "delay", "duration": "1h"}}, start="wait"))
    users = [spin_event(f"u-{i:02}") for i in range(25)]
    # One user in two brands: both leave, though a page ends at that user_ext_id.
    users.append(spin_event("u-09", ext_brand_id="brand-2"))
    assert (await hookline.post("/api/v1/events", users)).status_code == 202
    engine = hookline.runtime.engine
    engine.stop_users = 10
    loaded: list[int] = []
    commit = engine._commit

    async def counting(group: list[Any]) -> Any:
        results, batch = await commit(group)
        if any(w.stop_journey for w in group):
            assert batch.journeys is not None
            loaded.append(len(batch.journeys.loaded))
        return results, batch

    monkeypatch.setattr(engine, "_commit", counting)
    resp = await hookline.client.patch(f"/api/v1/journeys/{j['id']}", json={"status": "stopped"})
    assert resp.status_code == 200, resp.text
    assert loaded == [11, 10, 5], loaded
    assert await instances(hookline, j["id"], status="active") == []
    stats = (await hookline.client.get(f"/api/v1/journeys/{j['id']}/stats")).json()
    assert stats["finished"] == {"stopped": 26}


async def test_users_a_stop_did_not_reach_before_a_crash_leave_when_next_met(
    make_hookline: Any, receiver: Receiver, tmp_path: Path
) -> None:
    j, _ = await _entered_then_stopped(
        make_hookline, receiver, [spin_event("u-0"), spin_event("u-1")]
    )
    # As the store holds it when the server dies after the status is saved, before (all)
    # the users inside were let go; their delays are over.
    _write(
        tmp_path / "data" / "hookline.db",
        [
            ("UPDATE journeys SET status = 'stopped' WHERE id = ?", (j["id"],)),
            ("UPDATE journey_instances SET due_at = 1 WHERE journey_id = ?", (j["id"],)),
        ],
    )
    h = await make_hookline()
    resp = await h.post("/api/v1/events", spin_event("u-0"))  # met by an event
    assert resp.status_code == 202, resp.text
    done = await until_finished(h, j["id"], 2)  # u-1: met by its timer
    assert {i["finish_reason"] for i in done} == {"stopped"}
    assert receiver.on("/after") == []  # nobody walked on inside a stopped journey


async def test_a_store_that_cannot_commit_timers_is_tried_once_a_round_not_in_a_hot_loop(
    hookline: Hookline, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create(hookline, journey({"wait": {"type": "delay", "duration": 0.05}}, start="wait"))
    assert (await hookline.post("/api/v1/events", spin_event())).status_code == 202
    tried: list[float] = []
    third = asyncio.Event()

    async def failing(*_: Any) -> None:
        tried.append(time.monotonic())
        if len(tried) == 3:
            third.set()
        raise RuntimeError("the disk is full")

    store = hookline.runtime.engine.journey_store
    assert store is not None
    monkeypatch.setattr(journey_sql, "save_instances", failing)
    monkeypatch.setattr(store, "put_off", failing)
    await asyncio.wait_for(third.wait(), 10)
    # Each round: the step, then putting its timer off; then the next round waits.
    gap = tried[2] - tried[1]
    assert gap >= TIMER_IDLE / 2, tried


async def test_an_instance_stored_before_entry_event_id_links_its_deliveries_as_before(
    make_hookline: Any, receiver: Receiver, tmp_path: Path
) -> None:
    _, (entered,) = await _entered_then_stopped(make_hookline, receiver, [spin_event()])
    _write(
        tmp_path / "data" / "hookline.db",
        [
            (
                "UPDATE journey_instances SET due_at = 1,"
                " entry_event_id = NULL, chain_depth = NULL",
                (),
            )
        ],
    )
    h = await make_hookline()
    (received,) = await receiver.wait_for(1, "/after")
    delivery = await h.client.get(f"/api/v1/deliveries/{received.headers['webhook-id']}")
    assert delivery.json()["event_id"] == entered


async def test_cuts_past_a_thousand_in_a_commit_are_counted_not_stored(
    hookline: Hookline,
) -> None:
    """Thirty blocks that each emit the trigger: once the chain is spent every entry's walk
    is cut thirty times over; one event stored tens of thousands of cut rows."""
    j = await create(hookline, _fan_out("fan-wide", "wide", 30))
    resp = await hookline.post("/api/v1/events", {"event_type": "wide", "user_ext_id": "u-1"})
    assert resp.status_code == 202, resp.text
    stats = (await hookline.client.get(f"/api/v1/journeys/{j['id']}/stats")).json()
    # And the first cut of each bound in the chain (depth, then breadth), whenever it came.
    assert MAX_STORED_CUTS <= stats["chain_cuts"] <= MAX_STORED_CUTS + 2, stats
    cuts = await hookline.client.get(f"/api/v1/journeys/{j['id']}/chain-cuts?limit=1000")
    assert min(c["depth"] for c in cuts.json()["data"]) < MAX_CHAIN_DEPTH
    metrics = (await hookline.client.get("/metrics")).text
    (line,) = [x for x in metrics.splitlines() if x.startswith("hookline_journey_chain_cuts_total")]
    assert float(line.split()[-1]) > 10 * MAX_STORED_CUTS, line
