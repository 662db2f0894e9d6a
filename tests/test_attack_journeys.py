"""Journeys attacked by a hostile user and a careless newcomer: every break found, pinned."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hookline.events import now_ms
from hookline.journeys import MAX_RENDERED_BYTES
from hookline.values import MAX_DEPTH
from tests.helpers import Hookline, Receiver, spin_event
from tests.test_journeys_e2e import create, hook, journey


async def post_journey(h: Hookline, data: dict[str, Any]) -> Any:
    return await h.client.post("/api/v1/journeys", json=data)


def assert_422(resp: Any, field: str) -> None:
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["code"] == "invalid_input", body
    assert body["field"] == field, body


async def test_ten_thousand_blocks_are_refused_naming_blocks(hookline: Hookline) -> None:
    blocks = {f"b{i}": {"type": "delay", "duration": 1, "next": f"b{i + 1}"} for i in range(10_000)}
    blocks["b9999"] = {"type": "exit"}
    resp = await post_journey(hookline, journey(blocks, start="b0"))
    assert_422(resp, "blocks")


async def test_a_chain_as_long_as_allowed_is_saved_and_walked(
    hookline: Hookline, receiver: Receiver
) -> None:
    blocks: dict[str, Any] = {
        f"c{i}": {"type": "condition", "then": f"c{i + 1}", "else": f"c{i + 1}"} for i in range(199)
    }
    blocks["c199"] = hook(receiver, "/end")
    await create(hookline, journey(blocks, start="c0"))
    resp = await hookline.post("/api/v1/events", spin_event())
    assert resp.status_code == 202, resp.text
    await receiver.wait_for(1, "/end")


@pytest.mark.parametrize(
    ("blocks", "field"),
    [
        (
            {
                "a": {"type": "condition", "then": "b", "else": "b"},
                "b": {"type": "condition", "then": "a", "else": "a"},
            },
            "blocks.a",
        ),
        (
            {
                "a": {"type": "split", "branches": [{"percent": 100, "next": "b"}]},
                "b": {"type": "update_state", "set": {"x": 1}, "next": "a"},
            },
            "blocks.a",
        ),
    ],
)
async def test_a_cycle_through_only_conditions_or_splits_is_refused(
    hookline: Hookline, blocks: dict[str, Any], field: str
) -> None:
    assert_422(await post_journey(hookline, journey(blocks, start="a")), field)


@pytest.mark.parametrize(
    "duration", [0, "0s", 0.0001, -1, 1e308, "999999d", "1e3s", "", None, True, [], "5 m"]
)
async def test_a_delay_that_cannot_wait_is_refused(hookline: Hookline, duration: Any) -> None:
    blocks = {"a": {"type": "delay", "duration": duration, "next": "a"}}
    assert_422(await post_journey(hookline, journey(blocks, start="a")), "blocks.a.duration")


@pytest.mark.parametrize("duration", [0, -5, 1e308, "999999d", "x"])
async def test_max_duration_and_goal_within_that_cannot_be_are_refused(
    hookline: Hookline, duration: Any
) -> None:
    blocks = {"a": {"type": "exit"}}
    resp = await post_journey(hookline, journey(blocks, start="a", max_duration=duration))
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == "max_duration"
    goal = {"event_type": "deposit", "within": duration}
    resp = await post_journey(hookline, journey(blocks, start="a", goal=goal))
    assert_422(resp, "goal.within")


@pytest.mark.parametrize(
    "branches",
    [
        [{"percent": 100.0000001, "next": "x"}],
        [{"percent": 0, "next": "x"}],
        [{"percent": -1, "next": "x"}, {"percent": 101, "next": "x"}],
        [{"percent": "50", "next": "x"}, {"percent": 50, "next": "x"}],
        [{"percent": True, "next": "x"}, {"percent": 99, "next": "x"}],
    ],
)
async def test_split_percents_out_of_range_are_refused(
    hookline: Hookline, branches: list[Any]
) -> None:
    blocks = {"a": {"type": "split", "branches": branches}, "x": {"type": "exit"}}
    resp = await post_journey(hookline, journey(blocks, start="a"))
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"].startswith("blocks.a.branches"), resp.json()


async def test_float_and_zero_percent_branches_are_kept_and_zero_is_never_taken(
    hookline: Hookline, receiver: Receiver
) -> None:
    branches = [
        {"percent": 0, "next": "never"},
        {"percent": 33.3, "next": "x"},
        {"percent": 33.3, "next": "x"},
        {"percent": 33.4, "next": "x"},
    ]
    blocks = {
        "a": {"type": "split", "branches": branches},
        "never": hook(receiver, "/never"),
        "x": hook(receiver, "/x"),
    }
    await create(
        hookline,
        journey(
            blocks,
            start="a",
            entry={"trigger": {"event_type": "minigame_spin_issued"}, "mode": "every_time"},
        ),
    )
    resp = await hookline.post("/api/v1/events", [spin_event(f"u-{i}") for i in range(60)])
    assert resp.status_code == 202, resp.text
    await receiver.wait_for(60, "/x")
    assert receiver.on("/never") == []


def _write(db: Path, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Change rows behind hookline's back, as a hand edit or another version would."""
    conn = sqlite3.connect(db)
    try:
        for sql, params in statements:
            assert conn.execute(sql, params).rowcount >= 1, sql
        conn.commit()
    finally:
        conn.close()


async def test_unreadable_journeys_and_instances_stop_neither_start_nor_timers(
    make_hookline: Any, receiver: Receiver, tmp_path: Path
) -> None:
    first = await make_hookline()
    later = {
        "hello": {"type": "delay", "duration": 0.3, "next": "later"},
        "later": hook(receiver, "/later", '{"u": "{{event.user_ext_id}}"}'),
    }
    good = await create(first, journey(later))
    broken = await create(first, journey({"hello": {"type": "delay", "duration": "1h"}}, name="b"))
    users = [spin_event(f"u-{i}") for i in range(4)]
    assert (await first.post("/api/v1/events", users)).status_code == 202
    await first.stop()
    db = tmp_path / "data" / "hookline.db"
    instance = "UPDATE journey_instances SET {} = ? WHERE user_ext_id = ? AND journey_id = ?"
    _write(
        db,
        [
            ("UPDATE journeys SET definition = ? WHERE id = ?", (b'{"entry', broken["id"])),
            (instance.format("entry_event"), (b"{", "u-0", good["id"])),
            (instance.format("status"), (b"asleep", "u-1", good["id"])),
            (instance.format("ext_brand_id"), (b"\xff", "u-2", good["id"])),
        ],
    )

    h = await make_hookline()  # used to exit at start-up on the journey that cannot be read
    # The readable instance still walks on; the unreadable ones are met, skipped and named.
    (received,) = await receiver.wait_for(1, "/later")
    assert received.json() == {"u": "u-3"}
    health = (await h.client.get("/healthz")).json()
    assert health["status"] == "ok"
    for _ in range(200):  # the timer meets the unreadable rows in its next rounds
        health = (await h.client.get("/healthz")).json()
        if health["problem_count"] == 3:
            break
        await asyncio.sleep(0.025)
    kinds = sorted((p["kind"], p["id"]) for p in health["problems"])
    assert kinds[0] == ("journey", broken["id"])
    assert [k for k, _ in kinds[1:]] == ["journey_instance"] * 2
    assert "cannot be read" in health["problems"][0]["detail"]
    # Their timers are cleared, so the timer does not claim them again and again.
    store = h.runtime.engine.journey_store
    assert store is not None
    assert await store.due(now_ms(), 10) == []
    # Events of those users still get a 202, and the journey that cannot be read is listed,
    # says why, refuses a PATCH and can be replaced.
    again = await h.post("/api/v1/events", [spin_event("u-0"), spin_event("u-2")])
    assert again.status_code == 202, again.text
    listed = {j["id"]: j for j in (await h.client.get("/api/v1/journeys")).json()["data"]}
    assert "cannot be read" in listed[broken["id"]]["problem"]
    assert "problem" not in listed[good["id"]]
    patched = await h.client.patch(f"/api/v1/journeys/{broken['id']}", json={"status": "paused"})
    assert patched.status_code == 409, patched.text
    fixed = await h.client.put(
        f"/api/v1/journeys/{broken['id']}",
        json=journey({"hello": {"type": "exit"}}, name="b", status="paused"),
    )
    assert fixed.status_code == 200, fixed.text
    assert "problem" not in fixed.json()
    listed_instances = await h.client.get(f"/api/v1/journeys/{good['id']}/instances")
    assert listed_instances.status_code == 200, listed_instances.text


async def test_a_value_fed_back_through_a_cycle_cannot_grow_the_state_without_end(
    hookline: Hookline,
) -> None:
    blocks = {
        "grow": {"type": "update_state", "set": {"a": {"a": "{{state.a}}"}}, "next": "double"},
        "double": {
            "type": "update_state",
            "set": {"s": "{{state.s|x}}{{state.s|x}}"},
            "next": "wait",
        },
        "wait": {"type": "delay", "duration": "5ms", "next": "grow"},
    }
    j = await create(hookline, journey(blocks, start="grow"))
    resp = await hookline.post("/api/v1/events", spin_event())
    assert resp.status_code == 202, resp.text
    for _ in range(400):  # 5 ms a pass: the limits are met long before the 400th poll
        stats = (await hookline.client.get(f"/api/v1/journeys/{j['id']}/stats")).json()
        if stats["blocks"]["grow"]["entered"] > 80:
            break
        await asyncio.sleep(0.025)
    else:
        raise AssertionError(stats)
    state = await hookline.client.get("/api/v1/users/u-1/state", params={"ext_brand_id": "brand-1"})
    assert state.status_code == 200
    assert len(state.content) < 3 * MAX_RENDERED_BYTES
    depth, value = 0, state.json()
    while isinstance(value, dict):
        depth, value = depth + 1, value.get("a")
    assert depth <= MAX_DEPTH
    # Other users are served meanwhile.
    assert (await hookline.post("/api/v1/events", spin_event("u-2"))).status_code == 202
