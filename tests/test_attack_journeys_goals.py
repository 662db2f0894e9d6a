"""Journeys attacked through what they watch (a goal and an exit on one type) and who sees them."""

from __future__ import annotations

import sqlite3

import pytest

from hookline.journeys import (
    CAMPAIGN_CONVERTED,
    CAMPAIGN_FINISHED,
    FinishReason,
    InstanceStatus,
    enter,
    on_event,
)
from hookline.keys import Role
from tests.helpers import Hookline, spin_event
from tests.test_journeys import SPIN, simple
from tests.test_journeys_e2e import create, journey


@pytest.mark.parametrize(
    ("exit_on_goal", "reason"), [(True, FinishReason.GOAL), (False, FinishReason.EXITED)]
)
@pytest.mark.parametrize("control", [False, True])
def test_a_goal_event_that_is_also_an_exit_criterion_converts_before_the_user_leaves(
    exit_on_goal: bool, reason: FinishReason, control: bool
) -> None:
    j = simple(
        {"b1": {"type": "delay", "duration": "1h"}},
        goal={"event_type": "deposit", "exit_on_goal": exit_on_goal},
        exit_on=[{"event_type": "deposit"}],
        control_group={"percent": 100 if control else 0},
    )
    inst = enter(j, "jri_1", "u-1", None, SPIN, {}, now=0).instance
    assert inst.control_group is control
    step = on_event(j, inst, "deposit", {"amount": 5}, {}, now=10)
    assert step is not None
    assert step.instance.status is InstanceStatus.FINISHED
    assert step.instance.converted_at == 10
    # A control user's conversion ends its measure, whatever exit_on_goal says.
    assert step.instance.finish_reason is (FinishReason.GOAL if control else reason)
    assert [e.event_type for e in step.emitted] == [CAMPAIGN_CONVERTED, CAMPAIGN_FINISHED]


async def test_stats_count_a_conversion_by_an_event_that_is_also_an_exit_criterion(
    hookline: Hookline,
) -> None:
    j = await create(
        hookline,
        journey(
            {"wait": {"type": "delay", "duration": "1h"}},
            start="wait",
            goal={"event_type": "deposit_made", "exit_on_goal": False},
            exit_on=[{"event_type": "deposit_made"}],
        ),
    )
    resp = await hookline.post("/api/v1/events", spin_event())
    assert resp.status_code == 202, resp.text
    deposit = spin_event(event_type="deposit_made")
    resp = await hookline.post("/api/v1/events", deposit)
    assert resp.status_code == 202, resp.text
    stats = (await hookline.client.get(f"/api/v1/journeys/{j['id']}/stats")).json()
    assert stats["treatment"]["converted"] == 1, stats
    assert stats["treatment"]["conversion_rate"] == 1.0
    assert stats["finished"] == {"exited": 1}


async def test_a_brand_key_lists_no_instances_of_another_brand_left_in_its_journey(
    hookline: Hookline,
) -> None:
    j = await create(
        hookline,
        journey({"wait": {"type": "delay", "duration": "1h"}}, start="wait", ext_brand_id="b2"),
    )
    resp = await hookline.post("/api/v1/events", spin_event(ext_brand_id="b2"))
    assert resp.status_code == 202, resp.text
    # Its brand changed while a user of b2 was inside (an older hookline allowed it; now a
    # journey moves only with nobody inside): the stored brand becomes another journey's b1.
    other = await create(
        hookline,
        journey(
            {"wait": {"type": "delay", "duration": "1h"}},
            start="wait",
            name="other",
            ext_brand_id="b1",
        ),
    )
    with sqlite3.connect(hookline.runtime.settings.database_path) as db:
        db.execute(
            "UPDATE journeys SET ext_brand_id = (SELECT ext_brand_id FROM journeys WHERE id = ?) "
            "WHERE id = ?",
            (other["id"], j["id"]),
        )
    assert (await hookline.client.get(f"/api/v1/journeys/{j['id']}")).json()["ext_brand_id"] == "b1"
    _, admin = await hookline.runtime.keys.create(Role.ADMIN, (), "")
    _, own = await hookline.runtime.keys.create(Role.READ, ("b1",), "")
    path = f"/api/v1/journeys/{j['id']}/instances"
    listed = await hookline.client.get(
        path, params={"ext_brand_id": "b2"}, headers={"authorization": f"Bearer {admin}"}
    )
    assert len(listed.json()["data"]) == 1  # an admin of every brand sees it
    hidden = await hookline.client.get(
        path, params={"ext_brand_id": "b2"}, headers={"authorization": f"Bearer {own}"}
    )
    assert hidden.status_code == 404, hidden.text
    assert hidden.json()["field"] == "ext_brand_id"
    mine = await hookline.client.get(path, headers={"authorization": f"Bearer {own}"})
    assert mine.status_code == 200 and mine.json()["data"] == []
