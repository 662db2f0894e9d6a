"""Rules that count, attacked: boundaries, hostile amounts, duplicates inside one batch."""

from __future__ import annotations

from typing import Any

import pytest

from hookline.events import now_ms
from tests.helpers import Hookline, Receiver
from tests.test_counters_e2e import DAY, PATH, counting_rule, delivered, deposit, send


async def create(h: Hookline, rule: dict[str, Any]) -> dict[str, Any]:
    resp = await h.post("/api/v1/rules", rule)
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def test_a_frequency_window_ends_exactly_per_after_a_fire(
    hookline: Hookline, receiver: Receiver
) -> None:
    await create(hookline, counting_rule(receiver, frequency={"max": 1, "per": "1d"}))
    t = now_ms() - 3 * DAY
    assert await send(hookline, deposit(t), deposit(t + DAY - 1), deposit(t + DAY)) == [1, 0, 1]
    await delivered(hookline, receiver, 2)


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"frequency": {"max": 10**30, "per": "1d"}}, "frequency.max"),
        ({"frequency": {"max": 1001, "per": "1d"}}, "frequency.max"),
        ({"frequency": {"max": 1.5, "per": "1d"}}, "frequency.max"),
        ({"frequency": {"max": 1, "per": "0s"}}, "frequency.per"),
        ({"accumulate": {"count": 3, "window": "0s"}}, "accumulate.window"),
        ({"accumulate": {"count": 3, "window": 0}}, "accumulate.window"),
        ({"accumulate": {"sum": "event.amount", "reach": 10**16}}, "accumulate.reach"),
        ({"accumulate": {"sum": "event.amount", "reach": 0}}, "accumulate.reach"),
        ({"accumulate": {"sum": "event.amount", "reach": -5}}, "accumulate.reach"),
        ({"accumulate": {"sum": "event.amount", "reach": "100"}}, "accumulate.reach"),
        ({"accumulate": {"sum": "state.amount", "reach": 1}}, "accumulate.sum"),
        ({"once_per_user": "yes"}, "once_per_user"),
    ],
)
async def test_limits_that_cannot_run_are_422_naming_the_field(
    hookline: Hookline, receiver: Receiver, limits: dict[str, Any], field: str
) -> None:
    resp = await hookline.post("/api/v1/rules", counting_rule(receiver, **limits))
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field


async def test_sum_with_floats_huge_ints_negatives_and_strings(
    hookline: Hookline, receiver: Receiver
) -> None:
    await create(hookline, counting_rule(receiver, accumulate={"sum": "event.amount", "reach": 1}))
    t = now_ms() - DAY
    got = await send(
        hookline,
        deposit(t, amount=0.1),
        deposit(t + 1, amount="0.9"),  # text: does not count
        deposit(t + 2, amount=[1]),
        deposit(t + 3, amount=None),
        deposit(t + 4, amount=True),
        deposit(t + 5, amount=0.2),
        deposit(t + 6, amount=0.7),  # 0.1 + 0.2 + 0.7 is 1 exactly
        deposit(t + 7, amount=-(2**63)),
        deposit(t + 8, amount=2**64 - 1),  # -2**63 + 2**64 - 1 reaches 1 with room to spare
        deposit(t + 9, amount=1e300),
        deposit(t + 10, amount=5e-324),
    )
    assert got == [0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0]
    await delivered(hookline, receiver, 3)


async def test_once_per_user_in_one_batch_with_duplicate_eids_fires_once(
    hookline: Hookline, receiver: Receiver
) -> None:
    await create(hookline, counting_rule(receiver, once_per_user=True))
    t = now_ms() - DAY
    batch = [{**deposit(t), "eid": "e-1"}, {**deposit(t), "eid": "e-1"}, deposit(t + 1)]
    batch.append(deposit(t + 2))
    resp = await hookline.post("/api/v1/events", batch)
    assert resp.status_code == 202, resp.text
    events = resp.json()["events"]
    assert [len(e["deliveries"]) for e in events] == [1, 1, 0, 0], events
    assert events[1]["duplicate"] is True
    assert events[0]["deliveries"] == events[1]["deliveries"]
    await delivered(hookline, receiver, 1)


async def test_accumulate_count_across_one_batch_fires_on_every_third(
    hookline: Hookline, receiver: Receiver
) -> None:
    await create(hookline, counting_rule(receiver, accumulate={"count": 3}))
    t = now_ms() - DAY
    resp = await hookline.post("/api/v1/events", [deposit(t + i) for i in range(7)])
    assert [len(e["deliveries"]) for e in resp.json()["events"]] == [0, 0, 1, 0, 0, 1, 0]
    await delivered(hookline, receiver, 2)


async def test_a_rule_changed_between_two_events_counts_each_by_the_rule_it_met(
    hookline: Hookline, receiver: Receiver
) -> None:
    rule = await create(hookline, counting_rule(receiver, accumulate={"count": 2}))
    t = now_ms() - DAY
    assert await send(hookline, deposit(t)) == [0]
    resp = await hookline.client.patch(
        f"/api/v1/rules/{rule['id']}", json={"accumulate": {"count": 1}}
    )
    assert resp.status_code == 200, resp.text
    assert await send(hookline, deposit(t + 1)) == [1]  # counts start over with count 1
    resp = await hookline.client.patch(f"/api/v1/rules/{rule['id']}", json={"accumulate": None})
    assert resp.status_code == 200, resp.text
    assert await send(hookline, deposit(t + 2), deposit(t + 3)) == [1, 1]
    await delivered(hookline, receiver, 3)
    assert all(r.path == PATH for r in receiver.requests)
