"""The dispatcher under pressure: schedules, slow destinations, a failing database."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from hookline.events import now_ms
from hookline.settings import SENDERS
from tests.conftest import each_sender
from tests.helpers import Hookline, Receiver, due_delivery, spin_event


@pytest.fixture(params=SENDERS)
def sender_kind(request: pytest.FixtureRequest) -> str:
    """Contract tests: every test here runs with each sender (reqwest and aiohttp)."""
    return each_sender(request)


MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]


async def test_a_schedule_that_starts_later_is_not_sent_at_once(
    hookline: Hookline, receiver: Receiver
) -> None:
    await hookline.create_rule(activity={"url": receiver.url(), "retry_schedule": [3600, 5]})
    before = now_ms()
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    assert receiver.requests == []
    detail = (await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")).json()
    assert detail["status"] == "pending"
    assert detail["next_attempt_at"] >= before + 3_599_000


async def test_a_slow_destination_cannot_take_every_place_in_memory(
    make_hookline: MakeHookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hookline.dispatcher.MAX_HELD", 10)
    monkeypatch.setattr("hookline.dispatcher.HELD_ROUNDS", 1)
    hookline = await make_hookline(max_per_host=2)
    fast = Receiver()
    await fast.start()
    try:
        await hookline.create_rule(name="slow", activity={"url": receiver.url("/slow")})
        await hookline.create_rule(
            name="fast",
            trigger={"event_type": "fast"},
            conditions=None,
            activity={"url": fast.url("/fast")},
        )
        receiver.delay["/slow"] = 3.0
        slow_events = [spin_event(user=f"u-{i}") for i in range(20)]
        assert (await hookline.post("/api/v1/events", slow_events)).status_code == 202
        fast_event = {"event_type": "fast", "user_ext_id": "u-f", "payload": {}}
        assert (await hookline.post("/api/v1/events", fast_event)).status_code == 202
        # Before the fix the slow host held all 10 places and this waited ~30 s.
        (arrived,) = await fast.wait_for(1, timeout=2.5)
        assert arrived.path == "/fast"
        receiver.delay.clear()
    finally:
        await fast.stop()


async def test_the_claim_loop_survives_a_failing_database_read(
    hookline: Hookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = hookline.runtime.store
    real = store.next_due_at
    failures = 0

    async def flaky() -> int | None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise RuntimeError("disk I/O error")
        return await real()

    monkeypatch.setattr(store, "next_due_at", flaky)
    monkeypatch.setattr("asyncio.sleep", _no_sleep_for(1))
    receiver.script["/hook"] = [500]
    # The retry falls due later, so the loop must ask when (the failing read) before it.
    await hookline.create_rule(activity={"url": receiver.url(), "retry_schedule": [0, 0.2]})
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    arrived = await receiver.wait_for(2)
    assert failures == 1
    assert {r.headers["webhook-id"] for r in arrived} == {delivery_id}
    await hookline.idle()
    detail = (await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")).json()
    assert [a["status_code"] for a in detail["attempt_log"]] == [500, 200]


async def test_idle_waits_for_a_retry_recorded_while_it_looked_for_due_work(
    hookline: Hookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The claim loop reads when work falls due, and a recording commits during that read:
    # the read saw the delivery leased, and once recorded nothing is held. Idle then would
    # be wrong, the retry is due now. Forced here in that order; it used to race.
    import asyncio

    dispatcher, store = hookline.runtime.dispatcher, hookline.runtime.store
    real_idle, real_due = dispatcher.idle, store.next_due_at
    real_record = dispatcher.record_outcomes
    idle_called, read_taken, recorded = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def idle(timeout: float = 30.0) -> None:
        idle_called.set()
        await real_idle(timeout)

    async def next_due_at() -> int | None:
        due = await real_due()
        if idle_called.is_set() and not read_taken.is_set():
            read_taken.set()
            await recorded.wait()
            await dispatcher._outcomes.join()  # recorded and no longer held
        return due  # the snapshot taken before the recording

    async def record_outcomes(outcomes: Any, now: int) -> None:
        await read_taken.wait()
        await real_record(outcomes, now)
        recorded.set()

    monkeypatch.setattr(dispatcher, "idle", idle)
    monkeypatch.setattr(store, "next_due_at", next_due_at)
    monkeypatch.setattr(dispatcher, "record_outcomes", record_outcomes)
    receiver.script["/hook"] = [503]
    await hookline.create_rule(activity={"url": receiver.url(), "retry_schedule": [0, 0]})
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    assert recorded.is_set()
    detail = (await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")).json()
    assert detail["status"] == "succeeded"
    assert [a["status_code"] for a in detail["attempt_log"]] == [503, 200]


async def test_idle_waits_for_work_written_while_a_read_was_under_way(
    hookline: Hookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read of the outbox begun before a delivery was written must not answer idle() asked
    # after it: written straight to the store (no hand-over, no signal), as recovery finds one.
    import asyncio

    dispatcher, store = hookline.runtime.dispatcher, hookline.runtime.store
    real_idle, real_due = dispatcher.idle, store.next_due_at
    armed, read_taken, idle_called = True, asyncio.Event(), asyncio.Event()

    async def idle(timeout: float = 30.0) -> None:
        idle_called.set()
        await real_idle(timeout)

    async def next_due_at() -> int | None:
        nonlocal armed
        due = await real_due()
        if armed:
            armed = False
            read_taken.set()
            await idle_called.wait()
        return due  # the snapshot taken before the write

    monkeypatch.setattr(dispatcher, "idle", idle)
    monkeypatch.setattr(store, "next_due_at", next_due_at)
    dispatcher.signal.notify()  # the claim loop looks now, and its read waits
    await read_taken.wait()
    delivery = due_delivery(receiver.url())
    async with store.ingest() as ingest:
        await ingest.insert_deliveries([delivery])
    await hookline.idle()
    detail = (await hookline.client.get(f"/api/v1/deliveries/{delivery.id}")).json()
    assert detail["status"] == "succeeded"


def _no_sleep_for(seconds: float) -> Callable[[float], Coroutine[Any, Any, None]]:
    """asyncio.sleep, except that a pause of exactly ``seconds`` (the back-off) is skipped."""
    import asyncio

    real = asyncio.sleep

    async def sleep(delay: float, result: Any = None) -> None:
        await real(0 if delay == seconds else delay)

    return sleep


async def test_an_unparsable_url_is_refused_when_saved(hookline: Hookline) -> None:
    for path, body in (
        ("/api/v1/rules", {"name": "r", "trigger": {"event_type": "t"}}),
        ("/api/v1/webhooks", {"name": "w"}),
        ("/api/v1/webhooks/test", {"event": spin_event()}),
    ):
        if path.endswith("/test"):
            payload: dict[str, Any] = {**body, "webhook": {"url": "http://[oops/x"}}
        elif path.endswith("rules"):
            payload = {**body, "activity": {"type": "webhook", "url": "http://h:99999/x"}}
        else:
            payload = {**body, "url": "http://[oops/x"}
        resp = await hookline.post(path, payload)
        assert resp.status_code == 422, (path, resp.text)
        assert resp.json()["field"].endswith("url"), resp.text


async def test_retry_by_hand_waits_for_the_attempt_in_hand(
    hookline: Hookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lease shorter than the request: only the dispatcher knows the attempt is running.
    monkeypatch.setattr("hookline.engine.LEASE_MARGIN_MS", -60_000)
    await hookline.create_rule(activity={"url": receiver.url()})
    receiver.delay["/hook"] = 1.0
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await receiver.wait_inflight()
    busy = await hookline.post(f"/api/v1/deliveries/{delivery_id}/retry")
    assert busy.status_code == 409, busy.text
    assert busy.json()["field"] == "delivery_id"
    receiver.delay.clear()
    await hookline.idle()
    again = await hookline.post(f"/api/v1/deliveries/{delivery_id}/retry")
    assert again.status_code == 202, again.text
    arrived = await receiver.wait_for(2)
    assert {r.headers["webhook-id"] for r in arrived} == {delivery_id}


def _fails_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
    """``owner.name`` raises RuntimeError("boom") on its first call, then works."""
    real = getattr(owner, name)
    raised = False

    def broken(*args: Any) -> Any:
        nonlocal raised
        if not raised:
            raised = True
            raise RuntimeError("boom")
        return real(*args)

    monkeypatch.setattr(owner, name, broken)


async def _attempt_errors(hookline: Hookline, delivery_id: str) -> list[str | None]:
    await hookline.idle()
    detail = (await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")).json()
    assert detail["status"] == "succeeded"
    return [a["error"] for a in detail["attempt_log"]]


@pytest.mark.parametrize("where", ["submit", "exchange"])
async def test_a_sender_that_raises_costs_one_attempt_not_the_delivery(
    hookline: Hookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    _fails_once(monkeypatch, hookline.runtime.dispatcher.sender, where)
    await hookline.create_rule(activity={"url": receiver.url(), "retry_schedule": [0, 0.01]})
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    (arrived,) = await receiver.wait_for(1)
    assert arrived.headers["webhook-id"] == delivery_id
    errors = await _attempt_errors(hookline, delivery_id)
    assert errors == ["internal error: RuntimeError('boom')", None]


async def test_a_send_that_outlives_the_stop_is_not_recorded_and_goes_again(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    first = await make_hookline()
    await first.create_rule(activity={"url": receiver.url("/slow")})
    receiver.delay["/slow"] = 30
    resp = await first.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await receiver.wait_inflight("/slow")
    await first.runtime.dispatcher.stop(grace=0.1)  # gives up on the send in flight
    stored = await first.runtime.store.get_delivery(delivery_id)
    assert stored is not None and (stored.status.value, stored.attempts) == ("pending", 0)
    await first.stop()
    receiver.delay.clear()
    again = await make_hookline()
    (arrived,) = await receiver.wait_for(1, "/slow")  # the first one is still held there
    assert arrived.headers["webhook-id"] == delivery_id
    assert await _attempt_errors(again, delivery_id) == [None]


async def test_an_answer_that_cannot_be_taken_frees_its_place_and_is_sent_again_later(
    make_hookline: MakeHookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while taking an answer kept the delivery in flight and its destination's place
    taken for ever: with one place per destination, nothing more went there."""
    hookline = await make_hookline(max_per_host=1)
    dispatcher = hookline.runtime.dispatcher
    _fails_once(monkeypatch, dispatcher, "_outcome")
    await hookline.create_rule(activity={"url": receiver.url()})
    resp = await hookline.post("/api/v1/events", spin_event("u-1"))
    (first,) = resp.json()["events"][0]["deliveries"]
    await receiver.wait_for(1)
    resp = await hookline.post("/api/v1/events", spin_event("u-2"))
    (second,) = resp.json()["events"][0]["deliveries"]
    arrived = await receiver.wait_for(2)
    assert [r.headers["webhook-id"] for r in arrived] == [first, second]
    await hookline.idle()
    assert not dispatcher._per_host and not dispatcher.holds(first)
    stored = await hookline.runtime.store.get_delivery(first)
    assert stored is not None and (stored.status.value, stored.attempts) == ("pending", 0)
