"""The claim under attack: saturated destinations with big backlogs, recovery, restarts, idle().

A claim reads a bounded window of the earliest due rows and reads past destinations
without room only now and then; these tests check that nothing else starves behind such a
backlog, that a backlog drains whole once its destination answers, and that ``idle()``
never answers while something is due and unsent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from aiohttp import web

from hookline.deliveries import Delivery, destination_of
from hookline.events import now_ms
from tests.helpers import (
    Hookline,
    Receiver,
    due_delivery,
    example_rule,
    serve_aiohttp,
    spin_event,
)

MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]


async def _write_backlog(hookline: Hookline, url: str, count: int, age_ms: int) -> list[str]:
    """``count`` deliveries to ``url`` due ``age_ms`` ago, written straight to the outbox."""
    start = now_ms() - age_ms
    backlog = [due_delivery(url, next_attempt_at=start + i) for i in range(count)]
    async with hookline.runtime.store.ingest() as tx:
        await tx.insert_deliveries(backlog)
    return [d.id for d in backlog]


async def _due_and_unsent(hookline: Hookline) -> list[dict[str, Any]]:
    """Deliveries the API shows pending or retrying and due by now."""
    now = now_ms()
    found: list[dict[str, Any]] = []
    for status in ("pending", "retrying"):
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"status": status, "limit": 500}
            if cursor is not None:
                params["cursor"] = cursor
            resp = await hookline.client.get("/api/v1/deliveries", params=params)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            found.extend(
                d
                for d in body["data"]
                if d["next_attempt_at"] is not None and d["next_attempt_at"] <= now
            )
            cursor = body["next_cursor"]
            if cursor is None:
                break
    return found


class Ports:
    """One receiving app listening on many 127.0.0.1 ports: each port a destination."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.fail_first: set[str] = set()  # webhook-ids answered 503 once
        self._runner: web.AppRunner | None = None
        self.urls: list[str] = []
        self._changed = asyncio.Condition()
        self.gate: asyncio.Event | None = None  # when set: each request waits for it

    async def start(self, count: int) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, first = await serve_aiohttp(app)
        self.urls.append(first + "/hook")
        for _ in range(count - 1):
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.urls.append(f"http://127.0.0.1:{port}/hook")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        if self.gate is not None:
            await self.gate.wait()
        webhook_id = request.headers["webhook-id"]
        async with self._changed:
            self.ids.append(webhook_id)
            self._changed.notify_all()
        if webhook_id in self.fail_first:
            self.fail_first.discard(webhook_id)
            return web.Response(status=503)
        return web.Response(status=200)

    async def wait_for(self, count: int, timeout: float = 30.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.ids) >= count), timeout)


class Watch:
    """Wraps store calls of the dispatcher so a test can await what they changed."""

    def __init__(self, hookline: Hookline, monkeypatch: pytest.MonkeyPatch) -> None:
        self.recorded: set[str] = set()
        self.changed = asyncio.Condition()
        store, dispatcher = hookline.runtime.store, hookline.runtime.dispatcher
        record, claim = dispatcher.record_outcomes, store.claim_due

        async def record_outcomes(outcomes: Any, now: int) -> None:
            await record(outcomes, now)
            async with self.changed:
                self.recorded.update(o.attempt.delivery_id for o in outcomes)
                self.changed.notify_all()

        async def claim_due(*args: Any, **kw: Any) -> list[Delivery]:
            claimed = await claim(*args, **kw)
            async with self.changed:
                self.changed.notify_all()
            return claimed

        monkeypatch.setattr(dispatcher, "record_outcomes", record_outcomes)
        monkeypatch.setattr(store, "claim_due", claim_due)

    async def until(self, done: Callable[[], bool], timeout: float = 15.0) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(done), timeout)


async def _arrival_within(receiver: Receiver, count: int, path: str, seconds: float) -> float:
    started = time.monotonic()
    await receiver.wait_for(count, path=path, timeout=15)
    took = time.monotonic() - started
    assert took < seconds, f"took {took:.2f} s"
    return took


async def test_retries_to_others_go_out_while_a_slow_destination_has_a_big_backlog(
    make_hookline: MakeHookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    hookline = await make_hookline(max_per_host=2)
    watch = Watch(hookline, monkeypatch)
    fast = Receiver()
    await fast.start()
    try:
        receiver.delay["/slow"] = 5.0
        backlog = await _write_backlog(hookline, receiver.url("/slow"), 1500, 60_000)
        hookline.runtime.dispatcher.signal.notify()
        await receiver.wait_inflight("/slow")
        await hookline.create_rule(
            activity={"url": fast.url("/fast"), "retry_schedule": [0, 0.2, 0.2]}
        )
        fast.script["/fast"] = [500, 500]
        resp = await hookline.post("/api/v1/events", spin_event())
        (delivery_id,) = resp.json()["events"][0]["deliveries"]
        await fast.wait_for(1, "/fast")
        # Two retries, each due 0.2 s after the last: about 0.4 s, not the backlog's minutes.
        await _arrival_within(fast, 3, "/fast", 2.0)
        for _ in range(3):
            await watch.until(lambda: not hookline.runtime.dispatcher.holds(delivery_id))
            count = len(fast.on("/fast"))
            again = await hookline.post(f"/api/v1/deliveries/{delivery_id}/retry")
            assert again.status_code == 202, again.text
            await _arrival_within(fast, count + 1, "/fast", 1.2)
        # New deliveries written straight to the outbox for the fast one (no hand-over).
        extra = await _write_backlog(hookline, fast.url("/fast"), 3, 0)
        hookline.runtime.dispatcher.signal.notify()
        count = len(fast.on("/fast"))
        await _arrival_within(fast, count + 3, "/fast", 1.2)
        assert set(extra) <= {r.headers["webhook-id"] for r in fast.on("/fast")}

        # The slow one recovers: its whole backlog drains, each delivery once.
        receiver.delay.clear()
        await receiver.wait_for(len(backlog), "/slow", timeout=60)
        await hookline.idle()
        ids = [r.headers["webhook-id"] for r in receiver.on("/slow")]
        assert set(ids) == set(backlog)
        assert len(ids) == len(set(ids)), "a delivery was sent twice"
        assert await _due_and_unsent(hookline) == []
    finally:
        await fast.stop()


async def test_a_restart_with_a_leased_backlog_sends_each_delivery(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    first = await make_hookline(max_per_host=2)
    receiver.delay["/slow"] = 0.5
    backlog = await _write_backlog(first, receiver.url("/slow"), 1200, 10_000)
    first.runtime.dispatcher.signal.notify()
    await receiver.wait_inflight("/slow")
    await first.stop()
    receiver.delay.clear()
    again = await make_hookline(max_per_host=2)
    await receiver.wait_for(len(backlog), "/slow", timeout=60)
    await again.idle()
    ids = [r.headers["webhook-id"] for r in receiver.on("/slow")]
    assert set(ids) == set(backlog)
    assert len(ids) - len(set(ids)) <= 2  # at most the ones in flight at the stop
    assert await _due_and_unsent(again) == []


async def test_idle_across_many_destinations_with_retries_due_at_once(
    make_hookline: MakeHookline, monkeypatch: pytest.MonkeyPatch
) -> None:
    hookline = await make_hookline(max_per_host=1, retry_schedule=(0, 0, 0))
    ports = Ports()
    await ports.start(150)
    try:
        deliveries: list[Delivery] = []
        for url in ports.urls:
            deliveries.extend(due_delivery(url, retry_schedule=(0.0, 0.0)) for _ in range(4))
        ports.fail_first = {d.id for d in deliveries}
        async with hookline.runtime.store.ingest() as tx:
            await tx.insert_deliveries(deliveries)
        await hookline.idle()
        assert await _due_and_unsent(hookline) == []
        assert set(ports.ids) == {d.id for d in deliveries}
        assert len(ports.ids) == 2 * len(deliveries)
    finally:
        await ports.stop()


async def test_slow_backlogs_filling_memory_do_not_starve_another_destination(
    make_hookline: MakeHookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four slow destinations with backlogs in the outbox; claiming ahead for each of them
    # (16 places at a limit of 2) fills the 40 places of memory.
    monkeypatch.setattr("hookline.dispatcher.MAX_HELD", 40)
    monkeypatch.setattr("hookline.dispatcher.HELD_ROUNDS", 1)
    hookline = await make_hookline(max_per_host=2)
    watch = Watch(hookline, monkeypatch)
    slow = Ports()
    await slow.start(4)
    fast = Receiver()
    await fast.start()
    gate = slow.gate = asyncio.Event()
    try:
        for url in slow.urls:
            await _write_backlog(hookline, url, 200, 60_000)
        hookline.runtime.dispatcher.signal.notify()
        await watch.until(lambda: hookline.runtime.dispatcher.capacity() == 0)
        extra = await _write_backlog(hookline, fast.url("/fast"), 1, 0)
        hookline.runtime.dispatcher.signal.notify()
        # The slow ones answer now and then: each answer frees a place in memory. Starved,
        # the fast one would wait for their 800 due before it (75 rounds free at most 600).
        for _ in range(75):
            gate.set()
            await asyncio.sleep(0)
            gate.clear()
            if fast.on("/fast"):
                break
            await asyncio.sleep(0.2)
        assert [r.headers["webhook-id"] for r in fast.on("/fast")] == extra
        assert len(slow.ids) < 4 * 200
    finally:
        gate.set()
        await fast.stop()
        await slow.stop()


async def test_hung_destinations_with_bursts_handed_over_give_memory_back(
    make_hookline: MakeHookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Eight destinations take a burst each, handed over at commit (50 places each fill the
    # 400 of memory), then hang: nothing they hold is answered within the test.
    monkeypatch.setattr("hookline.dispatcher.MAX_HELD", 400)
    monkeypatch.setattr("hookline.dispatcher.SLOW_AFTER", 0.2)
    hookline = await make_hookline(max_per_host=2)
    dispatcher = hookline.runtime.dispatcher
    hung = Ports()
    await hung.start(8)
    hung.gate = asyncio.Event()
    try:
        for n, url in enumerate(hung.urls):
            rule = example_rule(name=f"hung-{n}", activity={"url": url, "timeout": 60})
            assert (await hookline.client.post("/api/v1/rules", json=rule)).status_code == 201
        fast = example_rule(
            name="fast", trigger={"event_type": "deposit_made"}, conditions={"all": []}
        )
        fast["activity"]["url"] = receiver.url("/fast")
        assert (await hookline.client.post("/api/v1/rules", json=fast)).status_code == 201
        burst = [spin_event(f"u-{i}") for i in range(50)]
        assert (await hookline.client.post("/api/v1/events", json=burst)).status_code == 202
        assert dispatcher.capacity() == 0  # every place is theirs
        deposit = spin_event("u-0", event_type="deposit_made")
        resp = await hookline.client.post("/api/v1/events", json=deposit)
        assert resp.status_code == 202, resp.text
        # Before their first answer times out (60 s), the hung ones give memory back.
        await receiver.wait_for(1, path="/fast", timeout=10)
        assert dispatcher.capacity() > 0
        # They answer again: what they gave back is claimed at once (no lease to wait for),
        # and each of their 400 deliveries is sent once.
        hung.gate.set()
        await hung.wait_for(400, timeout=20)
        await dispatcher.idle()
        assert len(hung.ids) == len(set(hung.ids)) == 400
    finally:
        hung.gate.set()
        await hung.stop()


async def test_a_destination_whose_requests_only_time_out_is_slow(
    make_hookline: MakeHookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timeout is no sign of life. Counted as an answer, a hung destination whose requests
    went out at different moments (here 0.3 s apart, timing out after 0.6 s) had an
    "answer" every 0.3 s, was never slow, and kept its whole share of memory."""
    monkeypatch.setattr("hookline.dispatcher.SLOW_AFTER", 0.5)
    hookline = await make_hookline(max_per_host=2)
    dispatcher = hookline.runtime.dispatcher
    watch = Watch(hookline, monkeypatch)
    receiver.delay["/hung"] = 30.0
    activity = {"url": receiver.url("/hung"), "timeout": 0.6, "retry_schedule": [0] * 20}
    await hookline.create_rule(activity=activity)
    await hookline.post("/api/v1/events", spin_event("u-0"))
    await receiver.wait_inflight("/hung")
    await asyncio.sleep(0.3)  # the second request goes out half a timeout after the first
    await hookline.client.post("/api/v1/events", json=[spin_event(f"u-{i}") for i in range(1, 8)])
    destination = destination_of(receiver.url("/hung"))
    # Slow, it may hold two rounds of its limit (4): it has 8, so no room is left.
    await watch.until(lambda: bool(watch.recorded) and dispatcher.room(destination) == 0, 5)
