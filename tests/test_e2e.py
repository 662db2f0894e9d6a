"""End to end: hookline over real HTTP, delivering to a real receiver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from hookline.events import now_ms
from hookline.settings import SENDERS
from tests.conftest import each_sender
from tests.helpers import Hookline, Receiver, example_rule, spin_event


@pytest.fixture(params=SENDERS)
def sender_kind(request: pytest.FixtureRequest) -> str:
    """Contract tests: every test here runs with each sender (reqwest and aiohttp)."""
    return each_sender(request)


@pytest.fixture(params=[0, 1], ids=["in-process", "sender-process"])
async def hookline(
    request: pytest.FixtureRequest, make_hookline: Callable[..., Coroutine[Any, Any, Hookline]]
) -> Hookline:
    """Every end-to-end test runs with sends from the server and from a sender process."""
    return await make_hookline(sender_processes=request.param)


async def test_rule_event_delivers_rendered_body(hookline: Hookline, receiver: Receiver) -> None:
    await hookline.create_rule(activity={"url": receiver.url("/crm")})
    await hookline.client.patch(
        "/api/v1/users/u-1/state?ext_brand_id=brand-1", json={"user_id": 77, "core_sm_brand_id": 5}
    )
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
    assert [a["status_code"] for a in detail["attempt_log"]] == [200]


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
    assert [a["status_code"] for a in detail["attempt_log"]] == [500, 500, 200]
    # One meaning of "attempts": the count, in the list and in the detail alike.
    (listed,) = (await hookline.client.get("/api/v1/deliveries")).json()["data"]
    assert listed["attempts"] == detail["attempts"] == 3
    assert example_rule()["name"] == "spin-to-crm"


async def _delivery(h: Hookline, delivery_id: str) -> dict[str, Any]:
    resp = await h.client.get(f"/api/v1/deliveries/{delivery_id}")
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def _settled(h: Hookline, ids: list[str]) -> list[dict[str, Any]]:
    """The deliveries once each has succeeded or died (retries here are milliseconds apart)."""
    for _ in range(500):
        await h.idle()
        details = [await _delivery(h, i) for i in ids]
        if all(d["status"] in ("succeeded", "dead") for d in details):
            return details
    raise AssertionError(f"deliveries never settled: {details}")


async def _send(h: Hookline, event: dict[str, Any]) -> str:
    resp = await h.post("/api/v1/events", event)
    assert resp.status_code == 202, resp.text
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    return str(delivery_id)


async def test_walkthrough_echo_shows_rendered_body(hookline: Hookline) -> None:
    echo = hookline.base_url + "/echo-send/walkthrough-1/"
    await hookline.create_rule(activity={"url": echo})
    await hookline.client.patch(
        "/api/v1/users/u-1/state?ext_brand_id=brand-1", json={"user_id": 77, "core_sm_brand_id": 5}
    )
    await _send(hookline, spin_event())
    await hookline.idle()
    listed = (await hookline.client.get("/echo-list/walkthrough-1/")).json()
    (req,) = listed["requests"]
    assert req["json"] == {
        "saw_template_id": "12",
        "minigame_spins_count": "3",
        "smartico_user_id": "77",
        "user_ext_id": "u-1",
        "brand": "5",
    }


async def test_quotes_and_backslashes_in_state_keep_json_valid(
    hookline: Hookline, receiver: Receiver
) -> None:
    nasty = 'Lvl "5" \\ new\nline }} {{event.x}} \u0001 \U0001f600'
    body = '{"level": "{{state.ach_level_name}}", "typed": {{state.ach_level_current}}}'
    await hookline.create_rule(activity={"url": receiver.url(), "body": body})
    await hookline.client.patch(
        "/api/v1/users/u-1/state?ext_brand_id=brand-1",
        json={"ach_level_name": nasty, "ach_level_current": 7},
    )
    await _send(hookline, spin_event())
    (got,) = await receiver.wait_for(1)
    assert got.json() == {"level": nasty, "typed": 7}


async def test_get_with_query_parameters_arrives_url_encoded(
    hookline: Hookline, receiver: Receiver
) -> None:
    await hookline.create_rule(
        activity={
            "url": receiver.url("/get/{{state.user_ext_id}}"),
            "method": "GET",
            "body": None,
            "query": {"name": "{{event.name}}", "n": "{{event.minigame_spins_count}}"},
        }
    )
    event = spin_event(user="a b/c")
    event["payload"]["name"] = "R&D = 100% ünïcode?"
    await _send(hookline, event)
    (got,) = await receiver.wait_for(1)
    assert got.method == "GET"
    assert got.raw_path.startswith("/get/a%20b%2Fc?")
    assert got.query == "name=R%26D%20%3D%20100%25%20%C3%BCn%C3%AFcode%3F&n=3"
    assert got.body == b""


async def test_4xx_is_not_retried_and_3xx_not_followed(
    hookline: Hookline, receiver: Receiver
) -> None:
    receiver.script["/gone"] = [410]
    receiver.script["/moved"] = [302]
    receiver.extra_headers["/moved"] = {"location": receiver.url("/elsewhere")}
    await hookline.create_rule(name="gone", activity={"url": receiver.url("/gone")})
    await hookline.create_rule(name="moved", activity={"url": receiver.url("/moved")})
    resp = await hookline.post("/api/v1/events", spin_event())
    ids = resp.json()["events"][0]["deliveries"]
    await receiver.wait_for(2)
    await hookline.idle()
    details = [await _delivery(hookline, i) for i in ids]
    by_code = {d["attempt_log"][0]["status_code"]: d for d in details}
    assert by_code[410]["status"] == "dead"
    assert len(by_code[410]["attempt_log"]) == 1
    assert by_code[302]["status"] == "retrying" or by_code[302]["status"] == "dead"
    assert "redirects are not followed" in by_code[302]["attempt_log"][0]["error"]
    assert receiver.on("/elsewhere") == []


async def test_schedule_exhausted_is_dead_and_manual_retry_sends_same_id(
    hookline: Hookline, receiver: Receiver
) -> None:
    receiver.script["/down"] = [503, 503, 503]
    await hookline.create_rule(activity={"url": receiver.url("/down")})
    delivery_id = await _send(hookline, spin_event())
    await receiver.wait_for(3)
    (detail,) = await _settled(hookline, [delivery_id])
    assert detail["status"] == "dead"
    assert [a["status_code"] for a in detail["attempt_log"]] == [503, 503, 503]
    assert detail["attempt_log"][0]["response_body"] == "ok"
    resp = await hookline.post(f"/api/v1/deliveries/{delivery_id}/retry")
    assert resp.status_code == 202
    got = await receiver.wait_for(4)
    assert {r.headers["webhook-id"] for r in got} == {delivery_id}
    await hookline.idle()
    assert (await _delivery(hookline, delivery_id))["status"] == "succeeded"


async def test_retry_after_is_honoured(hookline: Hookline, receiver: Receiver) -> None:
    receiver.script["/busy"] = [429]
    receiver.extra_headers["/busy"] = {"retry-after": "1"}
    await hookline.create_rule(activity={"url": receiver.url("/busy")})
    delivery_id = await _send(hookline, spin_event())
    await receiver.wait_for(1)
    await hookline.idle()
    detail = await _delivery(hookline, delivery_id)
    assert detail["status"] == "retrying"
    assert detail["next_attempt_at"] - detail["attempt_log"][0]["started_at"] >= 1000
    await receiver.wait_for(2, timeout=10)


async def test_connection_refused_and_timeout_are_retried(
    make_hookline: Any, receiver: Receiver
) -> None:
    h = await make_hookline()
    receiver.delay["/slow"] = 2.0
    await h.create_rule(name="slow", activity={"url": receiver.url("/slow"), "timeout": 0.2})
    await h.create_rule(name="refused", activity={"url": "http://127.0.0.1:9/closed"})
    resp = await h.post("/api/v1/events", spin_event())
    ids = resp.json()["events"][0]["deliveries"]
    details = await _settled(h, ids)
    errors = sorted(d["attempt_log"][0]["error"] for d in details)
    assert any("timed out" in e for e in errors)
    assert any("Connect" in e or "connect" in e for e in errors)
    for d in details:
        assert d["status"] == "dead"
        assert len(d["attempt_log"]) == 3


async def test_eid_is_processed_once(hookline: Hookline, receiver: Receiver) -> None:
    await hookline.create_rule(activity={"url": receiver.url()})
    first = await hookline.post("/api/v1/events", spin_event(eid="e-1"))
    again = await hookline.post("/api/v1/events", [spin_event(eid="e-1"), spin_event(eid="e-2")])
    assert first.status_code == again.status_code == 202
    a, b = again.json()["events"]
    (original,) = first.json()["events"]
    assert a["duplicate"] is True and a["id"] == original["id"]
    # The resend answers what the first send caused: its event and its deliveries.
    assert a["deliveries"] == original["deliveries"] and len(a["deliveries"]) == 1
    assert b["duplicate"] is False
    await receiver.wait_for(2)
    await hookline.idle()
    assert len(receiver.requests) == 2


async def test_an_eid_twice_in_one_batch_answers_the_first_ones_deliveries(
    hookline: Hookline, receiver: Receiver
) -> None:
    await hookline.create_rule(activity={"url": receiver.url()})
    resp = await hookline.post("/api/v1/events", [spin_event(eid="e-1"), spin_event(eid="e-1")])
    first, again = resp.json()["events"]
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["id"] == first["id"]
    assert again["deliveries"] == first["deliveries"] and len(first["deliveries"]) == 1


async def test_update_profile_merges_state_and_conditions_use_it(
    hookline: Hookline, receiver: Receiver
) -> None:
    await hookline.create_rule(
        name="vip-spins",
        conditions={"all": [{"field": "state.ach_level_current", "op": "in", "value": ["gold"]}]},
        activity={"url": receiver.url(), "body": '{"level": "{{state.ach_level_current}}"}'},
    )
    profile = {
        "event_type": "update_profile",
        "user_ext_id": "u-1",
        "ext_brand_id": "brand-1",
        "payload": {"ach_level_current": "gold", "core_country": "DE"},
    }
    resp = await hookline.post("/api/v1/events", [spin_event(), profile, spin_event()])
    assert [len(e["deliveries"]) for e in resp.json()["events"]] == [0, 0, 1]
    state = (await hookline.client.get("/api/v1/users/u-1/state?ext_brand_id=brand-1")).json()
    assert state == {
        "user_ext_id": "u-1",
        "ext_brand_id": "brand-1",
        "ach_level_current": "gold",
        "core_country": "DE",
    }
    (got,) = await receiver.wait_for(1)
    assert got.json() == {"level": "gold"}


async def test_saved_webhook_serves_many_rules_and_follows_updates(
    hookline: Hookline, receiver: Receiver
) -> None:
    wh = {"name": "crm", "url": receiver.url("/v1"), "body": '{"u": "{{state.user_ext_id}}"}'}
    created = (await hookline.post("/api/v1/webhooks", wh)).json()
    activity = {"type": "webhook", "webhook_id": created["id"]}
    for name, event_type in (("a", "minigame_spin_issued"), ("b", "level_up")):
        rule = example_rule(name=name, trigger={"event_type": event_type}, conditions=None)
        rule["activity"] = activity
        assert (await hookline.post("/api/v1/rules", rule)).status_code == 201
    await hookline.post("/api/v1/events", spin_event())
    await receiver.wait_for(1, path="/v1")
    put = await hookline.client.put(
        f"/api/v1/webhooks/{created['id']}", json={**wh, "url": receiver.url("/v2")}
    )
    assert put.status_code == 200
    await hookline.post("/api/v1/events", {"event_type": "level_up", "user_ext_id": "u-2"})
    (got,) = await receiver.wait_for(1, path="/v2")
    assert got.json() == {"u": "u-2"}
    resp = await hookline.client.delete(f"/api/v1/webhooks/{created['id']}")
    assert resp.status_code == 409
    assert "a, b" in resp.json()["detail"]


async def test_rules_index_by_event_type_and_disabled_rules(
    hookline: Hookline, receiver: Receiver
) -> None:
    rule = await hookline.create_rule(activity={"url": receiver.url()})
    await hookline.post("/api/v1/events", {"event_type": "other", "user_ext_id": "u"})
    await hookline.post("/api/v1/events", spin_event(spins=0))
    patched = await hookline.client.patch(f"/api/v1/rules/{rule['id']}", json={"enabled": False})
    assert patched.json()["enabled"] is False
    await hookline.post("/api/v1/events", spin_event())
    await hookline.idle()
    assert receiver.requests == []
    assert len(hookline.runtime.engine.index) == 0


async def test_form_and_text_bodies(hookline: Hookline, receiver: Receiver) -> None:
    await hookline.create_rule(
        name="form",
        activity={
            "url": receiver.url("/form"),
            "content_type": "application/x-www-form-urlencoded",
            "body": "user={{state.user_ext_id}}&note={{event.note}}",
        },
    )
    await hookline.create_rule(
        name="text",
        activity={
            "url": receiver.url("/text"),
            "content_type": "text/plain",
            "body": "spins: {{event.minigame_spins_count}}, note: {{event.note}}",
        },
    )
    event = spin_event()
    event["payload"]["note"] = "a&b=c d"
    await hookline.post("/api/v1/events", event)
    await receiver.wait_for(2)
    (form,) = receiver.on("/form")
    (text,) = receiver.on("/text")
    assert form.body == b"user=u-1&note=a%26b%3Dc+d"
    assert form.headers["content-type"] == "application/x-www-form-urlencoded"
    assert text.body == b"spins: 3, note: a&b=c d"


async def test_header_with_line_break_is_refused_but_event_kept(
    hookline: Hookline, receiver: Receiver
) -> None:
    await hookline.create_rule(
        activity={"url": receiver.url(), "headers": {"X-Note": "{{event.note}}"}}
    )
    event = spin_event()
    event["payload"]["note"] = "evil\r\nX-Injected: 1"
    resp = await hookline.post("/api/v1/events", event)
    assert resp.status_code == 202
    event_id = resp.json()["events"][0]["id"]
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    detail = await _delivery(hookline, delivery_id)
    assert detail["status"] == "dead"
    assert "line break" in detail["last_error"]
    assert (await hookline.client.get(f"/api/v1/events/{event_id}")).status_code == 200
    await hookline.idle()
    assert receiver.requests == []


async def test_preview_and_test_endpoints(hookline: Hookline, receiver: Receiver) -> None:
    webhook = {
        "url": receiver.url("/t/{{state.user_ext_id}}"),
        "headers": {"X-User": "{{state.user_ext_id}}"},
        "body": '{"n": {{event.n}}, "name": "{{state.first|my friend}}"}',
    }
    sample = {"event": {"user_ext_id": "u 1", "payload": {"n": 5}}, "state": {}}
    resp = await hookline.post("/api/v1/webhooks/preview", {"webhook": webhook, **sample})
    assert resp.status_code == 200, resp.text
    preview = resp.json()
    assert preview["method"] == "POST"
    assert preview["url"] == receiver.url("/t/u%201")
    assert preview["headers"]["X-User"] == "u 1"
    assert preview["body"] == '{"n": 5, "name": "my friend"}'
    assert receiver.requests == []
    sent = await hookline.post("/api/v1/webhooks/test", {"webhook": webhook, **sample})
    assert sent.status_code == 200, sent.text
    assert sent.json()["response"]["status_code"] == 200
    (got,) = await receiver.wait_for(1)
    assert got.json() == {"n": 5, "name": "my friend"}
    assert got.headers["webhook-id"].startswith("dlv_")


async def test_deliveries_list_filters_and_pages(hookline: Hookline, receiver: Receiver) -> None:
    rule = await hookline.create_rule(activity={"url": receiver.url()})
    events = [spin_event(user=f"u-{i % 2}") for i in range(7)]
    await hookline.post("/api/v1/events", events)
    await receiver.wait_for(7)
    await hookline.idle()
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 3, "rule_id": rule["id"]}
        if cursor:
            params["cursor"] = cursor
        page = (await hookline.client.get("/api/v1/deliveries", params=params)).json()
        seen += [d["id"] for d in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    only_u1 = (
        await hookline.client.get(
            "/api/v1/deliveries",
            params={"user_ext_id": "u-1", "ext_brand_id": "brand-1", "status": "succeeded"},
        )
    ).json()["data"]
    assert len(only_u1) == 3
    assert all(d["user_ext_id"] == "u-1" for d in only_u1)
    none = await hookline.client.get("/api/v1/deliveries", params={"status": "dead"})
    assert none.json()["data"] == []


async def test_slow_host_does_not_starve_others(make_hookline: Any, receiver: Receiver) -> None:
    h = await make_hookline(max_per_host=2)
    receiver.delay["/slow"] = 0.3
    port = receiver.base_url.rsplit(":", 1)[1]
    await h.create_rule(
        name="slow",
        trigger={"event_type": "slow"},
        conditions=None,
        activity={"url": receiver.url("/slow")},
    )
    await h.create_rule(
        name="fast",
        trigger={"event_type": "fast"},
        conditions=None,
        activity={"url": f"http://localhost:{port}/fast"},
    )
    await h.post("/api/v1/events", [{"event_type": "slow", "user_ext_id": "u"}] * 10)
    await receiver.wait_for(1, path="/slow")
    await h.post("/api/v1/events", {"event_type": "fast", "user_ext_id": "u"})
    await receiver.wait_for(1, path="/fast")
    # The fast host was served while the slow host still had most of its backlog.
    assert len(receiver.on("/slow")) < 10
    await receiver.wait_for(10, path="/slow")
    assert receiver.max_inflight["/slow"] == 2


@pytest.mark.parametrize("processes", [0, 1], ids=["in-process", "sender-process"])
async def test_one_host_and_port_spelled_three_ways_is_one_destination(
    make_hookline: Any, receiver: Receiver, processes: int
) -> None:
    """The limit counted the host as written: aiohttp sent 6 at once to one host and port
    limited to 2, and reqwest queued the rest inside its client, their timeouts running."""
    h = await make_hookline(max_per_host=2, sender_processes=processes)
    receiver.delay["/slow"] = 0.2
    port = receiver.base_url.rsplit(":", 1)[1]
    for i, host in enumerate(["localhost", "LOCALHOST", "LocalHost"]):
        activity = {"url": f"http://{host}:{port}/slow"}
        await h.create_rule(
            name=f"r{i}", trigger={"event_type": "slow"}, conditions=None, activity=activity
        )
    await h.post("/api/v1/events", [{"event_type": "slow", "user_ext_id": "u"}] * 4)
    await receiver.wait_for(12, path="/slow")
    assert receiver.max_inflight["/slow"] == 2


@pytest.mark.parametrize("processes", [0, 1], ids=["in-process", "sender-process"])
async def test_never_more_in_flight_than_the_global_limit(
    make_hookline: Any, receiver: Receiver, processes: int
) -> None:
    h = await make_hookline(max_concurrency=3, max_per_host=2, sender_processes=processes)
    port = receiver.base_url.rsplit(":", 1)[1]
    for path, host in (("/a", "127.0.0.1"), ("/b", "localhost")):  # two destinations
        receiver.delay[path] = 0.2
        activity = {"url": f"http://{host}:{port}{path}"}
        await h.create_rule(
            name=path[1:], trigger={"event_type": "slow"}, conditions=None, activity=activity
        )
    await h.post("/api/v1/events", [{"event_type": "slow", "user_ext_id": "u"}] * 6)
    await receiver.wait_for(12)
    # Two destinations of two each could take four; the global limit leaves three.
    assert receiver.peak_inflight == 3
    assert receiver.max_inflight == {"/a": 2, "/b": 2}


async def test_handed_over_deliveries_are_leased_in_the_outbox(
    hookline: Hookline, receiver: Receiver
) -> None:
    """A delivery passed straight to the dispatcher is leased, so no claim takes it twice."""
    await hookline.create_rule(activity={"url": receiver.url()})
    receiver.delay["/hook"] = 0.5  # keep it in flight while we look
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    claimed = await hookline.runtime.store.claim_due(now_ms(), 100, 0, {}, 10)
    assert claimed == []
    await hookline.idle()
    assert (await _delivery(hookline, delivery_id))["status"] == "succeeded"
    assert len(receiver.requests) == 1


async def test_deliveries_beyond_the_memory_bound_wait_in_the_outbox(
    hookline: Hookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hookline.dispatcher.MAX_HELD", 3)
    await hookline.create_rule(activity={"url": receiver.url()})
    events = [spin_event(user=f"u-{i}") for i in range(40)]
    resp = await hookline.post("/api/v1/events", events)
    ids = [d for e in resp.json()["events"] for d in e["deliveries"]]
    assert len(ids) == 40
    arrived = await receiver.wait_for(40)
    assert sorted(r.headers["webhook-id"] for r in arrived) == sorted(ids)
    await hookline.idle()
    assert {d["status"] for d in await _settled(hookline, ids)} == {"succeeded"}
