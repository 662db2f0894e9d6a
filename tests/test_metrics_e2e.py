"""GET /metrics end to end: counters move by what really happened, and who may read them."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hookline import __version__
from hookline.journey_runner import MAX_CHAIN_DEPTH
from hookline.keys import Role
from hookline.rules import Problem
from tests.helpers import Hookline, Receiver, spin_event
from tests.test_guard import NOTHING_ALLOWED, named_url, stub

MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]
Figures = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def scrape(h: Hookline, headers: dict[str, str] | None = None) -> Figures:
    """Every series /metrics answers, as Prometheus parses it: (name, labels) -> value."""
    resp = await h.client.get("/metrics", headers=headers or {})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def moved(before: Figures, after: Figures) -> dict[str, float]:
    """The series that changed, by name with labels (``name{k=v}``), and by how much."""
    changes = {}
    for key, value in after.items():
        delta = value - before.get(key, 0.0)
        name, labels = key
        if delta and not name.startswith(("hookline_start_time", "hookline_attempt_duration")):
            shown = ",".join(f"{k}={v}" for k, v in labels)
            changes[f"{name}{{{shown}}}" if labels else name] = delta
    return changes


async def test_events_deliveries_and_attempts_move_the_counters_by_what_happened(
    hookline: Hookline, receiver: Receiver
) -> None:
    await hookline.create_rule(activity={"url": receiver.url("/ok")})
    before = await scrape(hookline)
    assert before[("hookline_rules_loaded", ())] == 1
    events = [spin_event("u-1", eid="e-1"), spin_event("u-2", eid="e-2"), spin_event("u-3")]
    assert (await hookline.post("/api/v1/events", events)).status_code == 202
    resent = await hookline.post("/api/v1/events", spin_event("u-1", eid="e-1"))
    assert resent.json()["duplicates"] == 1
    # No delivery: the rule's condition wants at least one spin.
    assert (await hookline.post("/api/v1/events", spin_event("u-4", spins=0))).status_code == 202
    await receiver.wait_for(3, "/ok")
    await hookline.idle()
    after = await scrape(hookline)
    assert moved(before, after) == {
        "hookline_events_accepted_total": 4,
        "hookline_events_duplicate_total": 1,
        "hookline_deliveries_created_total": 3,
        "hookline_attempts_total{outcome=succeeded}": 3,
    }
    latency = ("hookline_attempt_duration_seconds_count", ())
    assert after[latency] - before.get(latency, 0) == 3
    inf = ("hookline_attempt_duration_seconds_bucket", (("le", "+Inf"),))
    assert after[inf] == after[latency]
    assert after[("hookline_attempt_duration_seconds_sum", ())] > 0
    assert after[("hookline_deliveries_in_flight", ())] == 0
    assert after[("hookline_deliveries_queued", ())] == 0


async def test_a_retry_then_a_success_and_a_4xx_that_is_dead(
    hookline: Hookline, receiver: Receiver
) -> None:
    await hookline.create_rule(activity={"url": receiver.url("/flaky")})
    await hookline.create_rule(
        name="to-a-refusing-host",
        activity={"url": receiver.url("/refuses")},
    )
    receiver.script["/flaky"] = [503]
    receiver.script["/refuses"] = [400]
    before = await scrape(hookline)
    await hookline.post("/api/v1/events", spin_event())
    await receiver.wait_for(2, "/flaky")
    await hookline.idle()
    assert moved(before, await scrape(hookline)) == {
        "hookline_events_accepted_total": 1,
        "hookline_deliveries_created_total": 2,
        "hookline_attempts_total{outcome=succeeded}": 1,
        "hookline_attempts_total{outcome=retrying}": 1,
        "hookline_attempts_total{outcome=dead}": 1,
    }


async def test_a_destination_the_guard_blocks_counts_as_blocked_not_dead(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    h = await make_hookline(
        allowed_networks=NOTHING_ALLOWED, lookup=stub({"hooks.test": [["127.0.0.1"]]})
    )
    await h.create_rule(activity={"url": named_url(receiver)})
    before = await scrape(h)
    await h.post("/api/v1/events", spin_event())
    await h.idle()
    after = await scrape(h)
    assert moved(before, after)["hookline_attempts_total{outcome=blocked}"] == 1
    assert after[("hookline_attempts_total", (("outcome", "dead"),))] == 0
    assert after[("hookline_attempt_duration_seconds_count", ())] == 0
    assert receiver.requests == []


async def test_a_delivery_waiting_for_its_retry_is_in_the_outbox(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    h = await make_hookline(retry_schedule=(0, 3600))
    await h.create_rule(activity={"url": receiver.url("/down")})
    receiver.script["/down"] = [503]
    await h.post("/api/v1/events", spin_event())
    await h.idle()  # the first attempt is recorded; the next is an hour away
    figures = await scrape(h)
    assert figures[("hookline_attempts_total", (("outcome", "retrying"),))] == 1
    assert figures[("hookline_deliveries_outbox", ())] == 1
    assert figures[("hookline_deliveries_in_flight", ())] == 0


async def test_journey_entries_finishes_emitted_events_and_chain_cuts(hookline: Hookline) -> None:
    every = {"mode": "every_time"}
    for name, on, emits in (("ping", "ping", "pong"), ("pong", "pong", "ping")):
        resp = await hookline.client.post(
            "/api/v1/journeys",
            json={
                "name": name,
                "status": "active",
                "entry": {"trigger": {"event_type": on}, **every},
                "start": "emit",
                "blocks": {"emit": {"type": "emit_event", "event_type": emits}},
            },
        )
        assert resp.status_code == 201, resp.text
    before = await scrape(hookline)
    assert before[("hookline_journeys_loaded", (("status", "active"),))] == 2
    ping = await hookline.post("/api/v1/events", {"event_type": "ping", "user_ext_id": "u-1"})
    assert ping.status_code == 202, ping.text
    changes = moved(before, await scrape(hookline))
    # The ping enters at depth 0, each emitted event one deeper. Each entry emits three
    # events (campaign_started, its own, campaign_finished); the last entry's are cut.
    entries = MAX_CHAIN_DEPTH + 1
    assert changes == {
        "hookline_events_accepted_total": 1,
        "hookline_journey_events_emitted_total": 3 * entries - 3,
        "hookline_journey_entries_total": entries,
        "hookline_journey_finishes_total{reason=completed}": entries,
        "hookline_journey_chain_cuts_total": 3,
    }


async def test_a_user_waiting_in_a_delay_is_a_timer_waiting(
    hookline: Hookline, receiver: Receiver
) -> None:
    resp = await hookline.client.post(
        "/api/v1/journeys",
        json={
            "name": "slow-welcome",
            "status": "active",
            "entry": {"trigger": {"event_type": "minigame_spin_issued"}},
            "start": "wait",
            "blocks": {
                "wait": {"type": "delay", "duration": 3600, "next": "hello"},
                "hello": {
                    "type": "webhook",
                    "activity": {"type": "webhook", "url": receiver.url()},
                },
            },
        },
    )
    assert resp.status_code == 201, resp.text
    await hookline.post("/api/v1/events", spin_event("u-1"))
    await hookline.post("/api/v1/events", spin_event("u-2"))
    figures = await scrape(hookline)
    assert figures[("hookline_journey_timers_waiting", ())] == 2
    assert figures[("hookline_journey_entries_total", ())] == 2


async def test_build_info_start_time_and_load_problems_as_healthz_counts_them(
    hookline: Hookline,
) -> None:
    hookline.runtime.engine.index.problems["rule_x"] = Problem("rule", "rule_x", "broken")
    hookline.runtime.engine.journeys.problems["jrn_x"] = "unreadable"
    figures = await scrape(hookline)
    health = (await hookline.client.get("/healthz")).json()
    assert figures[("hookline_load_problems", ())] == health["problem_count"] == 2
    (info,) = [labels for name, labels in figures if name == "hookline_build_info"]
    assert dict(info)["version"] == __version__
    assert hookline.runtime.started_at is not None
    assert figures[("hookline_start_time_seconds", ())] == pytest.approx(
        hookline.runtime.started_at
    )


async def test_metrics_follow_the_keys_and_need_a_key_of_every_brand(
    make_hookline: MakeHookline,
) -> None:
    h = await make_hookline()
    assert (await h.client.get("/metrics")).status_code == 200  # no key yet: open
    _, admin = await h.runtime.keys.create(Role.ADMIN, (), "root")
    _, read = await h.runtime.keys.create(Role.READ, (), "prometheus")
    _, ingest = await h.runtime.keys.create(Role.INGEST, (), "shop")
    _, brand_read = await h.runtime.keys.create(Role.READ, ("b1",), "b1 dashboard")
    _, brand_admin = await h.runtime.keys.create(Role.ADMIN, ("b1",), "b1 ops")

    refused = await h.client.get("/metrics")
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"
    assert refused.headers["www-authenticate"] == 'Bearer realm="hookline"'
    assert (await h.client.get("/metrics", headers=_bearer("hlk_" + "x" * 43))).status_code == 401
    for key in (read, admin):
        assert await scrape(h, _bearer(key))
    for key in (ingest, brand_read, brand_admin):
        resp = await h.client.get("/metrics", headers=_bearer(key))
        assert resp.status_code == 403, resp.text
        body = resp.json()
        assert set(body) == {"code", "detail", "field"}
        assert body["code"] == "forbidden"
        assert body["field"] == "Authorization"
    brand = (await h.client.get("/metrics", headers=_bearer(brand_read))).json()
    assert "every brand" in brand["detail"]
    # /docs and the document it reads follow the keys the same way.
    assert (await h.client.get("/docs")).status_code == 401
    assert (await h.client.get("/docs", headers=_bearer(read))).status_code == 200
    assert (await h.client.get("/openapi.json", headers=_bearer(ingest))).status_code == 403


async def test_stored_counts_are_read_at_most_once_a_second(
    hookline: Hookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    store = hookline.runtime.store
    count = store.count_outbox

    async def counted() -> int:
        calls.append("outbox")
        return await count()

    monkeypatch.setattr(store, "count_outbox", counted)
    for _ in range(5):
        await scrape(hookline)
    assert calls == ["outbox"]


async def test_attempts_sent_by_a_sender_process_are_counted_where_they_are_recorded(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    h = await make_hookline(sender_processes=1)
    await h.create_rule(activity={"url": receiver.url("/far")})
    receiver.script["/far"] = [500]
    await h.post("/api/v1/events", spin_event())
    await receiver.wait_for(2, "/far")
    await h.idle()
    figures = await scrape(h)
    assert figures[("hookline_attempts_total", (("outcome", "retrying"),))] == 1
    assert figures[("hookline_attempts_total", (("outcome", "succeeded"),))] == 1
    assert figures[("hookline_attempt_duration_seconds_count", ())] == 2
