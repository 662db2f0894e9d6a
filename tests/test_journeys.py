"""The journey domain: validation names the block and field; steps are a pure state machine."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hookline.errors import InvalidInput
from hookline.journeys import (
    CAMPAIGN_CONVERTED,
    CAMPAIGN_FINISHED,
    CAMPAIGN_STARTED,
    CompiledJourney,
    FinishReason,
    InstanceStatus,
    Journey,
    JourneyStatus,
    TimeOfDay,
    bucket,
    compile_journey,
    enter,
    in_control_group,
    may_enter,
    next_time_of_day,
    on_event,
    on_timer,
    stop,
)
from hookline.rules import SavedWebhook
from hookline.times import parse_duration
from hookline.webhooks import WebhookSpec

HOUR = 3_600_000


def issue_example() -> dict[str, Any]:
    """The definition of issue 9, as written there."""
    return {
        "entry": {
            "trigger": {"event_type": "minigame_spin_issued"},
            "conditions": {
                "all": [{"field": "event.minigame_spins_count", "op": "gte", "value": 1}]
            },
            "audience": {"all": [{"field": "state.core_country", "op": "ne", "value": "DE"}]},
            "mode": "once_while_active",
        },
        "control_group": {"percent": 0, "sticky": True},
        "goal": {
            "event_type": "deposit_made",
            "conditions": {"all": []},
            "within": "7d",
            "exit_on_goal": True,
        },
        "exit_on": [{"event_type": "user_blocked"}],
        "max_duration": "30d",
        "start": "hello",
        "blocks": {
            "hello": {
                "type": "webhook",
                "activity": {
                    "type": "webhook",
                    "url": "http://127.0.0.1:9/hook",
                    "body": '{"t": "{{event.saw_template_id}}", "j": "{{journey.name}}"}',
                },
                "next": "wait1",
            },
            "wait1": {"type": "delay", "duration": "2h", "next": "ask"},
            "ask": {
                "type": "wait_for_event",
                "event_type": "minigame_spin_issued",
                "conditions": {"all": []},
                "timeout": "1d",
                "next": "vip?",
                "on_timeout": "bye",
            },
            "vip?": {
                "type": "condition",
                "conditions": {
                    "all": [{"field": "state.ach_level_current", "op": "eq", "value": "gold"}]
                },
                "then": "split",
                "else": "bye",
            },
            "split": {
                "type": "split",
                "branches": [{"percent": 50, "next": "a"}, {"percent": 50, "next": "bye"}],
            },
            "a": {
                "type": "update_state",
                "set": {"last_campaign": "{{journey.name}}"},
                "next": "bye",
            },
            "bye": {"type": "exit"},
        },
    }


def compiled(
    definition: dict[str, Any] | None = None,
    webhooks: dict[str, SavedWebhook] | None = None,
    status: JourneyStatus = JourneyStatus.ACTIVE,
) -> CompiledJourney:
    journey = Journey(
        id="jrn_1",
        name="spin-welcome",
        status=status,
        definition=definition if definition is not None else issue_example(),
        created_at=0,
        updated_at=0,
    )
    return compile_journey(journey, webhooks or {})


def refused(definition: dict[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        compiled(definition)
    return info.value


def edited(**changes: Any) -> dict[str, Any]:
    d = copy.deepcopy(issue_example())
    for path, value in changes.items():
        node = d
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return d


SPIN = {"event_type": "minigame_spin_issued", "event_id": "evt_1", "saw_template_id": 12}


# --- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"),
    [("90s", 90_000), ("5m", 300_000), ("2h", 2 * HOUR), ("7d", 7 * 24 * HOUR), (1.5, 1500)],
)
def test_durations(value: Any, ms: int) -> None:
    assert parse_duration(value, "x") == ms


@pytest.mark.parametrize("value", ["2 hours", "-5s", 0, -1, True, None, "5y", [], "1e3s"])
def test_bad_durations_name_the_field(value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration(value, "blocks.wait1.duration")
    assert info.value.field == "blocks.wait1.duration"


# --- validation ----------------------------------------------------------------------


def test_issue_example_compiles() -> None:
    journey = compiled()
    assert journey.trigger == "minigame_spin_issued"
    assert journey.start == "hello"
    assert set(journey.blocks) == {"hello", "wait1", "ask", "vip?", "split", "a", "bye"}
    assert journey.watched_types() == {"minigame_spin_issued", "deposit_made", "user_blocked"}


@pytest.mark.parametrize(
    ("definition", "field", "words"),
    [
        (edited(blocks__bye={"type": "teleport"}), "blocks.bye.type", "expected one of"),
        (edited(blocks__wait1__next="nowhere"), "blocks.wait1.next", "not a block"),
        (edited(blocks__ask__on_timeout="gone"), "blocks.ask.on_timeout", "not a block"),
        (edited(**{"blocks__vip?__then": "gone"}), "blocks.vip?.then", "not a block"),
        (edited(**{"blocks__vip?__else": None}), "blocks.vip?.else", "needs then and else"),
        (
            edited(
                blocks__split__branches=[
                    {"percent": 50, "next": "a"},
                    {"percent": 40, "next": "bye"},
                ]
            ),
            "blocks.split.branches",
            "add up to 90",
        ),
        (
            edited(blocks__split__branches=[{"percent": 100, "next": "zz"}]),
            "blocks.split.branches[0].next",
            "not a block",
        ),
        (edited(blocks__orphan={"type": "exit"}), "blocks.orphan", "cannot be reached"),
        (edited(start="nope"), "start", "must name a block"),
        (edited(blocks__wait1__duration="2 hours"), "blocks.wait1.duration", "duration"),
        (edited(blocks__ask__timeout="soon"), "blocks.ask.timeout", "duration"),
        (edited(blocks__wait1__colour="red"), "blocks.wait1.colour", "unknown key"),
        (edited(max_duration="forever"), "max_duration", "duration"),
        (edited(goal__within=-3), "goal.within", "duration"),
        (edited(entry__mode="twice"), "entry.mode", "expected one of"),
        (
            edited(entry__trigger={"event_type": "bad type!"}),
            "entry.trigger.event_type",
            "event type",
        ),
        (edited(control_group={"percent": 120}), "control_group.percent", "0 to 100"),
        (
            edited(entry__conditions={"all": [{"field": "event.x", "op": "like", "value": 1}]}),
            "entry.conditions.all[0].op",
            "unknown operator",
        ),
        (
            edited(entry__audience={"all": [{"field": "user.x", "op": "eq", "value": 1}]}),
            "entry.audience.all[0].field",
            "unknown scope",
        ),
        (
            edited(
                **{
                    "blocks__vip?__conditions": {
                        "field": "journey.name",
                        "op": "regex",
                        "value": "(",
                    }
                }
            ),
            "blocks.vip?.conditions.value",
            "does not compile",
        ),
        (
            edited(
                blocks__hello__activity={"url": "http://127.0.0.1:9/", "body": '{"a": {{user.x}}}'}
            ),
            "blocks.hello.activity.body",
            "must start with",
        ),
        (
            edited(blocks__hello__activity={"url": "http://127.0.0.1:9/", "body": '{"a": '}),
            "blocks.hello.activity.body",
            "expected a JSON value",
        ),
        (edited(blocks__hello__activity={"body": "{}"}), "blocks.hello.activity.url", "url"),
        (
            edited(blocks__hello__activity={"webhook_id": "wh_missing"}),
            "blocks.hello.activity.webhook_id",
            "no saved webhook",
        ),
        (
            edited(blocks__hello__activity={"url": "http://127.0.0.1:9/", "method": "BREW"}),
            "blocks.hello.activity.method",
            "method must be one of",
        ),
        (edited(blocks__a__set={"x": "{{nope.y}}"}), "blocks.a.set", "must start with"),
        (edited(blocks__a__set=[]), "blocks.a.set", "object"),
        (edited(blocks__ask__event_type=None), "blocks.ask.event_type", "event type"),
        (edited(blocks__wait1={"type": "delay", "next": "ask"}), "blocks.wait1.duration", "either"),
        (
            edited(blocks__wait1={"type": "delay", "until": "25:00", "next": "ask"}),
            "blocks.wait1.until",
            "hh:mm",
        ),
        (
            edited(
                blocks__wait1={
                    "type": "delay",
                    "until": "09:00",
                    "time_zone": "Mars/Base",
                    "next": "ask",
                }
            ),
            "blocks.wait1.time_zone",
            "unknown time zone",
        ),
        (edited(exit_on={"event_type": "x"}), "exit_on", "list"),
        (edited(blocks={}), "blocks", "object of named blocks"),
        (edited(surprise=1), "surprise", "unknown key"),
    ],
)
def test_validation_errors_name_block_and_field(
    definition: dict[str, Any], field: str, words: str
) -> None:
    error = refused(definition)
    assert error.field == field, error.detail
    assert words in error.detail
    assert error.status == 422


def test_cycle_without_a_wait_is_refused() -> None:
    d = edited(blocks__a={"type": "update_state", "set": {"x": 1}, "next": "vip?"})
    error = refused(d)
    assert error.field is not None and error.field.startswith("blocks.")
    assert "cycle" in error.detail and "no delay or wait_for_event" in error.detail


def test_cycle_through_a_delay_is_allowed() -> None:
    d = edited(blocks__a={"type": "update_state", "set": {"x": 1}, "next": "wait1"})
    assert compiled(d).blocks["a"].next == "wait1"


def test_webhook_block_uses_a_saved_webhook() -> None:
    saved = SavedWebhook("wh_1", "crm", WebhookSpec(url="http://127.0.0.1:9/crm"), 0, 0, 1)
    d = edited(blocks__hello__activity={"webhook_id": "wh_1"})
    journey = compiled(d, {"wh_1": saved})
    assert journey.blocks["hello"].webhook_id == "wh_1"
    assert journey.webhook_ids == {"wh_1"}


def test_rule_scopes_stay_event_and_state() -> None:
    from hookline.conditions import compile_conditions
    from hookline.templates import TemplateMode, compile_template

    with pytest.raises(InvalidInput):
        compile_template("{{journey.name}}", TemplateMode.TEXT, field="body")
    with pytest.raises(InvalidInput):
        compile_conditions({"field": "last_event.x", "op": "eq", "value": 1})


# --- steps -----------------------------------------------------------------------------


def simple(blocks: dict[str, Any], start: str = "b1", **extra: Any) -> CompiledJourney:
    d: dict[str, Any] = {"entry": {"trigger": {"event_type": "spin"}}, "start": start}
    d["blocks"] = blocks
    d.update(extra)
    return compiled(d)


HOOK = {"type": "webhook", "activity": {"url": "http://127.0.0.1:9/h", "body": '{"a": 1}'}}


def test_entry_runs_until_a_delay_then_the_timer_moves_on() -> None:
    j = simple(
        {
            "b1": {**HOOK, "next": "d"},
            "d": {"type": "delay", "duration": "5m", "next": "b2"},
            "b2": {**HOOK},
        }
    )
    step = enter(j, "jri_1", "u-1", None, SPIN, {}, now=1000)
    assert [w.block for w in step.webhooks] == ["b1"]
    assert step.webhooks[0].context["event"]["saw_template_id"] == 12
    assert step.emitted[0].event_type == CAMPAIGN_STARTED
    inst = step.instance
    assert (inst.block, inst.due_at, inst.status) == ("d", 1000 + 300_000, InstanceStatus.ACTIVE)
    assert step.entered == ("b1", "d") and step.passed == ("b1",)
    assert on_timer(j, inst, {}, now=2000) is None  # not due yet
    later = on_timer(j, inst, {}, now=301_000)
    assert later is not None
    assert [w.block for w in later.webhooks] == ["b2"]
    assert later.webhooks[0].context["event"]["saw_template_id"] == 12  # still the entry event
    assert later.instance.finish_reason is FinishReason.COMPLETED
    assert later.emitted[-1].event_type == CAMPAIGN_FINISHED
    assert later.emitted[-1].payload["reason"] == "completed"


WAIT_JOURNEY = {
    "b1": {
        "type": "wait_for_event",
        "event_type": "deposit",
        "conditions": {"field": "last_event.amount", "op": "gte", "value": 10},
        "timeout": "1h",
        "next": "yes",
        "on_timeout": "no",
    },
    "yes": {**HOOK, "activity": {"url": "http://127.0.0.1:9/yes"}},
    "no": {**HOOK, "activity": {"url": "http://127.0.0.1:9/no"}},
}


def test_wait_for_event_matched_branch() -> None:
    j = simple(WAIT_JOURNEY)
    inst = enter(j, "jri_1", "u-1", None, SPIN, {}, now=0).instance
    assert (inst.waiting_for, inst.due_at) == ("deposit", HOUR)
    assert on_event(j, inst, "deposit", {"amount": 5}, {}, now=10) is None  # condition false
    assert on_event(j, inst, "other", {"amount": 50}, {}, now=10) is None
    step = on_event(j, inst, "deposit", {"amount": 50}, {}, now=10)
    assert step is not None
    assert [w.webhook.spec.url for w in step.webhooks] == ["http://127.0.0.1:9/yes"]
    assert step.webhooks[0].context["last_event"] == {"amount": 50}
    assert step.webhooks[0].context["event"] == SPIN


def test_wait_for_event_timeout_branch() -> None:
    j = simple(WAIT_JOURNEY)
    inst = enter(j, "jri_1", "u-1", None, SPIN, {}, now=0).instance
    step = on_timer(j, inst, {}, now=HOUR)
    assert step is not None
    assert [w.webhook.spec.url for w in step.webhooks] == ["http://127.0.0.1:9/no"]
    assert step.instance.finish_reason is FinishReason.COMPLETED


def test_a_wait_with_no_on_timeout_that_runs_out_finishes_as_timeout() -> None:
    """Not completed: the stats tell the users whose event never came from those who
    walked the flow to its end."""
    blocks = {**WAIT_JOURNEY, "b1": {**WAIT_JOURNEY["b1"]}}
    del blocks["b1"]["on_timeout"], blocks["no"]
    j = simple(blocks)
    inst = enter(j, "jri_1", "u-1", None, SPIN, {}, now=0).instance
    step = on_timer(j, inst, {}, now=HOUR)
    assert step is not None and step.webhooks == ()
    assert step.instance.finish_reason is FinishReason.TIMEOUT
    assert step.passed == ("b1",)
    done = on_event(
        j,
        enter(j, "jri_2", "u-2", None, SPIN, {}, now=0).instance,
        "deposit",
        {"amount": 50},
        {},
        now=10,
    )
    assert done is not None and done.instance.finish_reason is FinishReason.COMPLETED


def test_condition_block_reads_state() -> None:
    j = simple(
        {
            "b1": {
                "type": "condition",
                "conditions": {"field": "state.level", "op": "eq", "value": "gold"},
                "then": "gold",
                "else": "plain",
            },
            "gold": {**HOOK, "activity": {"url": "http://127.0.0.1:9/gold"}},
            "plain": {**HOOK, "activity": {"url": "http://127.0.0.1:9/plain"}},
        }
    )
    gold = enter(j, "jri_1", "u-1", None, SPIN, {"level": "gold"}, now=0)
    plain = enter(j, "jri_2", "u-2", None, SPIN, {"level": "tin"}, now=0)
    assert gold.webhooks[0].webhook.spec.url.endswith("/gold")
    assert plain.webhooks[0].webhook.spec.url.endswith("/plain")


def test_split_is_sticky_per_user_and_roughly_by_percent() -> None:
    j = simple(
        {
            "b1": {
                "type": "split",
                "branches": [{"percent": 30, "next": "x"}, {"percent": 70, "next": "y"}],
            },
            "x": {"type": "exit"},
            "y": {"type": "exit"},
        }
    )

    def branch(user: str, instance: str) -> str:
        step = enter(j, instance, user, None, SPIN, {}, now=0)
        return next(b for b in step.entered if b in ("x", "y"))

    assert branch("u-7", "jri_1") == branch("u-7", "jri_2")  # sticky: the user, not the entry
    picks = [branch(f"u-{i}", f"jri_{i}") for i in range(2000)]
    assert 0.25 < picks.count("x") / len(picks) < 0.35


def test_update_state_renders_journey_and_event_tags() -> None:
    j = simple(
        {
            "b1": {
                "type": "update_state",
                "set": {"last_campaign": "{{journey.name}}", "tpl": "{{event.saw_template_id}}"},
                "next": "b2",
            },
            "b2": {
                "type": "condition",
                "conditions": {"field": "state.last_campaign", "op": "eq", "value": "spin-welcome"},
                "then": "yes",
                "else": "no",
            },
            "yes": {"type": "exit"},
            "no": {"type": "exit"},
        }
    )
    step = enter(j, "jri_1", "u-1", None, SPIN, {}, now=0)
    assert step.state_patches == ({"last_campaign": "spin-welcome", "tpl": 12},)
    assert "yes" in step.entered  # a later block sees the state it set


def test_a_value_that_is_one_tag_keeps_its_type() -> None:
    event = {**SPIN, "amount": 12.5, "vip": True, "tags": ["a"], "name": "Ann"}
    values = {
        "amount": "{{event.amount}}",
        "vip": "{{event.vip}}",
        "tags": "{{event.tags}}",
        "none": "{{event.missing}}",
        "or": "{{event.missing|7}}",
        "text": "{{event.name}}",
        "said": "spent {{event.amount}}",
        "deep": {"list": ["{{event.amount}}", "x{{event.vip}}"]},
    }
    j = simple({"b1": {"type": "update_state", "set": values}})
    step = enter(j, "jri_1", "u-1", None, event, {}, now=0)
    assert step.state_patches == (
        {
            "amount": 12.5,
            "vip": True,
            "tags": ["a"],
            "none": None,
            "or": 7,
            "text": "Ann",
            "said": "spent 12.5",
            "deep": {"list": [12.5, "xtrue"]},
        },
    )


def test_a_fallback_in_a_longer_string_or_a_key_renders_as_written() -> None:
    """A tag inside a longer string is kept as written when the values become one JSON
    template: JSON-encoding it first escaped its fallback text, which then rendered as
    ``say \\"hi\\"`` with the backslashes."""
    values = {
        "said": 'x {{event.missing|say "hi"}}',
        "path": "{{event.missing|C:\\tmp}} y",
        "lines": "a {{event.missing|1\n2}}",
        'k {{event.missing|"q"}}': 1,
        "whole": '{{event.missing|say "hi"}}',
    }
    j = simple({"b1": {"type": "update_state", "set": values}})
    step = enter(j, "jri_1", "u-1", None, SPIN, {}, now=0)
    assert step.state_patches == (
        {
            "said": 'x say "hi"',
            "path": "C:\\tmp y",
            "lines": "a 1\n2",
            'k "q"': 1,
            "whole": 'say "hi"',
        },
    )


def test_emit_event_renders_its_payload() -> None:
    j = simple(
        {
            "b1": {
                "type": "emit_event",
                "event_type": "bonus_granted",
                "payload": {"by": "{{journey.id}}"},
            }
        }
    )
    step = enter(j, "jri_1", "u-1", None, SPIN, {}, now=0)
    types = [e.event_type for e in step.emitted]
    assert types == [CAMPAIGN_STARTED, "bonus_granted", CAMPAIGN_FINISHED]
    assert step.emitted[1].payload == {"by": "jrn_1"}


def test_exit_on_event_and_goal_conversion() -> None:
    blocks = {"b1": {"type": "delay", "duration": "1h", "next": "b2"}, "b2": {**HOOK}}
    goal = {"event_type": "deposit", "within": "2h", "exit_on_goal": False}
    j = simple(blocks, goal=goal, exit_on=[{"event_type": "blocked"}])
    inst = enter(j, "jri_1", "u-1", None, SPIN, {}, now=0).instance
    converted = on_event(j, inst, "deposit", {}, {}, now=10)
    assert converted is not None
    assert [e.event_type for e in converted.emitted] == [CAMPAIGN_CONVERTED]
    assert converted.instance.status is InstanceStatus.ACTIVE  # exit_on_goal false: goes on
    assert on_event(j, converted.instance, "deposit", {}, {}, now=20) is None  # once only
    exited = on_event(j, converted.instance, "blocked", {}, {}, now=30)
    assert exited is not None and exited.instance.finish_reason is FinishReason.EXITED


def test_goal_out_of_its_window_does_not_convert() -> None:
    j = simple(
        {"b1": {"type": "delay", "duration": "5h", "next": None}},
        goal={"event_type": "deposit", "within": "1h"},
    )
    inst = enter(j, "jri_1", "u-1", None, SPIN, {}, now=0).instance
    assert on_event(j, inst, "deposit", {}, {}, now=2 * HOUR) is None


def test_max_duration_times_out() -> None:
    j = simple({"b1": {"type": "delay", "duration": "5h"}}, max_duration="1h")
    inst = enter(j, "jri_1", "u-1", None, SPIN, {}, now=0).instance
    assert inst.due_at == HOUR  # the earlier of the delay and the deadline
    step = on_timer(j, inst, {}, now=HOUR)
    assert step is not None and step.instance.finish_reason is FinishReason.TIMEOUT


def test_control_group_runs_no_blocks_and_still_converts() -> None:
    goal = {"event_type": "deposit", "within": "1h"}
    j = simple({"b1": {**HOOK}}, goal=goal, control_group={"percent": 50})
    users = [f"u-{i}" for i in range(200)]
    control = [u for u in users if in_control_group(j, u, "jri_x")]
    assert 60 < len(control) < 140
    user = control[0]
    assert in_control_group(j, user, "jri_other")  # sticky by user
    step = enter(j, "jri_1", user, None, SPIN, {}, now=0)
    assert step.webhooks == ()
    assert step.emitted[0].payload["control_group"] is True
    assert step.instance.due_at == HOUR
    converted = on_event(j, step.instance, "deposit", {}, {}, now=5)
    assert converted is not None
    assert [e.event_type for e in converted.emitted] == [CAMPAIGN_CONVERTED, CAMPAIGN_FINISHED]
    assert converted.instance.finish_reason is FinishReason.GOAL


def test_entry_modes_and_statuses() -> None:
    j = compiled()
    ctx = {"event": {"minigame_spins_count": 2}, "state": {"core_country": "MT"}}
    assert may_enter(j, ctx, running=False, ever=False)
    assert not may_enter(j, ctx, running=True, ever=True)  # once_while_active
    assert may_enter(j, ctx, running=False, ever=True)
    assert not may_enter(j, {**ctx, "state": {"core_country": "DE"}}, running=False, ever=False)
    assert not may_enter(
        j, {**ctx, "event": {"minigame_spins_count": 0}}, running=False, ever=False
    )
    paused = compiled(status=JourneyStatus.PAUSED)
    assert not may_enter(paused, ctx, running=False, ever=False)
    lifetime = compiled(edited(entry__mode="once_in_lifetime"))
    assert not may_enter(lifetime, ctx, running=False, ever=True)
    every = compiled(edited(entry__mode="every_time"))
    assert may_enter(every, ctx, running=True, ever=True)


def test_stop_finishes_with_reason_stopped() -> None:
    j = compiled()
    inst = enter(j, "jri_1", "u-1", None, SPIN, {}, now=0).instance
    step = stop(j, inst, now=5)
    assert step.instance.finish_reason is FinishReason.STOPPED
    assert step.emitted[-1].payload["reason"] == "stopped"


def test_time_of_day_delay_uses_the_users_zone() -> None:
    until = TimeOfDay(9, 0, "state.tz", "UTC")
    noon_utc = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000 + 12 * HOUR
    # 09:00 UTC is past at noon: tomorrow 09:00.
    assert next_time_of_day(until, {}, noon_utc) == noon_utc + 21 * HOUR
    # In Tokyo (UTC+9) it is 21:00: next 09:00 Tokyo is 00:00 UTC tomorrow.
    assert next_time_of_day(until, {"tz": "Asia/Tokyo"}, noon_utc) == noon_utc + 12 * HOUR


def test_bucket_is_stable() -> None:
    assert bucket("a", "b") == bucket("a", "b")
    assert 0 <= bucket("x") < 100
