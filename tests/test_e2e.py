"""End to end: hookline over real HTTP, delivering to a real receiver on 127.0.0.1."""

from __future__ import annotations

from tests.helpers import Hookline, Receiver, example_rule, spin_event


async def test_rule_event_delivers_rendered_body(hookline: Hookline, receiver: Receiver) -> None:
    await hookline.create_rule(activity={"url": receiver.url("/crm")})
    await hookline.client.patch("/api/v1/users/u-1/state", json={"user_id": 77, "core_sm_brand_id": 5})
    resp = await hookline.post("/api/v1/events", spin_event())
    assert resp.status_code == 202, resp.text
    (got,) = await receiver.wait_for(1)
    assert got.method == "POST"
    assert got.headers["x-api-key"] == "k-123"
    assert got.json() == {
        "saw_template_id": "12",
        "minigame_spins_count": "3",
        "smartico_user_id": "77",
        "user_ext_id": "u-1",
        "brand": "5",
    }
    delivery_id = resp.json()["events"][0]["deliveries"][0]
    assert got.headers["webhook-id"] == delivery_id
    assert got.headers["user-agent"].startswith("hookline/")
    await hookline.idle()
    detail = (await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")).json()
    assert detail["status"] == "succeeded"
    assert [a["status_code"] for a in detail["attempts"]] == [200]


async def test_500_twice_then_200_is_three_attempts_one_webhook_id(
    hookline: Hookline, receiver: Receiver
) -> None:
    receiver.script["/flaky"] = [500, 500]
    await hookline.create_rule(activity={"url": receiver.url("/flaky")})
    resp = await hookline.post("/api/v1/events", spin_event())
    got = await receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    await hookline.idle()
    delivery_id = resp.json()["events"][0]["deliveries"][0]
    detail = (await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")).json()
    assert detail["status"] == "succeeded"
    assert [a["status_code"] for a in detail["attempts"]] == [500, 500, 200]
    assert example_rule()["name"] == "spin-to-crm"
