"""Journeys like rules: ETag and If-Match on every write, writes serialised, and saved
webhooks that journeys call followed at once and kept while in use."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from hookline.journeys import Journey, JourneyStatus, saved_webhooks_used, successor
from tests.helpers import Hookline, Receiver, spin_event
from tests.test_journeys_e2e import create, hook, instances, journey


def _error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["code"] == code, body
    return body


async def _webhook(h: Hookline, name: str, url: str) -> dict[str, Any]:
    resp = await h.post("/api/v1/webhooks", {"name": name, "url": url})
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


def _draft(**more: Any) -> dict[str, Any]:
    blocks = {"hello": {"type": "webhook", "activity": {"url": "http://127.0.0.1:9/j"}}}
    return journey(blocks, **{"status": "draft", **more})


async def test_journeys_carry_a_revision_as_etag_and_a_stale_if_match_is_412(
    hookline: Hookline,
) -> None:
    h = hookline
    created = await h.post("/api/v1/journeys", _draft())
    assert created.status_code == 201, created.text
    assert created.json()["revision"] == 1 and created.headers["etag"] == '"1"'
    path = f"/api/v1/journeys/{created.json()['id']}"
    assert (await h.client.get(path)).headers["etag"] == '"1"'

    active = await h.client.patch(path, json={"status": "active"}, headers={"if-match": '"1"'})
    assert active.status_code == 200, active.text
    # A status change is a new revision, not a new version of the definition.
    assert active.json()["version"] == 1 and active.json()["revision"] == 2
    assert active.headers["etag"] == '"2"'

    for resp in (
        await h.client.put(path, json=_draft(status="paused"), headers={"if-match": '"1"'}),
        await h.client.patch(path, json={"status": "paused"}, headers={"if-match": '"1"'}),
        await h.client.delete(path, headers={"if-match": '"1"'}),
    ):
        body = _error(resp, 412, "precondition_failed")
        assert body["field"] == "If-Match" and '"2"' in body["detail"]
    assert (await h.client.get(path)).json()["status"] == "active"

    changed = _draft(status="active", description="changed")
    changed["blocks"]["hello"]["activity"]["url"] = "http://127.0.0.1:9/j2"
    put = await h.client.put(path, json=changed, headers={"if-match": '"2"'})
    assert put.status_code == 200, put.text
    assert (put.json()["version"], put.json()["revision"]) == (2, 3)
    _error(await h.client.patch(path, json={}, headers={"if-match": "nope"}), 400, "bad_request")
    assert (await h.client.delete(path, headers={"if-match": '"3"'})).status_code == 204
    _error(await h.client.patch(path, json={}, headers={"if-match": "*"}), 404, "not_found")


async def test_parallel_patches_with_if_match_one_wins_per_revision_none_lost(
    hookline: Hookline,
) -> None:
    h = hookline
    created = await h.post("/api/v1/journeys", _draft())
    path = f"/api/v1/journeys/{created.json()['id']}"
    applied: list[str] = []
    refused = 0
    for round_ in range(4):
        etag = (await h.client.get(path)).headers["etag"]
        answers = await asyncio.gather(
            *(
                h.client.patch(
                    path, json={"description": f"{round_}-{i}"}, headers={"if-match": etag}
                )
                for i in range(8)
            )
        )
        codes = sorted(a.status_code for a in answers)
        assert codes == [200] + [412] * 7, [a.text for a in answers]
        winner = next(a for a in answers if a.status_code == 200)
        applied.append(winner.json()["description"])
        refused += codes.count(412)
        now = (await h.client.get(path)).json()
        # The winner's write is what is stored: no 200 was overwritten by another.
        assert now == winner.json() and now["revision"] == round_ + 2
    assert len(applied) == 4 and refused == 28


async def test_parallel_patches_without_if_match_apply_one_after_another(
    hookline: Hookline,
) -> None:
    h = hookline
    created = await h.post("/api/v1/journeys", _draft())
    path = f"/api/v1/journeys/{created.json()['id']}"
    answers = await asyncio.gather(
        *(h.client.patch(path, json={"description": str(i)}) for i in range(10))
    )
    assert all(a.status_code == 200 for a in answers)
    assert sorted(a.json()["revision"] for a in answers) == list(range(2, 12))
    assert (await h.client.get(path)).json()["revision"] == 11


async def test_a_webhook_block_follows_its_saved_webhook_changed_during_a_delay(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    saved = await _webhook(h, "crm", receiver.url("/old"))
    j = await create(
        h,
        journey(
            {
                "hello": {"type": "webhook", "activity": {"webhook_id": saved["id"]}, "next": "w"},
                "w": {"type": "delay", "duration": 0.5, "next": "again"},
                "again": {"type": "webhook", "activity": {"webhook_id": saved["id"]}},
            }
        ),
    )
    await h.post("/api/v1/events", spin_event("u-moving"))
    await receiver.wait_for(1, "/old")
    (waiting,) = await instances(h, j["id"], status="active")
    assert waiting["block"] == "w"
    put = await h.client.put(
        f"/api/v1/webhooks/{saved['id']}",
        json={"name": "crm", "url": receiver.url("/new"), "headers": {"X-V": "2"}},
    )
    assert put.status_code == 200, put.text
    (second,) = await receiver.wait_for(1, "/new")
    assert second.headers["x-v"] == "2"
    assert len(receiver.on("/old")) == 1


async def test_deleting_a_saved_webhook_a_journey_calls_is_409_naming_it(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    saved = await _webhook(h, "crm", receiver.url("/x"))
    blocks = {"hello": {"type": "webhook", "activity": {"webhook_id": saved["id"]}}}
    j = await create(h, journey(blocks, status="draft"))
    body = _error(await h.client.delete(f"/api/v1/webhooks/{saved['id']}"), 409, "conflict")
    assert body["field"] == "webhook_id" and "spin-welcome" in body["detail"]
    assert (await h.client.delete(f"/api/v1/journeys/{j['id']}")).status_code == 204
    assert (await h.client.delete(f"/api/v1/webhooks/{saved['id']}")).status_code == 204


async def test_an_older_version_with_users_inside_keeps_its_saved_webhook(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    saved = await _webhook(h, "crm", receiver.url("/saved"))
    first = {
        "hello": hook(receiver, "/hi", next="w"),
        "w": {"type": "delay", "duration": 60, "next": "again"},
        "again": {"type": "webhook", "activity": {"webhook_id": saved["id"]}},
    }
    j = await create(h, journey(first))
    await h.post("/api/v1/events", spin_event("u-inside"))
    await receiver.wait_for(1, "/hi")
    second = {**first, "again": hook(receiver, "/inline")}
    put = await h.client.put(f"/api/v1/journeys/{j['id']}", json=journey(second))
    assert put.json()["version"] == 2
    body = _error(await h.client.delete(f"/api/v1/webhooks/{saved['id']}"), 409, "conflict")
    assert "spin-welcome (version 1, users inside)" in body["detail"], body
    stop = await h.client.patch(f"/api/v1/journeys/{j['id']}", json={"status": "stopped"})
    assert stop.status_code == 200
    assert (await h.client.delete(f"/api/v1/webhooks/{saved['id']}")).status_code == 204


def test_successor_is_a_new_version_only_for_a_changed_definition_that_ran() -> None:
    base = Journey("jrn_1", "j", JourneyStatus.ACTIVE, {"start": "a"}, 1, 1, version=3)
    assert successor(base, base).version == 3
    changed = successor(base, Journey("x", "j", JourneyStatus.ACTIVE, {"start": "b"}, 2, 2))
    assert (changed.id, changed.version) == ("jrn_1", 4)
    draft = Journey("jrn_2", "j", JourneyStatus.DRAFT, {"start": "a"}, 1, 1)
    assert successor(draft, Journey("x", "j", JourneyStatus.DRAFT, {"s": 1}, 2, 2)).version == 1


def test_saved_webhooks_used_reads_a_definition_without_compiling_it() -> None:
    definition = {
        "blocks": {
            "a": {"type": "webhook", "activity": {"webhook_id": "wh_1"}},
            "b": {"type": "webhook", "activity": {"url": "http://x"}},
            "c": "not a block",
        }
    }
    assert saved_webhooks_used(definition) == {"wh_1"}
    assert saved_webhooks_used({"blocks": []}) == frozenset()


async def test_every_kept_version_is_listed_and_read_with_the_users_who_walk_it(
    hookline: Hookline, receiver: Receiver
) -> None:
    h = hookline
    one = journey(
        {"hello": hook(receiver, "/one", next="wait"), "wait": {"type": "delay", "duration": "1h"}}
    )
    j = await create(h, one)
    await h.post("/api/v1/events", spin_event("u-old"))
    two = journey(
        {"hello": hook(receiver, "/two", next="wait"), "wait": {"type": "delay", "duration": "2h"}}
    )
    resp = await h.client.put(f"/api/v1/journeys/{j['id']}", json=two)
    assert resp.status_code == 200 and resp.json()["version"] == 2, resp.text
    for user in ("u-new", "u-newer"):
        await h.post("/api/v1/events", spin_event(user))
    listed = await h.client.get(f"/api/v1/journeys/{j['id']}/versions")
    assert listed.status_code == 200, listed.text
    assert [(v["version"], v["active"]) for v in listed.json()["data"]] == [(2, 2), (1, 1)]
    (old,) = [i for i in await instances(h, j["id"]) if i["user_ext_id"] == "u-old"]
    first = await h.client.get(f"/api/v1/journeys/{j['id']}/versions/{old['version']}")
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1
    assert first.json()["blocks"]["wait"] == {"type": "delay", "duration": "1h"}
    assert first.json()["blocks"]["hello"]["activity"]["url"] == receiver.url("/one")
    current = await h.client.get(f"/api/v1/journeys/{j['id']}/versions/2")
    assert current.json()["blocks"] == resp.json()["blocks"]
    for missing, status, field in (
        ("3", 404, "version"),
        ("0", 422, "version"),
        ("9" * 30, 422, "version"),
    ):
        answer = await h.client.get(f"/api/v1/journeys/{j['id']}/versions/{missing}")
        assert answer.status_code == status, answer.text
        assert answer.json()["field"] == field
    gone = await h.client.get("/api/v1/journeys/jrn_nope/versions")
    assert gone.status_code == 404, gone.text


async def test_a_version_keeps_when_it_was_created_when_the_journey_is_saved_again(
    hookline: Hookline, receiver: Receiver
) -> None:
    """Every save rewrote the current version's row, so a status change (or a PUT of the same
    definition) moved its created_at: the list said version 2 was made after a pause."""
    h = hookline
    j = await create(h, journey({"hello": hook(receiver, "/one")}))
    await h.post("/api/v1/events", spin_event("u-1"))
    two = await h.client.put(
        f"/api/v1/journeys/{j['id']}", json=journey({"hello": hook(receiver, "/two")})
    )
    assert two.status_code == 200 and two.json()["version"] == 2, two.text
    path = f"/api/v1/journeys/{j['id']}/versions"
    before = (await h.client.get(path)).json()["data"]
    assert [v["created_at"] for v in before] == [two.json()["updated_at"], j["created_at"]]
    paused = await h.client.patch(f"/api/v1/journeys/{j['id']}", json={"status": "paused"})
    assert paused.status_code == 200 and paused.json()["updated_at"] > two.json()["updated_at"]
    again = {k: v for k, v in journey({"hello": hook(receiver, "/two")}).items() if k != "status"}
    assert (await h.client.put(f"/api/v1/journeys/{j['id']}", json=again)).status_code == 200
    assert (await h.client.get(path)).json()["data"] == before
    # A draft edited in place is still version 1, created when it was first saved.
    draft = await create(h, journey({"hello": hook(receiver, "/d")}, name="d", status="draft"))
    edited = journey({"hello": hook(receiver, "/d2")}, name="d", status="draft")
    assert (await h.client.put(f"/api/v1/journeys/{draft['id']}", json=edited)).status_code == 200
    (only,) = (await h.client.get(f"/api/v1/journeys/{draft['id']}/versions")).json()["data"]
    assert only["created_at"] == draft["created_at"]
    shown = await h.client.get(f"/api/v1/journeys/{draft['id']}/versions/1")
    assert shown.json()["blocks"]["hello"]["activity"]["url"] == receiver.url("/d2")
