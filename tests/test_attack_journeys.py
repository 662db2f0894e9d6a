"""Journeys attacked by a hostile user and a careless newcomer: every break found, pinned."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hookline.cli import app
from hookline.events import now_ms
from hookline.journeys import MAX_RENDERED_BYTES
from hookline.values import MAX_DEPTH
from tests.helpers import Hookline, Receiver, spin_event
from tests.test_journeys_e2e import create, hook, instances, journey


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
        "hello": {"type": "delay", "duration": "1h", "next": "later"},
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
            # Due now: the hour is not waited for (the server was stopped while they waited).
            ("UPDATE journey_instances SET due_at = 1 WHERE journey_id = ?", (good["id"],)),
        ],
    )

    h = await make_hookline()  # used to exit at start-up on the journey that cannot be read
    # The readable instance still walks on; the unreadable ones are met, skipped and named.
    (received,) = await receiver.wait_for(1, "/later")
    assert received.json() == {"u": "u-3"}
    health = (await h.client.get("/healthz")).json()
    assert health["status"] == "ok"
    for _ in range(2000):  # the timer meets the unreadable rows in its next rounds
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


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"entry": None}, "entry"),
        ({"blocks": None}, "blocks"),
        ({"start": None}, "start"),
    ],
)
async def test_patch_with_null_for_a_required_part_is_422_naming_it(
    hookline: Hookline, patch: dict[str, Any], field: str
) -> None:
    j = await create(hookline, journey({"hello": {"type": "exit"}}))
    resp = await hookline.client.patch(f"/api/v1/journeys/{j['id']}", json=patch)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field
    again = await hookline.client.get(f"/api/v1/journeys/{j['id']}")
    assert again.json()["revision"] == j["revision"]


async def test_patch_with_null_name_or_status_keeps_them(hookline: Hookline) -> None:
    j = await create(hookline, journey({"hello": {"type": "exit"}}))
    resp = await hookline.client.patch(
        f"/api/v1/journeys/{j['id']}", json={"name": None, "status": None}
    )
    assert resp.status_code in (200, 422), resp.text
    if resp.status_code == 200:
        assert resp.json()["name"] == j["name"] and resp.json()["status"] == "active"


async def test_put_switching_an_active_journey_to_draft_is_409(hookline: Hookline) -> None:
    j = await create(hookline, journey({"hello": {"type": "exit"}}))
    resp = await hookline.client.put(
        f"/api/v1/journeys/{j['id']}", json=journey({"hello": {"type": "exit"}}, status="draft")
    )
    assert resp.status_code == 409, resp.text
    assert resp.json()["field"] == "status"


async def test_put_without_status_keeps_the_journeys_status(hookline: Hookline) -> None:
    j = await create(hookline, journey({"hello": {"type": "exit"}}))
    for status in ("active", "paused"):
        await hookline.client.patch(f"/api/v1/journeys/{j['id']}", json={"status": status})
        edited = journey({"hello": {"type": "exit"}}, description=f"while {status}")
        del edited["status"]
        resp = await hookline.client.put(f"/api/v1/journeys/{j['id']}", json=edited)
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == status
        assert resp.json()["description"] == f"while {status}"


@pytest.mark.parametrize("name", ["Spin-Welcome", " spin-welcome", "spin-welcome ", "   "])
async def test_names_that_differ_only_by_case_or_spaces_are_not_two_journeys(
    hookline: Hookline, name: str
) -> None:
    await create(hookline, journey({"hello": {"type": "exit"}}))
    resp = await post_journey(hookline, journey({"hello": {"type": "exit"}}, name=name))
    assert resp.status_code in (409, 422), resp.text
    assert resp.json()["field"] == "name"


async def test_unicode_names_are_kept_as_written(hookline: Hookline) -> None:
    j = await create(hookline, journey({"hello": {"type": "exit"}}, name="Willkommen — 欢迎 🎰"))
    assert j["name"] == "Willkommen — 欢迎 🎰"


async def test_fifty_parallel_entry_events_for_one_user_make_one_instance(
    hookline: Hookline,
) -> None:
    j = await create(hookline, journey({"hello": {"type": "delay", "duration": "1h"}}))
    answers = await asyncio.gather(
        *(hookline.post("/api/v1/events", spin_event()) for _ in range(50))
    )
    assert all(a.status_code == 202 for a in answers)
    assert len(await instances(hookline, j["id"])) == 1


async def test_events_racing_a_timer_never_run_a_step_twice(
    hookline: Hookline, receiver: Receiver
) -> None:
    blocks = {
        "hello": {
            "type": "wait_for_event",
            "event_type": "poke",
            "timeout": 0.2,
            "next": "after",
            "on_timeout": "after",
        },
        "after": hook(receiver, "/after", '{"i": "{{journey.instance_id}}"}'),
    }
    await create(hookline, journey(blocks))
    users = [f"u-{i}" for i in range(20)]
    await hookline.post("/api/v1/events", [spin_event(u) for u in users])
    await asyncio.sleep(0.15)  # close to the timeout: the pokes race the timer
    pokes = [{"event_type": "poke", "user_ext_id": u, "ext_brand_id": "brand-1"} for u in users]
    await asyncio.gather(*(hookline.post("/api/v1/events", [p]) for p in pokes * 3))
    await receiver.wait_for(20, "/after")
    await asyncio.sleep(0.4)  # past the timeout: a second step would have come by now
    ids = [r.json()["i"] for r in receiver.on("/after")]
    assert len(ids) == len(set(ids)) == 20


async def test_once_in_lifetime_holds_across_versions(hookline: Hookline) -> None:
    entry = {"trigger": {"event_type": "minigame_spin_issued"}, "mode": "once_in_lifetime"}
    j = await create(hookline, journey({"hello": {"type": "exit"}}, entry=entry))
    await hookline.post("/api/v1/events", spin_event())
    resp = await hookline.client.patch(
        f"/api/v1/journeys/{j['id']}",
        json={"blocks": {"hello": {"type": "delay", "duration": 5, "next": None}}},
    )
    assert resp.status_code == 200 and resp.json()["version"] == 2, resp.text
    await hookline.post("/api/v1/events", spin_event())
    assert len(await instances(hookline, j["id"])) == 1


async def test_control_group_is_sticky_across_versions(hookline: Hookline) -> None:
    every = {"trigger": {"event_type": "minigame_spin_issued"}, "mode": "every_time"}
    data = journey(
        {"hello": {"type": "exit"}},
        entry=every,
        control_group={"percent": 50},
        goal={"event_type": "deposit", "within": "1h"},
    )
    j = await create(hookline, data)
    users = [f"u-{i}" for i in range(30)]
    await hookline.post("/api/v1/events", [spin_event(u) for u in users])
    before = {i["user_ext_id"]: i["control_group"] for i in await instances(hookline, j["id"])}
    assert set(before.values()) == {True, False}
    resp = await hookline.client.patch(
        f"/api/v1/journeys/{j['id']}", json={"blocks": {"hello": {"type": "delay", "duration": 9}}}
    )
    assert resp.json()["version"] == 2
    await hookline.post("/api/v1/events", [spin_event(u) for u in users])
    for inst in await instances(hookline, j["id"]):
        assert inst["control_group"] == before[inst["user_ext_id"]]


async def test_rapid_status_flips_and_a_delete_while_timers_fire_lose_no_event(
    hookline: Hookline, receiver: Receiver
) -> None:
    blocks = {
        "hello": {"type": "delay", "duration": 0.05, "next": "later"},
        "later": hook(receiver, "/later"),
    }
    every = {"trigger": {"event_type": "minigame_spin_issued"}, "mode": "every_time"}
    j = await create(hookline, journey(blocks, entry=every))
    path = f"/api/v1/journeys/{j['id']}"

    async def flips() -> None:
        for status in ["paused", "active", "stopped", "active", "paused", "active"] * 3:
            resp = await hookline.client.patch(path, json={"status": status})
            assert resp.status_code == 200, resp.text

    async def events() -> list[int]:
        codes = []
        for i in range(20):
            resp = await hookline.post(
                "/api/v1/events", [spin_event(f"u-{i}-{k}") for k in range(5)]
            )
            codes.append(resp.status_code)
        return codes

    _, codes = await asyncio.gather(flips(), events())
    assert set(codes) == {202}
    assert (await hookline.client.delete(path)).status_code == 204
    resp = await hookline.post("/api/v1/events", spin_event())
    assert resp.status_code == 202
    await asyncio.sleep(0.2)
    assert hookline.runtime.failing() == []  # the journey timer among them
    health = (await hookline.client.get("/healthz")).json()
    assert health["status"] == "ok" and health["problems"] == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("journeys:\n\t- name: a\n", "line 2, column 1: found character '\\t'"),
        ("journeys:\n  - name: a\n   status: active\n", "line 3, column 4: "),
        ("journeys:\n  - name: a\n    start: x\n    name: b\n", "line 4, column 5: the key 'name'"),
        ("journeys:\n  name: a\n  name: a\n", "line 3, column 3: the key 'name' appears twice"),
    ],
)
def test_yaml_mistakes_in_journeys_apply_say_the_line_not_a_traceback(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "journeys.yaml"
    path.write_text(text)
    # No server is reached: the file is refused before anything is sent.
    result = CliRunner().invoke(
        app, ["journeys", "apply", "-f", str(path), "--url", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 2, result.output
    assert says in result.stderr, result.stderr
    assert f"cannot read {path}" in result.stderr
    assert "Traceback" not in result.stderr
