"""Attempt records in the engine's group commits, attacked: a group that fails, a store
that fails, a writer that ends by a bug."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from hookline.errors import StoreError
from hookline.events import Event
from hookline.runtime import Runtime
from hookline.store.sql import SqlIngest
from tests.helpers import Hookline, Receiver, spin_event
from tests.test_attack_dispatch import MakeHookline
from tests.test_engine import _count_commits, _event, _outcome, _pending_delivery


async def test_an_event_that_fails_its_group_leaves_the_attempts_recorded_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery_id = await _pending_delivery(runtime)
    real_insert = SqlIngest.insert_events

    async def failing(self: SqlIngest, events: Sequence[Event]) -> None:
        if any(e.payload.get("i") == 666 for e in events):
            raise StoreError("disk full (simulated)")
        await real_insert(self, events)

    monkeypatch.setattr(SqlIngest, "insert_events", failing)
    commits = _count_commits(runtime)
    results = await asyncio.gather(
        runtime.engine.record_outcomes([_outcome(delivery_id)], 1),
        runtime.engine.submit([_event(666)]),
        runtime.engine.submit([_event(7)]),
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], StoreError)
    assert not isinstance(results[2], BaseException)
    assert commits[0] == 4  # the group, then each of its three works alone
    (attempt,) = await runtime.store.list_attempts(delivery_id)
    assert attempt.id == "att_1"


async def test_a_writer_that_ends_by_a_bug_fails_what_it_had_queued(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its queued works waited for ever: the recorder (and so the dispatcher's stop) hung."""
    delivery_id = await _pending_delivery(runtime)

    class Broken:
        def committed(self, *args: Any) -> None:
            raise RuntimeError("a bug")

    monkeypatch.setattr(runtime.engine, "tally", Broken())
    results = await asyncio.wait_for(
        asyncio.gather(
            runtime.engine.record_outcomes([_outcome(delivery_id)], 1),
            runtime.engine.submit([_event(1)]),
            return_exceptions=True,
        ),
        10,
    )
    assert all(isinstance(r, StoreError) for r in results), results
    assert runtime.engine.failing() == ["hookline-ingest-writer"]
    # With no writer, attempts go to the store alone (the recorder's next try).
    await runtime.engine.record_outcomes([_outcome(delivery_id, 2)], 2)
    assert {a.number for a in await runtime.store.list_attempts(delivery_id)} >= {2}
    await asyncio.wait_for(runtime.engine.stop(), 10)


async def test_a_stop_with_sends_in_flight_and_attempts_queued_records_every_answer_once(
    make_hookline: MakeHookline, receiver: Receiver
) -> None:
    first = await make_hookline()
    await first.create_rule(activity={"url": receiver.url("/hook")})
    await first.create_rule(name="slow", activity={"url": receiver.url("/slow")})
    receiver.delay["/slow"] = 0.3
    answers = await asyncio.gather(
        *(first.post("/api/v1/events", spin_event(f"u-{i}")) for i in range(40))
    )
    deliveries = {d for r in answers for d in r.json()["events"][0]["deliveries"]}
    assert len(deliveries) == 80
    await receiver.wait_inflight("/slow")
    await first.stop()  # while the fast ones' attempts ride in commits, the slow ones wait
    sent = [r.headers["webhook-id"] for r in receiver.requests]
    again = await make_hookline()
    await again.idle()
    store = again.runtime.store
    for delivery_id in sent:
        attempts = await store.list_attempts(delivery_id)
        assert len(attempts) == 1, (delivery_id, attempts)
    # What was not answered before the stop is sent after the restart, with the same id.
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(deliveries)


async def test_a_recorder_that_ended_by_a_bug_does_not_hang_the_stop(hookline: Hookline) -> None:
    dispatcher = hookline.runtime.dispatcher
    recorder = dispatcher._recorder
    assert recorder is not None
    recorder.cancel()
    await asyncio.gather(recorder, return_exceptions=True)
    dispatcher._outcomes.put_nowait(_outcome("dlv_gone"))  # an answer nobody records
    await asyncio.wait_for(dispatcher.stop(), 10)
    assert dispatcher._recorder is None
