"""Journeys end to end: hookline over HTTP, webhooks to a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

from hookline.api import models
from hookline.events import now_ms
from hookline.journey_runner import MAX_CHAIN_DEPTH
from hookline.keys import Role
from tests.helpers import Hookline, Receiver, spin_event


def hook(receiver: Receiver, path: str, body: str | None = None, **more: Any) -> dict[str, Any]:
    activity: dict[str, Any] = {"type": "webhook", "url": receiver.url(path)}
    if body is not None:
        activity["body"] = body
    return {"type": "webhook", "activity": activity, **more}


def journey(blocks: dict[str, Any], start: str = "hello", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "spin-welcome",
        "status": "active",
        "entry": {"trigger": {"event_type": "minigame_spin_issued"}},
        "start": start,
        "blocks": blocks,
    }
    data.update(extra)
    return data


async def create(h: Hookline, data: dict[str, Any]) -> dict[str, Any]:
    resp = await h.client.post("/api/v1/journeys", json=data)
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def instances(h: Hookline, journey_id: str, **params: str) -> list[dict[str, Any]]:
    resp = await h.client.get(f"/api/v1/journeys/{journey_id}/instances", params=params)
    assert resp.status_code == 200, resp.text
    data: list[dict[str, Any]] = resp.json()["data"]
    return data


async def until_finished(h: Hookline, journey_id: str, count: int = 1) -> list[dict[str, Any]]:
    """Instances once ``count`` of them finished (the timer commits them)."""
    for _ in range(400):
        found = await instances(h, journey_id, status="finished")
        if len(found) >= count:
            return found
        await asyncio.sleep(0.025)  # polling the API: no event to await from outside
    raise AssertionError(await instances(h, journey_id))


SAW = '{"saw": "{{event.saw_template_id}}", "step": "{{journey.block}}", "v": {{journey.version}}}'


async def test_spin_gets_a_webhook_at_once_and_another_after_the_delay(
    hookline: Hookline, receiver: Receiver
) -> None:
    j = await create(
        hookline,
        journey(
            {
                "hello": hook(receiver, "/first", SAW, next="wait"),
                # Long enough for the checks below to see the user waiting on a loaded machine.
                "wait": {"type": "delay", "duration": 1, "next": "again"},
                "again": hook(receiver, "/second", SAW),
            }
        ),
    )
    assert j["version"] == 1 and j["id"].startswith("jrn_")
    resp = await hookline.post("/api/v1/events", spin_event())
    assert resp.status_code == 202, resp.text
    (first,) = await receiver.wait_for(1, "/first")
    assert first.json() == {"saw": "12", "step": "hello", "v": 1}
    waiting = await instances(hookline, j["id"], status="active")
    assert [(i["block"], i["user_ext_id"]) for i in waiting] == [("wait", "u-1")]
    assert waiting[0]["due_at"] is not None
    (second,) = await receiver.wait_for(1, "/second")
    # The entry event's tags still render two blocks later, after a timer.
    assert second.json() == {"saw": "12", "step": "again", "v": 1}
    (done,) = await until_finished(hookline, j["id"])
    assert done["finish_reason"] == "completed"
    listed = await hookline.client.get("/api/v1/deliveries", params={"journey_id": j["id"]})
    deliveries = listed.json()["data"]
    assert len(deliveries) == 2
    assert {d["instance_id"] for d in deliveries} == {done["id"]}
    assert all(d["rule_id"] is None for d in deliveries)
    stats = (await hookline.client.get(f"/api/v1/journeys/{j['id']}/stats")).json()
    assert stats["entered"] == 1
    assert stats["treatment"]["finished"] == {"completed": 1}
    assert stats["blocks"]["wait"] == {"entered": 1, "passed": 1, "waiting": 0}
    mine = (await hookline.client.get("/api/v1/users/u-1/journeys?ext_brand_id=brand-1")).json()[
        "data"
    ]
    assert [(m["journey_id"], m["version"]) for m in mine] == [(j["id"], 1)]


def wait_journey(
    receiver: Receiver,
    timeout: float,
    name: str = "spin-welcome",
    trigger: str = "minigame_spin_issued",
) -> dict[str, Any]:
    return journey(
        {
            "ask": {
                "type": "wait_for_event",
                "event_type": "deposit_made",
                "conditions": {"field": "last_event.amount", "op": "gte", "value": 10},
                "timeout": timeout,
                "next": "yes",
                "on_timeout": "no",
            },
            "yes": hook(receiver, "/yes", '{"amount": {{last_event.amount}}}'),
            "no": hook(receiver, "/no", '{"saw": "{{event.saw_template_id}}"}'),
        },
        start="ask",
        name=name,
        entry={"trigger": {"event_type": trigger}},
    )


async def test_wait_for_event_both_branches(hookline: Hookline, receiver: Receiver) -> None:
    # Two journeys, so that neither branch depends on how fast a loaded machine runs: the
    # event comes long before a minute is up, and nothing comes within a fifth of a second.
    await create(hookline, wait_journey(receiver, 60))
    await create(hookline, wait_journey(receiver, 0.2, "level-welcome", "level_upgraded"))
    await hookline.post("/api/v1/events", spin_event("u-yes"))
    await hookline.post("/api/v1/events", {**spin_event("u-no"), "event_type": "level_upgraded"})
    small = {
        "event_type": "deposit_made",
        "user_ext_id": "u-yes",
        "ext_brand_id": "brand-1",
        "payload": {"amount": 5},
    }
    big = {**small, "payload": {"amount": 50}}
    await hookline.post("/api/v1/events", small)  # the condition is false: still waiting
    await hookline.post("/api/v1/events", big)
    (yes,) = await receiver.wait_for(1, "/yes")
    assert yes.json() == {"amount": 50}
    (no,) = await receiver.wait_for(1, "/no")
    assert no.json() == {"saw": "12"}
    await hookline.idle()
    assert len(receiver.on("/yes")) == 1 and len(receiver.on("/no")) == 1


async def test_the_trigger_event_that_ends_a_walk_enters_no_second_one(
    hookline: Hookline, receiver: Receiver
) -> None:
    """As in the issue's journey, the awaited event has the trigger's type: the second spin
    moves the user on, and (once_while_active) is not a second entry; neither is an exit
    or a goal event of the trigger's type. A third spin, once outside, enters again."""
    awaited = {
        "hello": hook(receiver, "/hello", next="ask"),
        "ask": {
            "type": "wait_for_event",
            "event_type": "minigame_spin_issued",
            "timeout": "1h",
            "next": "bye",
        },
        "bye": hook(receiver, "/bye"),
    }
    waiting = {
        "hello": hook(receiver, "/hello-2", next="wait"),
        "wait": {"type": "delay", "duration": "1h"},
    }
    spin = {"event_type": "minigame_spin_issued"}
    journeys = [
        await create(hookline, journey(awaited)),
        await create(hookline, journey(waiting, name="exits", exit_on=[spin])),
        await create(hookline, journey(waiting, name="converts", goal=spin)),
    ]
    for _ in range(2):
        resp = await hookline.post("/api/v1/events", spin_event())
        assert resp.status_code == 202, resp.text
    await receiver.wait_for(1, "/bye")
    for j in journeys:
        (inst,) = await instances(hookline, j["id"])
        assert inst["status"] == "finished", inst
    assert [i["finish_reason"] for j in journeys for i in await instances(hookline, j["id"])] == [
        "completed",
        "exited",
        "goal",
    ]
    await hookline.post("/api/v1/events", spin_event())
    for j in journeys:
        assert len(await instances(hookline, j["id"], status="active")) == 1
    await hookline.idle()
    assert len(receiver.on("/hello")) == 2 and len(receiver.on("/hello-2")) == 4


async def test_condition_split_and_update_state(hookline: Hookline, receiver: Receiver) -> None:
    await hookline.client.patch(
        "/api/v1/users/u-gold/state?ext_brand_id=brand-1", json={"level": "gold"}
    )
    await create(
        hookline,
        journey(
            {
                "vip?": {
                    "type": "condition",
                    "conditions": {"field": "state.level", "op": "eq", "value": "gold"},
                    "then": "split",
                    "else": "plain",
                },
                "split": {"type": "split", "branches": [{"percent": 100, "next": "mark"}]},
                "mark": {
                    "type": "update_state",
                    "set": {"last_campaign": "{{journey.name}}"},
                    "next": "gold",
                },
                "gold": hook(receiver, "/gold", '{"c": "{{state.last_campaign}}"}'),
                "plain": hook(receiver, "/plain"),
            },
            start="vip?",
            entry={"trigger": {"event_type": "minigame_spin_issued"}, "mode": "every_time"},
        ),
    )
    await hookline.post("/api/v1/events", spin_event("u-gold"))
    await hookline.post("/api/v1/events", spin_event("u-tin"))
    (gold,) = await receiver.wait_for(1, "/gold")
    assert gold.json() == {"c": "spin-welcome"}  # state as the step runs, set one block before
    await receiver.wait_for(1, "/plain")
    state = (await hookline.client.get("/api/v1/users/u-gold/state?ext_brand_id=brand-1")).json()
    assert state["last_campaign"] == "spin-welcome"


async def test_conversion_fires_a_rule_on_campaign_converted(
    hookline: Hookline, receiver: Receiver
) -> None:
    j = await create(
        hookline,
        journey(
            {
                "hello": hook(receiver, "/hello", next="wait"),
                "wait": {"type": "delay", "duration": "1h"},
            },
            goal={"event_type": "deposit_made", "within": "7d"},
        ),
    )
    rule = {
        "name": "crm-on-convert",
        "trigger": {"event_type": "campaign_converted"},
        "conditions": {"field": "event.journey_name", "op": "eq", "value": "spin-welcome"},
        "activity": {
            "url": receiver.url("/crm"),
            "body": '{"j": "{{event.journey_id}}", "control": {{event.control_group}}}',
        },
    }
    assert (await hookline.client.post("/api/v1/rules", json=rule)).status_code == 201
    await hookline.post("/api/v1/events", spin_event())
    await hookline.post(
        "/api/v1/events",
        {"event_type": "deposit_made", "user_ext_id": "u-1", "ext_brand_id": "brand-1"},
    )
    (crm,) = await receiver.wait_for(1, "/crm")
    assert crm.json() == {"j": j["id"], "control": False}
    (done,) = await instances(hookline, j["id"])
    assert done["finish_reason"] == "goal" and done["converted_at"] is not None
    stats = (await hookline.client.get(f"/api/v1/journeys/{j['id']}/stats")).json()
    assert stats["treatment"]["converted"] == 1
    assert stats["treatment"]["conversion_rate"] == 1.0
    assert stats["control"]["entered"] == 0


async def test_control_group_enters_runs_nothing_and_converts(
    hookline: Hookline, receiver: Receiver
) -> None:
    rule = {
        "name": "see-started",
        "trigger": {"event_type": "campaign_started"},
        "activity": {"url": receiver.url("/started"), "body": '{"c": {{event.control_group}}}'},
    }
    await hookline.client.post("/api/v1/rules", json=rule)
    j = await create(
        hookline,
        journey(
            {"hello": hook(receiver, "/hello")},
            control_group={"percent": 100},
            goal={"event_type": "deposit_made", "within": "1h"},
        ),
    )
    await hookline.post("/api/v1/events", spin_event())
    (started,) = await receiver.wait_for(1, "/started")
    assert started.json() == {"c": True}
    await hookline.post(
        "/api/v1/events",
        {"event_type": "deposit_made", "user_ext_id": "u-1", "ext_brand_id": "brand-1"},
    )
    await hookline.idle()
    (inst,) = await instances(hookline, j["id"])
    assert inst["control_group"] is True and inst["finish_reason"] == "goal"
    assert receiver.on("/hello") == []
    stats = (await hookline.client.get(f"/api/v1/journeys/{j['id']}/stats")).json()
    assert stats["control"]["converted"] == 1 and stats["treatment"]["entered"] == 0


async def test_changing_an_active_journey_makes_a_version_old_users_keep_theirs(
    hookline: Hookline, receiver: Receiver
) -> None:
    blocks = {
        "hello": hook(receiver, "/v1-first", next="wait"),
        "wait": {"type": "delay", "duration": 0.4, "next": "again"},
        "again": hook(receiver, "/v1-second", '{"v": {{journey.version}}}'),
    }
    data = journey(blocks)
    j = await create(hookline, data)
    await hookline.post("/api/v1/events", spin_event("u-old"))
    await receiver.wait_for(1, "/v1-first")
    changed = journey({**blocks, "again": hook(receiver, "/v2-second")})
    resp = await hookline.client.put(f"/api/v1/journeys/{j['id']}", json=changed)
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == 2
    (old,) = await receiver.wait_for(1, "/v1-second")
    assert old.json() == {"v": 1}
    await hookline.post("/api/v1/events", spin_event("u-new"))
    await receiver.wait_for(1, "/v2-second")
    same = await hookline.client.patch(f"/api/v1/journeys/{j['id']}", json={"status": "paused"})
    assert same.json()["version"] == 2  # a status change is no new version


async def chain_cuts(
    h: Hookline, journey_id: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    resp = await h.client.get(f"/api/v1/journeys/{journey_id}/chain-cuts", headers=headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    models.ChainCutList.model_validate(body)  # extra="forbid": a field it lacks fails here
    data: list[dict[str, Any]] = body["data"]
    return data


async def cut_count(h: Hookline, journey_id: str) -> int:
    resp = await h.client.get(f"/api/v1/journeys/{journey_id}/stats")
    assert resp.status_code == 200, resp.text
    count: int = resp.json()["chain_cuts"]
    return count


async def test_journeys_that_trigger_each_other_are_cut_at_depth_8_and_each_cut_is_kept(
    make_hookline: Any,
) -> None:
    first = await make_hookline()
    ids: dict[str, str] = {}
    for name, on, emits in (("ping", "ping", "pong"), ("pong", "pong", "ping")):
        made = await create(
            first,
            {
                "name": name,
                "status": "active",
                "ext_brand_id": "b1",
                "entry": {"trigger": {"event_type": on}, "mode": "every_time"},
                "start": "emit",
                "blocks": {"emit": {"type": "emit_event", "event_type": emits}},
            },
        )
        ids[name] = made["id"]
    before = now_ms()
    ping = {"event_type": "ping", "user_ext_id": "u-1", "ext_brand_id": "b1"}
    resp = await first.post("/api/v1/events", ping)
    assert resp.status_code == 202, resp.text
    after = now_ms()
    mine = await first.client.get("/api/v1/users/u-1/journeys", params={"ext_brand_id": "b1"})
    # The first ping enters at depth 0; each emitted event is one deeper, up to 8.
    assert len(mine.json()["data"]) == MAX_CHAIN_DEPTH + 1
    # The ping at depth 8 entered "ping" a fifth time: what that entry emits is cut, newest first.
    deepest = (await instances(first, ids["ping"]))[0]
    cuts = await chain_cuts(first, ids["ping"])
    assert [c["event_type"] for c in cuts] == ["campaign_finished", "pong", "campaign_started"]
    for cut in cuts:
        assert cut["id"].startswith("jcc_")
        assert before <= cut["cut_at"] <= after
        assert {k: v for k, v in cut.items() if k not in ("id", "event_type", "cut_at")} == {
            "journey_id": ids["ping"],
            "version": 1,
            "instance_id": deepest["id"],
            "user_ext_id": "u-1",
            "ext_brand_id": "b1",
            "depth": MAX_CHAIN_DEPTH,
            "event_id": cuts[0]["event_id"],
        }
    cutting = (await first.client.get(f"/api/v1/events/{cuts[0]['event_id']}")).json()
    assert (cutting["event_type"], cutting["user_ext_id"]) == ("ping", "u-1")
    assert cutting["id"] != resp.json()["events"][0]["id"]  # the deepest ping, not the first
    assert (await cut_count(first, ids["ping"]), await cut_count(first, ids["pong"])) == (3, 0)
    assert await chain_cuts(first, ids["pong"]) == []
    assert first.runtime.engine.tally.journey_chain_cuts == 3
    await first.stop()

    second = await make_hookline()  # the same data directory
    assert await chain_cuts(second, ids["ping"]) == cuts
    assert await cut_count(second, ids["ping"]) == 3
    # A read key of brand b1 reads them; one of b2 finds no such journey.
    _, own = await second.runtime.keys.create(Role.READ, ("b1",), "")
    _, other = await second.runtime.keys.create(Role.READ, ("b2",), "")
    assert await chain_cuts(second, ids["ping"], {"authorization": f"Bearer {own}"}) == cuts
    for path in ("chain-cuts", "stats"):
        hidden = await second.client.get(
            f"/api/v1/journeys/{ids['ping']}/{path}", headers={"authorization": f"Bearer {other}"}
        )
        assert hidden.status_code == 404, hidden.text
        assert hidden.json()["field"] == "journey_id"
    # Deleting the journey deletes its cuts with it.
    _, admin = await second.runtime.keys.create(Role.ADMIN, (), "")
    gone = await second.client.delete(
        f"/api/v1/journeys/{ids['ping']}", headers={"authorization": f"Bearer {admin}"}
    )
    assert gone.status_code == 204, gone.text
    assert await second.runtime.journeys.list_chain_cuts(ids["ping"]) == []


async def test_stopping_a_journey_lets_everyone_leave(
    hookline: Hookline, receiver: Receiver
) -> None:
    j = await create(hookline, journey({"hello": {"type": "delay", "duration": "1h"}}))
    await hookline.post("/api/v1/events", spin_event())
    resp = await hookline.client.patch(f"/api/v1/journeys/{j['id']}", json={"status": "stopped"})
    assert resp.status_code == 200, resp.text
    (inst,) = await instances(hookline, j["id"])
    assert inst["status"] == "finished" and inst["finish_reason"] == "stopped"
    back = await hookline.client.patch(f"/api/v1/journeys/{j['id']}", json={"status": "draft"})
    assert back.status_code == 409


async def test_invalid_journey_is_422_naming_block_and_field(
    hookline: Hookline, receiver: Receiver
) -> None:
    data = wait_journey(receiver, 60)
    data["blocks"]["ask"]["on_timeout"] = "nowhere"
    resp = await hookline.client.post("/api/v1/journeys", json=data)
    assert resp.status_code == 422
    assert resp.json()["field"] == "blocks.ask.on_timeout"
    assert resp.json()["code"] == "invalid_input"
    assert (await hookline.client.get("/api/v1/journeys")).json()["data"] == []
    dup = await create(hookline, wait_journey(receiver, 60))
    again = await hookline.client.post("/api/v1/journeys", json=wait_journey(receiver, 60))
    assert again.status_code == 409 and again.json()["field"] == "name"
    missing = await hookline.client.get("/api/v1/journeys/jrn_nope")
    assert missing.status_code == 404
    assert dup["status"] == "active"


async def test_timers_survive_a_restart(make_hookline: Any, receiver: Receiver) -> None:
    first = await make_hookline()
    await create(
        first,
        journey(
            {
                "hello": {"type": "delay", "duration": 0.5, "next": "later"},
                "later": hook(receiver, "/later", SAW),
            }
        ),
    )
    await first.post("/api/v1/events", spin_event())
    await first.stop()
    second = await make_hookline()
    (later,) = await receiver.wait_for(1, "/later")
    assert later.json()["saw"] == "12"
    assert second.runtime.engine.journeys.live


async def test_a_timer_claim_skips_instances_handed_to_the_writer_not_yet_committed(
    hookline: Hookline, receiver: Receiver
) -> None:
    await create(
        hookline,
        journey(
            {
                "hello": {"type": "delay", "duration": "1h", "next": "later"},
                "later": hook(receiver, "/later"),
            }
        ),
    )
    resp = await hookline.post("/api/v1/events", [spin_event(f"u-{i}") for i in range(25)])
    assert resp.status_code == 202, resp.text
    store = hookline.runtime.engine.journey_store
    assert store is not None
    in_two_hours = now_ms() + 7_200_000
    first = await store.due(in_two_hours, 10)
    second = await store.due(in_two_hours, 10, skip={i for i, _ in first})
    rest = await store.due(in_two_hours, 10, skip={i for i, _ in first + second})
    assert (len(first), len(second), len(rest)) == (10, 10, 5)
    assert len({i for i, _ in first + second + rest}) == 25
    assert await store.due(now_ms(), 10) == []  # none is due yet
    due_at = await store.next_due_at()
    assert due_at is not None and now_ms() < due_at <= in_two_hours


async def test_timers_due_at_once_go_to_the_writer_in_batches_of_the_timer_size(
    hookline: Hookline, receiver: Receiver
) -> None:
    timer = hookline.runtime.engine.journey_timer
    assert timer is not None
    timer.batch = 10
    batches: list[int] = []
    submit = hookline.runtime.engine.submit_timers

    async def counted(due: Any) -> None:
        batches.append(len(due))
        await submit(due)

    hookline.runtime.engine.submit_timers = counted  # type: ignore[method-assign]
    await create(
        hookline,
        journey(
            {
                "hello": {"type": "delay", "duration": 0.3, "next": "later"},
                "later": hook(receiver, "/later", '{"u": "{{event.user_ext_id}}"}'),
            }
        ),
    )
    resp = await hookline.post("/api/v1/events", [spin_event(f"u-{i}") for i in range(25)])
    assert resp.status_code == 202, resp.text
    arrived = await receiver.wait_for(25, "/later")
    assert sorted(r.json()["u"] for r in arrived) == sorted(f"u-{i}" for i in range(25))
    assert sum(batches) == 25 and max(batches) <= 10 and len(batches) >= 3
