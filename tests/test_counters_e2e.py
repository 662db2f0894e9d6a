"""Rules that count, end to end: hookline served over HTTP, a real receiver on 127.0.0.1.

Time moves by the events' own ``event_date`` (in the past: a date after arrival counts at
arrival), never by sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from hookline.api.models import RuleOut, RuleValidation
from hookline.applyfile import Change, ChangeKind, plan
from hookline.events import now_ms
from hookline.rulefile import RULES, check
from tests.helpers import Hookline, Receiver, example_rule

MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]

HOUR = 3_600_000
DAY = 24 * HOUR
PATH = "/count"


def counting_rule(receiver: Receiver, name: str = "deposits", **limits: Any) -> dict[str, Any]:
    return example_rule(
        name=name,
        trigger={"event_type": "deposit"},
        conditions=None,
        activity={"url": receiver.url(PATH), "body": '{"user": "{{state.user_ext_id}}"}'},
        **limits,
    )


def deposit(
    at: int, user: str = "u-1", brand: str | None = "brand-1", **payload: Any
) -> dict[str, Any]:
    return {
        "event_type": "deposit",
        "user_ext_id": user,
        "ext_brand_id": brand,
        "event_date": at,
        "payload": payload,
    }


async def send(h: Hookline, *events: dict[str, Any]) -> list[int]:
    """Post the events one request each, in order; how many deliveries each one caused."""
    counts = []
    for event in events:
        resp = await h.post("/api/v1/events", event)
        assert resp.status_code == 202, resp.text
        counts.append(len(resp.json()["events"][0]["deliveries"]))
    return counts


async def delivered(h: Hookline, receiver: Receiver, expected: int) -> None:
    """Exactly ``expected`` requests reach the receiver (all sent, none more)."""
    if expected:
        await receiver.wait_for(expected, PATH)
    await h.idle()
    assert len(receiver.on(PATH)) == expected


@pytest.fixture
def base() -> int:
    return now_ms() - 30 * DAY


async def test_once_per_user_fires_once_across_many_events_and_a_restart(
    make_hookline: MakeHookline, receiver: Receiver, base: int
) -> None:
    first = await make_hookline()
    resp = await first.post("/api/v1/rules", counting_rule(receiver, once_per_user=True))
    assert resp.status_code == 201, resp.text
    assert resp.json()["once_per_user"] is True
    assert await send(first, *(deposit(base + i) for i in range(5))) == [1, 0, 0, 0, 0]
    assert await send(first, deposit(base, user="u-2")) == [1]
    await delivered(first, receiver, 2)
    await first.stop()

    again = await make_hookline()
    assert await send(again, deposit(base + DAY), deposit(base + DAY, user="u-2")) == [0, 0]
    assert await send(again, deposit(base + DAY, user="u-3")) == [1]
    await delivered(again, receiver, 3)


async def test_frequency_two_per_day_fires_two_of_five_then_again_after_the_day(
    hookline: Hookline, receiver: Receiver, base: int
) -> None:
    rule = counting_rule(receiver, frequency={"max": 2, "per": "1d"})
    assert (await hookline.post("/api/v1/rules", rule)).status_code == 201
    sent = await send(hookline, *(deposit(base + i * HOUR) for i in range(5)))
    assert sent == [1, 1, 0, 0, 0]
    # A day after the first fire, one more fits; a day after the second, another.
    assert await send(hookline, deposit(base + DAY), deposit(base + DAY + 1)) == [1, 0]
    assert await send(hookline, deposit(base + DAY + HOUR)) == [1]
    await delivered(hookline, receiver, 4)


async def test_accumulate_count_three_fires_on_the_third_and_sixth(
    hookline: Hookline, receiver: Receiver, base: int
) -> None:
    rule = counting_rule(receiver, accumulate={"count": 3})
    assert (await hookline.post("/api/v1/rules", rule)).status_code == 201
    sent = await send(hookline, *(deposit(base + i) for i in range(7)))
    assert sent == [0, 0, 1, 0, 0, 1, 0]
    await delivered(hookline, receiver, 2)


async def test_sum_reach_100_fires_on_30_50_40_then_starts_over(
    hookline: Hookline, receiver: Receiver, base: int
) -> None:
    rule = counting_rule(receiver, accumulate={"sum": "event.amount", "reach": 100})
    assert (await hookline.post("/api/v1/rules", rule)).status_code == 201
    amounts = [30, 50, 40, 30, 50]
    sent = await send(hookline, *(deposit(base + i, amount=a) for i, a in enumerate(amounts)))
    assert sent == [0, 0, 1, 0, 0]
    # Missing, text and null amounts neither count nor fire; 20 more reaches 100 again.
    odd = [deposit(base + 9), deposit(base + 10, amount="20"), deposit(base + 11, amount=None)]
    assert await send(hookline, *odd) == [0, 0, 0]
    assert await send(hookline, deposit(base + 12, amount=20)) == [1]
    await delivered(hookline, receiver, 2)


async def test_counting_starts_over_when_the_window_since_the_first_event_passed(
    hookline: Hookline, receiver: Receiver, base: int
) -> None:
    rule = counting_rule(receiver, accumulate={"count": 3, "window": "1h"})
    assert (await hookline.post("/api/v1/rules", rule)).status_code == 201
    sent = await send(hookline, deposit(base), deposit(base + 30 * 60_000), deposit(base + HOUR))
    assert sent == [0, 0, 0]  # the third came an hour after the first: a new count of one
    assert await send(hookline, deposit(base + HOUR + 1), deposit(base + HOUR + 2)) == [0, 1]
    await delivered(hookline, receiver, 1)


async def test_the_same_user_id_in_two_brands_is_counted_twice(
    hookline: Hookline, receiver: Receiver, base: int
) -> None:
    rule = counting_rule(receiver, accumulate={"count": 2})
    assert (await hookline.post("/api/v1/rules", rule)).status_code == 201
    a, b, none = (deposit(base, brand="A"), deposit(base, brand="B"), deposit(base, brand=None))
    assert await send(hookline, a, b, none) == [0, 0, 0]
    assert await send(hookline, {**b, "event_date": base + 1}) == [1]
    assert await send(hookline, {**a, "event_date": base + 1}) == [1]
    counter = await hookline.runtime.store.get_counter(_rule_id(hookline), "u-1", None)
    assert counter is not None and counter.count == 1


def _rule_id(h: Hookline) -> str:
    (compiled,) = h.runtime.engine.index.by_type["deposit"]
    return compiled.rule.id


async def test_a_resent_eid_is_not_counted_again(
    hookline: Hookline, receiver: Receiver, base: int
) -> None:
    rule = counting_rule(receiver, accumulate={"count": 2})
    assert (await hookline.post("/api/v1/rules", rule)).status_code == 201
    once = {**deposit(base), "eid": "dep-1"}
    resp = await hookline.post("/api/v1/events", [once, once])
    assert [e["duplicate"] for e in resp.json()["events"]] == [False, True]
    again = await hookline.post("/api/v1/events", once)
    assert again.json()["events"][0]["duplicate"] is True
    assert again.json()["events"][0]["deliveries"] == []
    counter = await hookline.runtime.store.get_counter(_rule_id(hookline), "u-1", "brand-1")
    assert counter is not None and counter.count == 1
    assert await send(hookline, {**deposit(base + 1), "eid": "dep-2"}) == [1]
    await delivered(hookline, receiver, 1)


async def test_many_concurrent_events_of_one_user_fire_a_once_rule_exactly_once(
    hookline: Hookline, receiver: Receiver, base: int
) -> None:
    rule = counting_rule(receiver, once_per_user=True)
    assert (await hookline.post("/api/v1/rules", rule)).status_code == 201
    answers = await asyncio.gather(
        *(hookline.post("/api/v1/events", deposit(base + i)) for i in range(60))
    )
    assert all(a.status_code == 202 for a in answers)
    caused = [len(a.json()["events"][0]["deliveries"]) for a in answers]
    assert sorted(caused) == [0] * 59 + [1]
    await delivered(hookline, receiver, 1)
    listed = await hookline.client.get("/api/v1/deliveries", params={"rule_id": _rule_id(hookline)})
    assert len(listed.json()["data"]) == 1


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"frequency": {"max": 0, "per": "1d"}}, "frequency.max"),
        ({"frequency": {"max": "two", "per": "1d"}}, "frequency.max"),
        ({"frequency": {"max": 2}}, "frequency.per"),
        ({"frequency": {"max": 2, "per": "1 day"}}, "frequency.per"),
        ({"accumulate": {"count": 3, "sum": "event.amount", "reach": 9}}, "accumulate.sum"),
        ({"accumulate": {"sum": "event.amount"}}, "accumulate.reach"),
        ({"accumulate": {"sum": "amount", "reach": 9}}, "accumulate.sum"),
        ({"accumulate": {"count": 3, "window": -1}}, "accumulate.window"),
        ({"accumulate": {"cont": 3}}, "accumulate.cont"),
        ({"once_per_user": "yes"}, "once_per_user"),
    ],
)
async def test_limits_that_cannot_run_are_refused_when_saved_naming_the_field(
    hookline: Hookline, receiver: Receiver, limits: dict[str, Any], field: str
) -> None:
    for path in ("/api/v1/rules", "/api/v1/rules/validate"):
        resp = await hookline.post(path, counting_rule(receiver, **limits))
        assert resp.status_code == 422, resp.text
        assert resp.json()["field"] == field
    assert (await hookline.client.get("/api/v1/rules")).json()["data"] == []


async def test_validate_and_answers_show_the_limits_as_written(
    hookline: Hookline, receiver: Receiver
) -> None:
    limits: dict[str, Any] = {
        "once_per_user": False,
        "frequency": {"max": 2, "per": "1d"},
        "accumulate": {"sum": "event.amount", "reach": 99.5, "window": 3600},
    }
    resp = await hookline.post("/api/v1/rules/validate", counting_rule(receiver, **limits))
    assert resp.status_code == 200, resp.text
    assert {k: resp.json()["rule"][k] for k in limits} == limits
    RuleValidation.model_validate(resp.json())  # as OpenAPI documents it
    created = (await hookline.post("/api/v1/rules", counting_rule(receiver, **limits))).json()
    stored = (await hookline.client.get(f"/api/v1/rules/{created['id']}")).json()
    assert {k: stored[k] for k in limits} == limits
    RuleOut.model_validate(stored)


async def test_changing_accumulate_restarts_counts_other_changes_keep_them(
    hookline: Hookline, receiver: Receiver, base: int
) -> None:
    rule = (
        await hookline.post("/api/v1/rules", counting_rule(receiver, accumulate={"count": 3}))
    ).json()
    url = f"/api/v1/rules/{rule['id']}"
    assert await send(hookline, deposit(base), deposit(base + 1)) == [0, 0]
    patched = await hookline.client.patch(url, json={"description": "three deposits"})
    assert patched.status_code == 200
    assert await send(hookline, deposit(base + 2)) == [1]  # kept: the third fires
    assert await send(hookline, deposit(base + 3), deposit(base + 4)) == [0, 0]
    patched = await hookline.client.patch(url, json={"accumulate": {"count": 3, "window": "1d"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["accumulate"] == {"count": 3, "window": "1d"}
    assert await send(hookline, deposit(base + 5), deposit(base + 6)) == [0, 0]  # restarted
    assert await send(hookline, deposit(base + 7)) == [1]
    removed = await hookline.client.patch(url, json={"accumulate": None})
    assert removed.json()["accumulate"] is None
    assert await send(hookline, deposit(base + 8)) == [1]  # counts nothing: every event fires
    await delivered(hookline, receiver, 3)


async def test_a_user_who_got_a_once_rule_keeps_it_across_changes_of_the_limits(
    hookline: Hookline, receiver: Receiver, base: int
) -> None:
    created = await hookline.post("/api/v1/rules", counting_rule(receiver, once_per_user=True))
    url = f"/api/v1/rules/{created.json()['id']}"
    assert await send(hookline, deposit(base)) == [1]
    put = counting_rule(receiver, once_per_user=True, frequency={"max": 5, "per": "1h"})
    assert (await hookline.client.put(url, json=put)).status_code == 200
    assert await send(hookline, deposit(base + 1), deposit(base + 1, user="u-2")) == [0, 1]
    await delivered(hookline, receiver, 2)


async def test_deleting_a_rule_deletes_its_counters(
    hookline: Hookline, receiver: Receiver, base: int
) -> None:
    rule = counting_rule(receiver, accumulate={"count": 5})
    created = (await hookline.post("/api/v1/rules", rule)).json()
    assert await send(hookline, deposit(base), deposit(base, user="u-2")) == [0, 0]
    store = hookline.runtime.store
    assert await store.get_counter(created["id"], "u-1", "brand-1") is not None
    assert (await hookline.client.delete(f"/api/v1/rules/{created['id']}")).status_code == 204
    for user in ("u-1", "u-2"):
        assert await store.get_counter(created["id"], user, "brand-1") is None


async def test_an_unreadable_counter_counts_as_empty_and_is_replaced(
    make_hookline: MakeHookline,
    receiver: Receiver,
    base: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = await make_hookline()
    rule = counting_rule(receiver, accumulate={"count": 2})
    created = (await h.post("/api/v1/rules", rule)).json()
    assert await send(h, deposit(base)) == [0]
    await h.stop()
    with sqlite3.connect(tmp_path / "data" / "hookline.db") as db:
        assert db.execute("UPDATE rule_counters SET state = x'7b6e6f'").rowcount == 1
    db.close()
    h = await make_hookline()
    with caplog.at_level(logging.ERROR, logger="hookline.store"):
        assert await send(h, deposit(base + 1)) == [0]  # counted anew: one, not two
    assert any("cannot be read" in r.getMessage() for r in caplog.records)
    assert await send(h, deposit(base + 2)) == [1]
    counter = await h.runtime.store.get_counter(created["id"], "u-1", "brand-1")
    assert counter is not None and counter.count == 0
    await delivered(h, receiver, 1)


async def test_a_database_from_before_counting_opens_and_counts(
    make_hookline: MakeHookline, receiver: Receiver, base: int, tmp_path: Path
) -> None:
    h = await make_hookline()
    plain = (await h.post("/api/v1/rules", counting_rule(receiver, name="plain"))).json()
    await h.stop()
    with sqlite3.connect(tmp_path / "data" / "hookline.db") as db:
        db.execute("DROP TABLE rule_counters")
        db.execute("ALTER TABLE rules DROP COLUMN limits")
        db.execute("ALTER TABLE rules DROP COLUMN counting_epoch")
    db.close()
    h = await make_hookline()
    stored = (await h.client.get(f"/api/v1/rules/{plain['id']}")).json()
    assert (stored["once_per_user"], stored["frequency"], stored["accumulate"]) == (
        False,
        None,
        None,
    )
    put = counting_rule(receiver, name="plain", once_per_user=True)
    assert (await h.client.put(f"/api/v1/rules/{plain['id']}", json=put)).status_code == 200
    assert await send(h, deposit(base), deposit(base + 1)) == [1, 0]


def test_rules_apply_checks_limits_without_a_server() -> None:
    rule = example_rule(frequency={"max": 0, "per": "1d"})
    (problem,) = check([rule])
    assert problem.startswith('rule "spin-to-crm": frequency.max:')
    assert check([example_rule(accumulate={"count": 3, "window": "7d"}, once_per_user=True)]) == []


async def test_rules_apply_sees_a_changed_limit_and_nothing_else(
    hookline: Hookline, receiver: Receiver
) -> None:
    written = counting_rule(receiver, frequency={"max": 2, "per": "1d"}, once_per_user=True)
    assert (await hookline.post("/api/v1/rules", written)).status_code == 201

    async def changes(rule: dict[str, Any]) -> list[Change]:
        normal = (await hookline.post("/api/v1/rules/validate", rule)).json()["rule"]
        stored = (await hookline.client.get("/api/v1/rules")).json()["data"]
        return plan(RULES, [(rule, normal)], stored, prune=False)

    (same,) = await changes(written)
    assert same.kind == ChangeKind.UNCHANGED
    (longer,) = await changes({**written, "frequency": {"max": 2, "per": "2d"}})
    assert longer.kind == ChangeKind.UPDATE
    assert [(f.path, f.old, f.new) for f in longer.fields] == [("frequency.per", "1d", "2d")]
    left_out = {k: v for k, v in written.items() if k != "frequency"}
    (removed,) = await changes(left_out)
    assert [(f.path, f.new) for f in removed.fields] == [("frequency", None)]


async def test_a_rule_whose_stored_limits_cannot_be_read_is_skipped_and_reported(
    make_hookline: MakeHookline, receiver: Receiver, base: int, tmp_path: Path
) -> None:
    h = await make_hookline()
    rule = counting_rule(receiver, frequency={"max": 2, "per": "1d"})
    created = (await h.post("/api/v1/rules", rule)).json()
    await h.stop()
    with sqlite3.connect(tmp_path / "data" / "hookline.db") as db:
        broken = b'{"frequency": {"max": 0, "per": "1d"}}'
        assert db.execute("UPDATE rules SET limits = ?", (broken,)).rowcount == 1
    db.close()
    h = await make_hookline()
    health = (await h.client.get("/healthz")).json()
    assert [p["id"] for p in health["problems"]] == [created["id"]]
    assert "max is a whole number from 1 to 1,000" in health["problems"][0]["detail"]
    assert await send(h, deposit(base)) == [0]  # skipped, not fired without its cap
    assert (await h.client.delete(f"/api/v1/rules/{created['id']}")).status_code == 204
