"""The ingest writer on a real SQLite file, without HTTP."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from hookline.deliveries import Attempt, DeliveryStatus
from hookline.errors import StoreError
from hookline.events import EventInput
from hookline.rules import Rule, compile_rule
from hookline.runtime import Runtime
from hookline.store.base import Outcome
from hookline.webhooks import WebhookSpec


def _event(i: int, eid: str | None = None) -> EventInput:
    return EventInput(eid, "spin", f"u-{i % 10}", None, None, {"i": i})


def _count_commits(runtime: Runtime) -> list[int]:
    """Count the ingest transactions from now on: the one item of the list answered."""
    commits = [0]
    real = runtime.store.ingest

    @asynccontextmanager
    async def counting() -> AsyncIterator[Any]:
        commits[0] += 1
        async with real() as tx:
            yield tx

    runtime.store.ingest = counting  # type: ignore[method-assign]
    return commits


async def test_concurrent_requests_share_commits(runtime: Runtime) -> None:
    commits = _count_commits(runtime)
    results = await asyncio.gather(*(runtime.engine.submit([_event(i)]) for i in range(200)))
    assert len({r[0].id for r in results}) == 200
    assert commits[0] < 200  # grouped: far fewer transactions than requests
    for r in results[:5]:
        assert await runtime.store.get_event(r[0].id) is not None


async def _pending_delivery(runtime: Runtime) -> str:
    """A delivery in the outbox, as an event of a rule leaves it."""
    rule = Rule("rule_1", "r", True, "spin", None, WebhookSpec(url="http://h/x"), None, 1, 1)
    await runtime.store.save_rule(rule, create=True)
    await runtime.engine.reload_rules()
    (accepted,) = await runtime.engine.submit([_event(1)])
    (delivery_id,) = accepted.deliveries
    return delivery_id


def _outcome(delivery_id: str, number: int = 1) -> Outcome:
    attempt = Attempt(f"att_{number}", delivery_id, number, 1, 1.0, 200, (), "", None, True)
    return Outcome(attempt, DeliveryStatus.SUCCEEDED, None)


async def test_attempt_records_share_the_commits_of_events(runtime: Runtime) -> None:
    """Recorded alone, each record held the writer while ingest groups queued behind it."""
    delivery_id = await _pending_delivery(runtime)
    commits = _count_commits(runtime)
    real_record = runtime.store.record_outcomes

    async def alone(outcomes: Sequence[Outcome], now: int) -> None:
        raise AssertionError("recorded in a transaction of its own")

    runtime.store.record_outcomes = alone  # type: ignore[method-assign]
    await asyncio.gather(
        runtime.engine.record_outcomes([_outcome(delivery_id)], 1),
        *(runtime.engine.submit([_event(i)]) for i in range(20)),
    )
    assert commits[0] < 21
    (attempt,) = await runtime.store.list_attempts(delivery_id)
    assert attempt.status_code == 200
    delivery = await runtime.store.get_delivery(delivery_id)
    assert delivery is not None and delivery.status is DeliveryStatus.SUCCEEDED
    # Stopping, the engine hands the last records to the store: none waits on its queue.
    direct: list[int] = []

    async def store_alone(outcomes: Sequence[Outcome], now: int) -> None:
        direct.append(len(outcomes))
        await real_record(outcomes, now)

    runtime.store.record_outcomes = store_alone  # type: ignore[method-assign]
    stopping = asyncio.ensure_future(runtime.engine.stop())
    await asyncio.sleep(0)  # the stop has begun
    await runtime.engine.record_outcomes([_outcome(delivery_id, 2)], 2)
    await stopping
    assert direct == [1]
    assert len(await runtime.store.list_attempts(delivery_id)) == 2


async def test_state_patches_and_events_are_serialised(runtime: Runtime) -> None:
    patches = [runtime.engine.patch_state("u-1", {f"k{i}": i}) for i in range(50)]
    await asyncio.gather(*patches)
    state = await runtime.store.get_state("u-1")
    assert state is not None
    assert all(state[f"k{i}"] == i for i in range(50))
    assert state["user_ext_id"] == "u-1"


async def test_duplicate_eid_in_one_group(runtime: Runtime) -> None:
    a, b = await asyncio.gather(
        runtime.engine.submit([_event(1, "same")]), runtime.engine.submit([_event(2, "same")])
    )
    assert a[0].id == b[0].id
    assert [a[0].duplicate, b[0].duplicate].count(True) == 1


async def test_a_failing_share_does_not_fail_the_group(runtime: Runtime) -> None:
    real = runtime.store.ingest
    poisoned = {"bad"}

    @asynccontextmanager
    async def flaky() -> AsyncIterator[Any]:
        async with real() as tx:
            original = tx.insert_events

            async def insert(events: Any) -> None:
                if any(e.user_ext_id in poisoned for e in events):
                    raise RuntimeError("disk on fire")
                await original(events)

            tx.insert_events = insert  # type: ignore[method-assign]
            yield tx

    runtime.store.ingest = flaky  # type: ignore[method-assign]
    good = runtime.engine.submit([_event(1)])
    bad = runtime.engine.submit([EventInput(None, "spin", "bad", None, None, {})])
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert not isinstance(results[0], BaseException)
    assert isinstance(results[1], Exception)
    assert "disk on fire" in str(results[1])


async def test_state_cache_holds_only_committed_state(runtime: Runtime) -> None:
    def profile(level: str) -> EventInput:
        return EventInput(None, "update_profile", "u-1", None, None, {"level": level})

    await runtime.engine.submit([profile("gold")])
    real = runtime.store.ingest

    @asynccontextmanager
    async def failing() -> AsyncIterator[Any]:
        async with real() as tx:

            async def insert(events: Any) -> None:
                raise RuntimeError("disk on fire")

            tx.insert_events = insert  # type: ignore[method-assign]
            yield tx

    runtime.store.ingest = failing  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        await runtime.engine.submit([profile("silver")])
    runtime.store.ingest = real  # type: ignore[method-assign]
    # An empty patch reads the state through the engine (and its cache) without changing it.
    state = await runtime.engine.patch_state("u-1", {})
    assert state["level"] == "gold"
    assert (await runtime.store.get_state("u-1") or {})["level"] == "gold"
    await runtime.engine.submit([profile("platinum")])
    assert (await runtime.engine.patch_state("u-1", {}))["level"] == "platinum"


async def test_rule_changes_freeze_long_lived_objects(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hookline.engine.FREEZE_DELAY", 0)
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    rule = Rule("rule_1", "r", True, "spin", None, WebhookSpec(url="http://h/x"), None, 1, 1)
    runtime.engine.put_rule(compile_rule(rule, {}))
    assert [c.rule.id for c in runtime.engine.index.match("spin")] == ["rule_1"]
    # The freeze is a call_later(0): due on the next loop turn, run after this task resumes.
    for _ in range(2):
        await asyncio.sleep(0)
    assert gc.get_freeze_count() > 0
    runtime.engine.remove_rule("rule_1")
    assert runtime.engine.index.match("spin") == ()
