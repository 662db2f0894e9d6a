"""Journeys as a user reading the issue would try them: the gaps an audit found, pinned."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from typer.testing import CliRunner

from hookline.cli import app
from hookline.errors import InvalidInput
from hookline.journeys import (
    CAMPAIGN_CONVERTED,
    FinishReason,
    InstanceStatus,
    Journey,
    JourneyStatus,
    compile_journey,
    enter,
    on_event,
    on_timer,
)
from tests.helpers import Hookline, Receiver, spin_event
from tests.test_journeys_e2e import create, hook, instances, journey
from tests.test_metrics_e2e import scrape

HOUR = 3_600_000


def deposit(user: str = "u-1", **payload: Any) -> dict[str, Any]:
    return {
        "event_type": "deposit_made",
        "user_ext_id": user,
        "ext_brand_id": "brand-1",
        "payload": payload,
    }


async def watch_campaign_events(h: Hookline, receiver: Receiver) -> None:
    """A rule on each campaign event, calling /<event type> with its payload's fields."""
    body = (
        '{"journey": "{{event.journey_name}}", "control_group": {{event.control_group}}, '
        '"instance_id": "{{event.instance_id}}", "reason": "{{event.reason|-}}"}'
    )
    for kind in ("campaign_started", "campaign_converted", "campaign_finished"):
        rule = {
            "name": f"see-{kind}",
            "trigger": {"event_type": kind},
            "activity": {"url": receiver.url(f"/{kind}"), "body": body},
        }
        resp = await h.client.post("/api/v1/rules", json=rule)
        assert resp.status_code == 201, resp.text


async def stats(h: Hookline, journey_id: str) -> dict[str, Any]:
    resp = await h.client.get(f"/api/v1/journeys/{journey_id}/stats")
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


# --- conversion after the walk ended ----------------------------------------------------


async def test_a_user_who_walked_to_the_end_still_converts_within_the_goal_window(
    hookline: Hookline, receiver: Receiver
) -> None:
    """The issue's walk-through: two webhooks, then a deposit converts (no block lingers)."""
    h = hookline
    await watch_campaign_events(h, receiver)
    j = await create(
        h,
        journey(
            {"hello": hook(receiver, "/hello", next="bye"), "bye": {"type": "exit"}},
            goal={"event_type": "deposit_made", "within": "7d"},
        ),
    )
    await h.post("/api/v1/events", spin_event())
    await receiver.wait_for(1, "/hello")
    (done,) = await receiver.wait_for(1, "/campaign_finished")
    assert done.json()["reason"] == "completed"
    (inst,) = await instances(h, j["id"])
    assert inst["status"] == "finished" and inst["finish_reason"] == "completed"

    resp = await h.post("/api/v1/events", deposit())
    assert resp.status_code == 202, resp.text
    (converted,) = await receiver.wait_for(1, "/campaign_converted")
    assert converted.json() == {
        "journey": "spin-welcome",
        "control_group": False,
        "instance_id": inst["id"],
        "reason": "-",
    }
    (after,) = await instances(h, j["id"])
    # Still finished as it was: converting late is no second finish.
    assert after["finish_reason"] == "completed" and after["converted_at"] is not None
    counted = await stats(h, j["id"])
    assert counted["treatment"]["converted"] == 1
    assert counted["treatment"]["conversion_rate"] == 1.0
    assert counted["treatment"]["finished"] == {"completed": 1}
    # The journey's own figures: both groups together.
    assert counted["converted"] == 1 and counted["conversion_rate"] == 1.0
    assert counted["finished"] == {"completed": 1}

    # The goal converts once.
    await h.post("/api/v1/events", deposit())
    await h.idle()
    assert len(receiver.on("/campaign_converted")) == 1
    assert len(receiver.on("/campaign_finished")) == 1
    figures = await scrape(h)
    assert figures[("hookline_journey_finishes_total", (("reason", "completed"),))] == 1


async def test_a_user_who_left_by_an_exit_event_or_a_stop_does_not_convert_late(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    await watch_campaign_events(h, receiver)
    blocks = {
        "hello": hook(receiver, "/hello", next="wait"),
        "wait": {"type": "delay", "duration": "1h"},
    }
    j = await create(
        h,
        journey(
            blocks,
            goal={"event_type": "deposit_made", "within": "7d"},
            exit_on=[{"event_type": "user_blocked"}],
            entry={"trigger": {"event_type": "minigame_spin_issued"}, "mode": "every_time"},
        ),
    )
    await h.post("/api/v1/events", spin_event("blocked"))
    await h.post("/api/v1/events", {**deposit("blocked"), "event_type": "user_blocked"})
    await h.post("/api/v1/events", deposit("blocked"))
    await h.idle()
    assert receiver.on("/campaign_converted") == []

    # Walked to the end, then the journey was stopped: it counts no more.
    path = f"/api/v1/journeys/{j['id']}"
    short = {"hello": hook(receiver, "/hello")}
    resp = await h.client.put(path, json=journey(short, goal={"event_type": "deposit_made"}))
    assert resp.status_code == 200, resp.text
    await h.post("/api/v1/events", spin_event("walked"))
    await h.idle()
    (walked,) = await instances(h, j["id"], user_ext_id="walked", ext_brand_id="brand-1")
    assert walked["finish_reason"] == "completed"
    for status in ("stopped", "active"):
        resp = await h.client.patch(path, json={"status": status})
        assert resp.status_code == 200, resp.text
    await h.post("/api/v1/events", deposit("walked"))
    await h.idle()
    assert receiver.on("/campaign_converted") == []


async def test_a_finished_walk_converts_on_its_own_version_after_a_restart(
    make_hookline: Any, receiver: Receiver
) -> None:
    h = await make_hookline()
    j = await create(
        h,
        journey(
            {"hello": hook(receiver, "/hello")},
            goal={"event_type": "deposit_made", "within": "1d"},
        ),
    )
    await h.post("/api/v1/events", spin_event())
    await receiver.wait_for(1, "/hello")
    # Version 2 has another goal; the finished walk of version 1 keeps its own.
    changed = journey(
        {"hello": hook(receiver, "/hello")}, goal={"event_type": "vip_reached", "within": "1d"}
    )
    resp = await h.client.put(f"/api/v1/journeys/{j['id']}", json=changed)
    assert resp.json()["version"] == 2
    await h.stop()

    h = await make_hookline()
    await h.post("/api/v1/events", deposit())
    await h.idle()
    (inst,) = await instances(h, j["id"])
    assert inst["version"] == 1 and inst["converted_at"] is not None
    assert (await stats(h, j["id"]))["treatment"]["converted"] == 1


# --- the control group ------------------------------------------------------------------


async def test_a_control_group_with_a_goal_and_no_window_still_counts_toward_it(
    hookline: Hookline, receiver: Receiver
) -> None:
    """No `within`, no `max_duration`: the control user waits for the goal, not for nothing."""
    h = hookline
    await watch_campaign_events(h, receiver)
    j = await create(
        h,
        journey(
            {"hello": hook(receiver, "/hello")},
            control_group={"percent": 100},
            goal={"event_type": "deposit_made"},
        ),
    )
    await h.post("/api/v1/events", spin_event())
    (started,) = await receiver.wait_for(1, "/campaign_started")
    assert started.json()["control_group"] is True
    (inst,) = await instances(h, j["id"])
    assert inst["control_group"] is True and inst["status"] == "active"
    assert inst["due_at"] is None  # no timer: nothing ends its wait but the goal or a stop

    await h.post("/api/v1/events", deposit())
    (converted,) = await receiver.wait_for(1, "/campaign_converted")
    assert converted.json()["control_group"] is True
    (finished,) = await receiver.wait_for(1, "/campaign_finished")
    assert finished.json()["reason"] == "goal"
    assert receiver.on("/hello") == []
    counted = await stats(h, j["id"])
    assert counted["control"]["converted"] == 1 and counted["control"]["conversion_rate"] == 1.0
    assert counted["treatment"]["entered"] == 0 and counted["treatment"]["conversion_rate"] is None
    assert counted["finished"] == {"goal": 1} and counted["converted"] == 1
    assert counted["blocks"]["hello"] == {"entered": 0, "passed": 0, "waiting": 0}


# --- stats ------------------------------------------------------------------------------


async def test_stats_list_every_block_with_zeros_for_those_nobody_reached(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    j = await create(
        h,
        journey(
            {
                "ask": {
                    "type": "wait_for_event",
                    "event_type": "deposit_made",
                    "timeout": "1d",
                    "next": "yes",
                    "on_timeout": "no",
                },
                "yes": hook(receiver, "/yes"),
                "no": hook(receiver, "/no"),
            },
            start="ask",
        ),
    )
    before = await stats(h, j["id"])
    assert before["blocks"] == {
        name: {"entered": 0, "passed": 0, "waiting": 0} for name in ("ask", "yes", "no")
    }
    await h.post("/api/v1/events", spin_event())
    await h.post("/api/v1/events", deposit())
    await receiver.wait_for(1, "/yes")
    after = (await stats(h, j["id"]))["blocks"]
    assert after["ask"] == {"entered": 1, "passed": 1, "waiting": 0}
    assert after["yes"] == {"entered": 1, "passed": 1, "waiting": 0}
    assert after["no"] == {"entered": 0, "passed": 0, "waiting": 0}


# --- the same, as pure steps ------------------------------------------------------------


def _compiled(**extra: Any) -> Any:
    definition = {
        "entry": {"trigger": {"event_type": "spin"}},
        "start": "hello",
        "blocks": {"hello": {"type": "webhook", "activity": {"url": "http://127.0.0.1:9/"}}},
        **extra,
    }
    return compile_journey(Journey("jrn_1", "j", JourneyStatus.ACTIVE, definition, 0, 0), {})


def test_a_completed_walk_converts_until_the_goal_window_ends_and_only_then() -> None:
    j = _compiled(goal={"event_type": "deposit", "within": "1h"}, max_duration="2h")
    done = enter(j, "jri_1", "u-1", None, {}, {}, now=0).instance
    assert done.status is InstanceStatus.FINISHED and done.goal_until == HOUR
    late = on_event(j, done, "deposit", {}, {}, now=HOUR)
    assert late is not None and [e.event_type for e in late.emitted] == [CAMPAIGN_CONVERTED]
    assert late.instance.finish_reason is FinishReason.COMPLETED
    assert late.instance.converted_at == HOUR and late.instance.goal_until is None
    assert on_event(j, late.instance, "deposit", {}, {}, now=HOUR) is None  # once
    assert on_event(j, done, "deposit", {}, {}, now=HOUR + 1) is None  # too late
    assert on_event(j, done, "other", {}, {}, now=5) is None
    # max_duration shorter than within bounds the window, as for the control group.
    short = _compiled(goal={"event_type": "deposit", "within": "2h"}, max_duration="1h")
    assert enter(short, "jri_1", "u-1", None, {}, {}, now=0).instance.goal_until == HOUR
    # Without a goal there is nothing to count.
    assert enter(_compiled(), "jri_1", "u-1", None, {}, {}, now=0).instance.goal_until is None


def test_a_wait_that_runs_out_with_nowhere_to_go_keeps_counting_the_goal() -> None:
    """Such a wait finishes as timeout, no longer completed; its goal must still count, as it
    did then and as the control group's does, or the treatment's rate reads lower."""
    j = _compiled(
        goal={"event_type": "deposit", "within": "3h"},
        blocks={"hello": {"type": "wait_for_event", "event_type": "open", "timeout": "1h"}},
        start="hello",
    )
    waiting = enter(j, "jri_1", "u-1", None, {}, {}, now=0).instance
    timed_out = on_timer(j, waiting, {}, now=HOUR)
    assert timed_out is not None and timed_out.instance.finish_reason is FinishReason.TIMEOUT
    assert timed_out.instance.goal_until == 3 * HOUR
    late = on_event(j, timed_out.instance, "deposit", {}, {}, now=2 * HOUR)
    assert late is not None and [e.event_type for e in late.emitted] == [CAMPAIGN_CONVERTED]
    assert late.instance.finish_reason is FinishReason.TIMEOUT


def test_only_a_walk_that_completed_keeps_counting_its_goal() -> None:
    j = _compiled(
        goal={"event_type": "deposit", "within": "2h"},
        exit_on=[{"event_type": "blocked"}],
        max_duration="1h",
        blocks={"hello": {"type": "delay", "duration": "3h"}},
        start="hello",
    )
    waiting = enter(j, "jri_1", "u-1", None, {}, {}, now=0).instance
    assert waiting.due_at == HOUR  # max_duration cuts the delay short
    exited = on_event(j, waiting, "blocked", {}, {}, now=1)
    assert exited is not None and exited.instance.finish_reason is FinishReason.EXITED
    assert exited.instance.goal_until is None
    timed_out = on_timer(j, waiting, {}, now=HOUR)
    assert timed_out is not None and timed_out.instance.finish_reason is FinishReason.TIMEOUT
    assert timed_out.instance.goal_until is None
    converted = on_event(j, waiting, "deposit", {}, {}, now=2)
    assert converted is not None and converted.instance.finish_reason is FinishReason.GOAL
    assert converted.instance.goal_until is None


def test_a_control_user_without_a_goal_window_waits_with_no_timer() -> None:
    j = _compiled(goal={"event_type": "deposit"}, control_group={"percent": 100})
    step = enter(j, "jri_1", "u-1", None, {}, {}, now=0)
    assert step.webhooks == () and step.instance.status is InstanceStatus.ACTIVE
    assert step.instance.due_at is None
    converted = on_event(j, step.instance, "deposit", {}, {}, now=10 * HOUR)
    assert converted is not None and converted.instance.finish_reason is FinishReason.GOAL
    # Without a goal the control user has nothing to wait for.
    alone = enter(_compiled(control_group={"percent": 100}), "jri_1", "u-1", None, {}, {}, now=0)
    assert alone.instance.finish_reason is FinishReason.COMPLETED


# --- what a careless user sends ---------------------------------------------------------


async def test_block_names_in_any_script_are_kept_walked_and_counted(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    blocks = {
        "приветствие": hook(receiver, "/hi", '{"b": "{{journey.block}}"}', next="ジ"),
        "ジ": {"type": "exit"},
    }
    j = await create(h, journey(blocks, start="приветствие"))
    assert list(j["blocks"]) == ["приветствие", "ジ"]
    await h.post("/api/v1/events", spin_event())
    (hi,) = await receiver.wait_for(1, "/hi")
    assert hi.json() == {"b": "приветствие"}
    counted = (await stats(h, j["id"]))["blocks"]
    assert counted["ジ"] == {"entered": 1, "passed": 1, "waiting": 0}
    for bad in ("say hi", "a.b", "x" * 65):
        named = journey({"ok": {"type": "exit"}, bad: {"type": "exit"}}, start="ok")
        resp = await h.client.post("/api/v1/journeys/validate", json=named)
        assert resp.status_code == 422, bad
        assert resp.json()["field"] == f"blocks.{bad}"


async def test_durations_as_quoted_seconds_or_with_a_fraction_are_taken(
    hookline: Hookline,
) -> None:
    h = hookline
    for duration, seconds in (("3600", 3600), ("1.5h", 5400), ("0.5", 0.5), ("2.5m", 150)):
        blocks = {"wait": {"type": "delay", "duration": duration}}
        j = await create(h, journey(blocks, start="wait", name=f"d-{duration}"))
        assert j["blocks"]["wait"]["duration"] == duration  # kept as written
        await h.post("/api/v1/events", spin_event(f"u-{duration}"))
        (inst,) = await instances(h, j["id"])
        assert inst["due_at"] - inst["entered_at"] == seconds * 1000
    for bad in ("1.h", ".5h", "1d2h", "0.0001s", "1e3"):
        blocks = {"wait": {"type": "delay", "duration": bad}}
        resp = await h.client.post("/api/v1/journeys", json=journey(blocks, start="wait"))
        assert resp.status_code == 422, bad
        assert resp.json()["field"] == "blocks.wait.duration"


async def test_a_webhook_block_takes_the_limits_of_a_rules_activity(hookline: Hookline) -> None:
    """One code path: what a rule refuses in its activity, a webhook block refuses too."""
    h = hookline
    too_long = {"url": "http://127.0.0.1:9/" + "a" * 4096}
    many = {f"X-{i}": "v" for i in range(101)}
    secrets = {"url": "http://127.0.0.1:9/", "headers": many, "secret_headers": list(many)}
    for activity, field in ((too_long, "url"), (secrets, "secret_headers")):
        block = {"hello": {"type": "webhook", "activity": activity}}
        resp = await h.client.post("/api/v1/journeys", json=journey(block))
        assert resp.status_code == 422, resp.text
        assert resp.json()["field"] == f"blocks.hello.activity.{field}"
        rule = {"name": "r", "trigger": {"event_type": "x"}, "activity": activity}
        resp = await h.client.post("/api/v1/rules", json=rule)
        assert resp.status_code == 422, resp.text
        assert resp.json()["field"].startswith(f"activity.{field}")


async def test_a_brand_journeys_instances_filter_by_user_without_naming_the_brand(
    hookline: Hookline, receiver: Receiver
) -> None:
    """Only users of its brand enter a journey of a brand: the brand is not asked again."""
    h = hookline
    j = await create(h, journey({"hello": hook(receiver, "/hello")}, ext_brand_id="brand-1"))
    await h.post("/api/v1/events", spin_event("u-1"))
    await h.post("/api/v1/events", spin_event("u-2"))
    await h.idle()
    (mine,) = await instances(h, j["id"], user_ext_id="u-1")
    assert mine["user_ext_id"] == "u-1" and mine["ext_brand_id"] == "brand-1"
    assert await instances(h, j["id"], user_ext_id="u-1", ext_brand_id="brand-2") == []
    assert len(await instances(h, j["id"])) == 2


async def test_journeys_apply_names_a_journey_in_its_own_script(
    hookline: Hookline, tmp_path: Path
) -> None:
    bad = journey({"wait": {"type": "delay", "duration": 0}}, start="wait", name="приветствие ジ")
    path = tmp_path / "journeys.yaml"
    path.write_text(yaml.safe_dump({"journeys": [bad]}, allow_unicode=True), encoding="utf-8")
    args = ["journeys", "apply", "-f", str(path), "--url", hookline.base_url]
    done = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert done.exit_code == 1
    assert 'journey "приветствие ジ": blocks.wait.duration' in done.output


def _next_local(hour: int, minute: int, zone: str, after_ms: int, second: int = 0) -> int:
    """The next hour:minute in ``zone`` after ``after_ms``, worked out apart from hookline."""
    local = datetime.fromtimestamp(after_ms / 1000, ZoneInfo(zone))
    target = local.replace(hour=hour, minute=minute, second=second, microsecond=0)
    if target <= local:
        target += timedelta(days=1)  # wall-clock arithmetic: the same time the next day
    return int(target.timestamp() * 1000)


async def test_a_delay_until_a_time_of_day_in_the_zone_a_state_property_names(
    hookline: Hookline,
) -> None:
    """Both ways to write it; a user with no zone, or one no one knows, gets the default."""
    h = hookline
    forms: dict[str, dict[str, Any]] = {
        "flat": {"time_zone_field": "state.core_timezone", "time_zone": "America/New_York"},
        "object": {"time_zone": {"field": "core_timezone", "default": "America/New_York"}},
    }
    zones = {"tokyo": "Asia/Tokyo", "unknown": "Mars/Olympus", "none": None}
    for user, zone in zones.items():
        if zone is not None:
            patch = await h.client.patch(
                f"/api/v1/users/{user}/state", json={"core_timezone": zone}
            )
            assert patch.status_code == 200, patch.text
    for name, form in forms.items():
        blocks = {"wait": {"type": "delay", "until": "9:30", **form}}
        entry = {"trigger": {"event_type": f"go-{name}"}}
        j = await create(h, journey(blocks, start="wait", name=name, entry=entry))
        for user in zones:
            await h.post("/api/v1/events", {"event_type": f"go-{name}", "user_ext_id": user})
        due = {
            i["user_ext_id"]: (i["due_at"], i["entered_at"]) for i in await instances(h, j["id"])
        }
        for user, zone in zones.items():
            expected = zone if zone == "Asia/Tokyo" else "America/New_York"
            due_at, entered_at = due[user]
            assert due_at == _next_local(9, 30, expected, entered_at), (name, user)
    refused: list[tuple[dict[str, Any], str]] = [
        ({"time_zone": {"field": "state.tz", "default": "Nowhere/At_All"}}, "time_zone.default"),
        ({"time_zone": {"field": "event.tz"}}, "time_zone.field"),
        ({"time_zone": {"zone": "UTC"}}, "time_zone.zone"),
        ({"time_zone": {"field": "tz"}, "time_zone_field": "tz"}, "time_zone_field"),
    ]
    for form, field in refused:
        blocks = {"wait": {"type": "delay", "until": "09:00", **form}}
        resp = await h.client.post("/api/v1/journeys", json=journey(blocks, start="wait"))
        assert resp.status_code == 422, resp.text
        assert resp.json()["field"] == f"blocks.wait.{field}"


async def test_a_delay_until_reads_a_zone_kept_as_an_offset_and_a_time_with_seconds(
    hookline: Hookline,
) -> None:
    """Profiles often keep a zone as an offset, not an IANA name; each is the same wall time
    as the IANA zone with that fixed offset."""
    h = hookline
    zones: dict[str, tuple[Any, str]] = {
        "colon": ("+02:00", "Etc/GMT-2"),
        "compact": ("+0530", "Asia/Kolkata"),
        "named": ("UTC-5", "Etc/GMT+5"),
        "gmt": ("GMT+0545", "Asia/Kathmandu"),
        "hours": (9, "Asia/Tokyo"),
        "too-far": ("+15:00", "America/New_York"),  # no such offset: the default
    }
    for user, (zone, _) in zones.items():
        patch = await h.client.patch(
            f"/api/v1/users/{user}/state", params={"ext_brand_id": "brand-1"}, json={"tz": zone}
        )
        assert patch.status_code == 200, patch.text
    zone = {"field": "tz", "default": "America/New_York"}
    blocks = {"wait": {"type": "delay", "until": "07:15:30", "time_zone": zone}}
    j = await create(h, journey(blocks, start="wait"))
    for user in zones:
        await h.post("/api/v1/events", spin_event(user))
    due = {i["user_ext_id"]: (i["due_at"], i["entered_at"]) for i in await instances(h, j["id"])}
    for user, (_, same_as) in zones.items():
        due_at, entered_at = due[user]
        assert due_at == _next_local(7, 15, same_as, entered_at, second=30), user


def test_a_default_zone_is_any_zone_a_state_may_hold_and_utc_is_read_in_any_case() -> None:
    """The README says a zone is a name, an offset or hours, but a default of hours was
    refused ("use an IANA name"), and "utc" or "Z" from a profile fell to the default."""
    entered = int(datetime(2026, 6, 1, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)

    def due(default: Any, state: dict[str, Any]) -> int | None:
        zone = {"field": "tz", "default": default}
        wait = {"type": "delay", "until": "07:00", "time_zone": zone}
        j = _compiled(blocks={"hello": wait})
        return enter(j, "jri_1", "u-1", None, {}, state, now=entered).instance.due_at

    tokyo = _next_local(7, 0, "Asia/Tokyo", entered)
    assert due(9, {}) == due("+09:00", {}) == due(9, {"tz": {"nested": 1}}) == tokyo
    assert due(9, {"tz": True}) == due(9, {"tz": "+14:01"}) == due(9, {"tz": "UTC+"}) == tokyo
    utc = _next_local(7, 0, "UTC", entered)
    assert due(9, {"tz": "utc"}) == due(9, {"tz": "Z"}) == due(9, {"tz": " gmt "}) == utc
    assert due(9, {"tz": "-00:00"}) == due("z", {}) == utc
    for wrong in (15, True, "+14:01", 1e308, "Mars/Base", None):
        with pytest.raises(InvalidInput) as info:
            due(wrong, {})
        assert info.value.field == "blocks.hello.time_zone.default"
        assert "'+02:00'" in info.value.detail, info.value.detail


async def test_true_is_no_brand_of_a_journey_rule_webhook_or_preview(
    hookline: Hookline, receiver: Receiver
) -> None:
    """pydantic makes true the integer 1: a careless brand would silently become "1"."""
    h = hookline
    bodies = {
        "/api/v1/journeys": journey({"hello": hook(receiver, "/hello")}),
        "/api/v1/rules": {
            "name": "r",
            "trigger": {"event_type": "x"},
            "activity": {"url": "http://127.0.0.1:9/"},
        },
        "/api/v1/webhooks": {"name": "w", "url": "http://127.0.0.1:9/"},
    }
    for path, body in bodies.items():
        for brand in (True, False, 1.5):
            resp = await h.client.post(path, json={**body, "ext_brand_id": brand})
            assert resp.status_code == 422, (path, brand, resp.text)
            assert resp.json()["field"] == "ext_brand_id"
    preview = {"webhook": {"url": "http://127.0.0.1:9/"}, "event": {"ext_brand_id": True}}
    resp = await h.client.post("/api/v1/webhooks/preview", json=preview)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == "event.ext_brand_id"
    # 5 and "5" stay one brand, kept as text.
    resp = await h.client.post(
        "/api/v1/journeys", json={**bodies["/api/v1/journeys"], "ext_brand_id": 5}
    )
    assert resp.status_code == 201 and resp.json()["ext_brand_id"] == "5"


async def test_an_old_version_kept_only_for_late_goals_is_no_load_problem_once_it_breaks(
    make_hookline: Any, receiver: Receiver
) -> None:
    """Its saved webhook may be deleted (nobody walks it); a restart then reports nothing."""
    h = await make_hookline()
    saved = await h.client.post("/api/v1/webhooks", json={"name": "w", "url": receiver.url("/w")})
    assert saved.status_code == 201, saved.text
    first = {"hello": {"type": "webhook", "activity": {"webhook_id": saved.json()["id"]}}}
    goal = {"event_type": "deposit_made", "within": "1d"}
    j = await create(h, journey(first, goal=goal))
    await h.post("/api/v1/events", spin_event())
    await receiver.wait_for(1, "/w")
    resp = await h.client.put(
        f"/api/v1/journeys/{j['id']}", json=journey({"hello": hook(receiver, "/v2")}, goal=goal)
    )
    assert resp.json()["version"] == 2
    gone = await h.client.delete(f"/api/v1/webhooks/{saved.json()['id']}")
    assert gone.status_code == 204, gone.text
    await h.stop()

    h = await make_hookline()
    health = (await h.client.get("/healthz")).json()
    assert health["problem_count"] == 0, health
    await h.post("/api/v1/events", spin_event("u-2"))
    await receiver.wait_for(1, "/v2")  # the current version runs
