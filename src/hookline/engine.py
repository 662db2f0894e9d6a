"""The ingest path: events in, state updated, rules matched, deliveries written, one commit.

Many concurrent requests share one transaction (group commit), so durability costs one
fsync per group, not per event. A caller's answer waits for the commit that holds its work.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hookline.brands import brand_text
from hookline.counters import Counter, advance, counting_time
from hookline.deliveries import LEASE_MARGIN_MS, Delivery, Origin, plan_delivery
from hookline.errors import HooklineError, StoreError
from hookline.events import UPDATE_PROFILE, Event, EventInput, now_ms
from hookline.ids import new_id
from hookline.journey_runner import (
    GROUP_EVENTS_PER_ROOT,
    MAX_CHAIN_DEPTH,
    MAX_CHAIN_EVENTS,
    TIMER_RETRY_MS,
    Applied,
    JourneyBatch,
    JourneyIndex,
    JourneyTimer,
    load_index,
)
from hookline.queue import Handoff, WorkSignal
from hookline.rules import CompiledRule, RuleIndex
from hookline.settings import Settings
from hookline.state import NO_BRAND, UserKey, apply_update, user_key, with_identity
from hookline.store.base import CounterKey, IngestTransaction, Outcome, Store
from hookline.store.journey_sql import JourneyStore
from hookline.store.journey_sql import active_users_of as jsql_active_users
from hookline.supervision import ended, supervised
from hookline.tallies import IngestTally

log = logging.getLogger("hookline.engine")

# Bound one group so a burst cannot make a single transaction huge.
MAX_GROUP_EVENTS = 5000
# Users whose state stays in memory (about 1 KiB each), saving a read per group.
STATE_CACHE_SIZE = 50_000
# Seconds after the last rule change before long-lived objects are frozen (see put_rule).
FREEZE_DELAY = 1.0
# While a group is worked on, let the loop run other tasks this often (seconds).
YIELD_EVERY = 0.002
# Due timers stepped between two such looks.
TIMER_SLICE = 50
# Users a stopped journey lets go per commit: a million waiting users leave in pieces.
STOP_USERS = 1000


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the caller learns about one event once it is committed."""

    id: str
    eid: str | None
    duplicate: bool
    deliveries: tuple[str, ...]


@dataclass(eq=False)
class _Work:
    """One caller's share of a group: a batch of events or a state patch."""

    events: Sequence[EventInput] = ()
    patch_user: UserKey | None = None
    patch: dict[str, Any] | None = None
    # Journey work: due timers (instance id, user), or a journey whose users all leave.
    timers: Sequence[tuple[str, UserKey]] = ()
    stop_journey: str | None = None
    # A stop's page of users: those after ``stop_after`` (by user_ext_id); once read, where
    # the next page starts (None: this was the last).
    stop_after: str = ""
    stop_next: str | None = None
    # The dispatcher's record of attempts, written with the group's events.
    outcomes: Sequence[Outcome] = ()
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def size(self) -> int:
        return len(self.events) or len(self.timers) or len(self.outcomes) or 1


class Engine:
    """Owns the rule index and the single writer task that commits groups."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        signal: WorkSignal,
        handoff: Handoff | None = None,
        journey_store: JourneyStore | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.signal = signal
        self.handoff = handoff
        self._freeze: asyncio.TimerHandle | None = None
        # Rule and webhook writes (hookline.catalog) hold this from their first read to
        # their index change, so the index changes in the order the store committed.
        self.rules_lock = asyncio.Lock()
        # This engine is the only writer of user state, so what it committed stays true.
        self._states = StateCache(STATE_CACHE_SIZE)
        self.index = RuleIndex()
        self.tally = IngestTally()  # read by /metrics
        self._queue: asyncio.Queue[_Work] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._stopping = False
        self.journey_store = journey_store
        self.stop_users = STOP_USERS
        self.journeys = JourneyIndex()
        self.journey_timer = (
            JourneyTimer(journey_store, self) if journey_store is not None else None
        )

    async def start(self) -> None:
        await self.reload_rules()
        if self.journey_store is not None:
            await self.reload_journeys()
        self._writer = supervised(self._run(), "hookline-ingest-writer")
        if self.journey_timer is not None:
            self.journey_timer.start()

    async def stop(self) -> None:
        """Finish every group already queued, then stop."""
        if self._writer is None:
            return
        # The dispatcher records its last attempts while this stops: they go to the store
        # alone from now on, not into a queue whose writer is about to end.
        self._stopping = True
        if self.journey_timer is not None:
            await self.journey_timer.stop()
        await self._queue.join()
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)
        self._writer = None
        self._stopping = False

    def failing(self) -> list[str]:
        """Its background loops that ended while it runs (see hookline.supervision)."""
        timer = self.journey_timer
        return ended(self._writer, timer.task if timer is not None else None)

    async def reload_rules(self) -> None:
        """Rebuild the index from the store; only changed rules are recompiled."""
        async with self.rules_lock:
            rules = await self.store.list_rules()
            webhooks = {w.id: w for w in await self.store.list_webhooks()}
            self.index.rebuild(rules, webhooks)
        self._freeze_soon()

    async def reload_journeys(self) -> None:
        """Compile the stored journeys (and the older versions instances still walk)."""
        assert self.journey_store is not None
        async with self.rules_lock:
            webhooks = {w.id: w for w in await self.store.list_webhooks()}
            await load_index(self.journey_store, webhooks, self.journeys)

    async def submit_timers(self, due: Sequence[tuple[str, UserKey]]) -> None:
        """Advance due journey instances, serialised with the events of their users."""
        await self._submit(_Work(timers=due))

    async def stop_journey(self, journey_id: str) -> int:
        """Every user inside the journey leaves with reason ``stopped``; how many left.

        ``stop_users`` users per commit: in one, a million waiting users were read into
        memory at once (gigabytes) and held the writer, every other user's events, meanwhile.
        """
        # One task: a caller that goes away (a client's timeout) must not end it half done.
        return await asyncio.shield(self._stop_pages(journey_id))

    async def _stop_pages(self, journey_id: str) -> int:
        left, after = 0, ""
        while True:
            work = _Work(stop_journey=journey_id, stop_after=after)
            stopped: int = await self._submit(work)
            left += stopped
            if work.stop_next is None:
                return left
            after = work.stop_next

    def put_rule(self, compiled: CompiledRule, webhook_version: int = 0) -> None:
        """Index a rule just saved (only its event type's entry changes)."""
        self.index.put(compiled, webhook_version)
        self._freeze_soon()

    def remove_rule(self, rule_id: str) -> None:
        self.index.remove(rule_id)
        self._freeze_soon()

    def _freeze_soon(self) -> None:
        """Move the long-lived objects (compiled rules) out of the garbage collector's sight.

        Every full collection walks every tracked object; 10,000 compiled rules made that a
        quarter of a delivery's cost. Frozen objects are still freed by reference counting;
        what was frozen last time is thawed and collected first, so garbage cycles frozen
        by an earlier change do not pile up. A burst of changes freezes once, a second
        after the last.
        """
        if self._freeze is not None:
            self._freeze.cancel()
        self._freeze = asyncio.get_running_loop().call_later(FREEZE_DELAY, _refreeze)

    async def submit(self, events: Sequence[EventInput]) -> list[Accepted]:
        """Queue events for the next group and wait until they are durably committed."""
        return await self._submit(_Work(events=events))  # type: ignore[no-any-return]

    async def record_outcomes(self, outcomes: Sequence[Outcome], now: int) -> None:
        """Store the dispatcher's attempts in the next group commit.

        On its own transaction, each record held the one writer connection while ingest
        groups queued behind it: a single event's commit waited 15 ms at p50 for one. In a
        group it adds its rows and no commit. While no writer runs (starting, stopping),
        the store writes it alone.
        """
        if self._stopping or self._writer is None or self._writer.done():
            await self.store.record_outcomes(outcomes, now)
            return
        await self._submit(_Work(outcomes=outcomes))

    async def patch_state(
        self, user_ext_id: str, patch: dict[str, Any], ext_brand_id: str | None = None
    ) -> dict[str, Any]:
        """Merge ``patch`` into the user's state, serialised with the events of that user.

        The user is (``ext_brand_id``, ``user_ext_id``); None is the user of no brand.
        """
        work = _Work(patch_user=user_key(ext_brand_id, user_ext_id), patch=patch)
        return await self._submit(work)  # type: ignore[no-any-return]

    async def _submit(self, work: _Work) -> Any:
        if self._writer is None or self._writer.done():
            raise StoreError("hookline is not accepting events (starting or stopping)")
        self._queue.put_nowait(work)
        # The commit must finish even if the caller goes away: the work is already queued.
        return await asyncio.shield(work.future)

    async def _run(self) -> None:
        group: list[_Work] = []
        try:
            while True:
                group = [await self._queue.get()]
                size = group[0].size
                while size < MAX_GROUP_EVENTS and not self._queue.empty():
                    work = self._queue.get_nowait()
                    group.append(work)
                    size += work.size
                try:
                    await self._commit_group(group)
                finally:
                    for _ in group:
                        self._queue.task_done()
        finally:
            self._abandon(group)

    def _abandon(self, group: list[_Work]) -> None:
        """The writer ends: what it was committing, and all still queued, fail.

        A stop finds nothing left; a bug left them waiting for ever: the requests that sent
        them, the dispatcher's recorder and so its stop, a stop's wait on the queue.
        """
        while not self._queue.empty():
            group.append(self._queue.get_nowait())
            self._queue.task_done()
        failed = StoreError("hookline's ingest writer ended (see /healthz); retry after a restart")
        for work in group:
            if not work.future.done():
                work.future.set_exception(failed)

    async def _commit_group(self, group: list[_Work]) -> None:
        try:
            results, batch = await self._commit(group)
        except Exception as exc:
            if len(group) > 1:
                # One bad share must not fail the others: commit each alone.
                for work in group:
                    await self._commit_group([work])
                return
            if group[0].timers:
                # One instance whose step cannot be stored must not hold back the other
                # timers of its batch, nor be claimed again at once for ever.
                await self._commit_timers_apart(group[0], exc)
                return
            if not isinstance(exc, HooklineError):
                log.exception("ingest commit failed")
                exc = StoreError(f"the events could not be stored: {exc}")
            if not group[0].future.done():
                group[0].future.set_exception(exc)
            return
        received = sum(len(w.events) for w in group)
        self.tally.committed(
            received, batch.duplicates, len(batch.events), len(batch.deliveries), batch.journeys
        )
        # Hand over before answering, so a caller's next request finds them on their way.
        if batch.handed and self.handoff is not None:
            self.handoff.offer(batch.handed)
        if batch.left:
            self.signal.notify()
        if batch.journeys is not None and batch.journeys.timers_set and self.journey_timer:
            self.journey_timer.wake.set()
        for work, result in zip(group, results, strict=True):
            if not work.future.done():
                work.future.set_result(result)

    async def _commit_timers_apart(self, work: _Work, exc: Exception) -> None:
        """A batch of timers that failed: each half alone, down to the one that fails, which
        is put off by TIMER_RETRY_MS (logged), as a timer whose step raised."""
        if len(work.timers) == 1:
            ((instance_id, _),) = work.timers
            log.error(
                "journey instance %s: its step could not be stored (%s); tried again in %d s",
                instance_id,
                exc,
                TIMER_RETRY_MS // 1000,
                exc_info=exc,
            )
            assert self.journey_store is not None
            try:
                await self.journey_store.put_off(instance_id, now_ms() + TIMER_RETRY_MS)
            except Exception as failed:  # the store itself fails: the timer loop waits
                work.future.set_exception(failed)
                return
            work.future.set_result(0)
            return
        half = len(work.timers) // 2
        parts = [_Work(timers=work.timers[:half]), _Work(timers=work.timers[half:])]
        for part in parts:
            await self._commit_group([part])
        failures = [e for e in (p.future.exception() for p in parts) if e is not None]
        if failures:
            work.future.set_exception(failures[0])
        else:
            work.future.set_result(sum(p.future.result() for p in parts))

    async def _commit(self, group: list[_Work]) -> tuple[list[Any], _Batch]:
        now = now_ms()
        eids = [e.eid for w in group for e in w.events if e.eid is not None]
        users = {user_key(e.ext_brand_id, e.user_ext_id) for w in group for e in w.events}
        users.update(w.patch_user for w in group if w.patch_user is not None)
        users.update(user for w in group for _, user in w.timers)
        async with self.store.ingest() as tx:
            journeys = await self._journey_batch(tx, group, users, now)
            known_ids = await tx.known_eids(eids) if eids else {}
            # A resent eid answers what the first send caused, read in this transaction.
            caused = await tx.delivery_ids(list(known_ids.values())) if known_ids else {}
            known = {eid: (id_, caused.get(id_, ())) for eid, id_ in known_ids.items()}
            states = self._states.get_many(users)
            missing = sorted(users - states.keys())
            if missing:
                states.update(await tx.load_states(missing))
            counters = (
                await tx.load_counters(sorted(users))
                if self._needs_counters(group, journeys)
                else None
            )
            batch = _Batch(self, tx, known, states, now, journeys, counters)
            results = [await batch.apply(work) for work in group]
            await batch.flush()
        # Committed: the states this group read or wrote are now what the store holds.
        self._states.put_many(batch.states)
        return results, batch

    def _needs_counters(self, group: list[_Work], journeys: JourneyBatch | None) -> bool:
        """Whether an event of this group may meet a rule that counts per user.

        Journeys emit events of any type, so with journeys at work the counters are read too.
        """
        counting = self.index.counting
        if not counting:
            return False
        if journeys is not None:
            return True
        return any(e.event_type in counting for w in group for e in w.events)

    async def _journey_batch(
        self, tx: IngestTransaction, group: list[_Work], users: set[UserKey], now: int
    ) -> JourneyBatch | None:
        """Read the journey instances this group may move (only when journeys exist)."""
        conn = getattr(tx, "conn", None)
        if conn is None or not self.journeys.live:
            return None
        for work in group:
            if work.stop_journey is not None:
                page = await jsql_active_users(
                    conn, work.stop_journey, after=work.stop_after, limit=self.stop_users
                )
                users.update(page)
                full = len({user for _, user in page}) >= self.stop_users
                work.stop_next = max(user for _, user in page) if full else None
        if not any(w.timers or w.stop_journey for w in group) and not any(
            self.journeys.reacts_to(e.event_type) for w in group for e in w.events
        ):
            return None
        return await JourneyBatch.load(self.journeys, conn, sorted(users), now)


def _refreeze() -> None:
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class StateCache:
    """The most recently used users' states, as committed (values are never mutated)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._states: OrderedDict[UserKey, dict[str, Any]] = OrderedDict()

    def get_many(self, users: Iterable[UserKey]) -> dict[UserKey, dict[str, Any]]:
        found = {}
        for user in users:
            state = self._states.get(user)
            if state is not None:
                self._states.move_to_end(user)
                found[user] = state
        return found

    def put_many(self, states: Mapping[UserKey, dict[str, Any]]) -> None:
        self._states.update(states)
        for user in states:
            self._states.move_to_end(user)
        while len(self._states) > self.size:
            self._states.popitem(last=False)


class _Batch:
    """The in-memory side of one group commit."""

    def __init__(
        self,
        engine: Engine,
        tx: IngestTransaction,
        known: dict[str, tuple[str, tuple[str, ...]]],
        states: dict[UserKey, dict[str, Any]],
        now: int,
        journeys: JourneyBatch | None = None,
        counters: dict[CounterKey, Counter] | None = None,
    ) -> None:
        self.engine = engine
        # The users' counters as read in this transaction (None: the group needs none), and
        # those this group changed, written back in the same commit.
        self.counters = counters
        self.counted: dict[CounterKey, Counter] = {}
        self.journeys = journeys
        self.tx = tx
        self.known = known  # eid -> (event id, its delivery ids)
        self.states = states
        self.now = now
        self.changed: dict[UserKey, dict[str, Any]] = {}
        self.events: list[Event] = []
        self.deliveries: list[Delivery] = []
        self.duplicates = 0
        # After flush: the deliveries leased to the in-process dispatcher, and the rest.
        self.handed: Sequence[Delivery] = ()
        self.left: Sequence[Delivery] = ()
        self.yield_at = time.perf_counter() + YIELD_EVERY
        # Events the chain being worked on may still emit: MAX_CHAIN_EVENTS from each root, an
        # event sent to hookline (_event at depth 0) or a timer's or a stop's step.
        self.chain_left = MAX_CHAIN_EVENTS
        # And this whole commit: each root adds GROUP_EVENTS_PER_ROOT (see _chain_starts).
        self.group_left = MAX_CHAIN_EVENTS
        self.group_emitted = 0
        self.chain_cut_by: set[str] = set()  # the bounds that cut the chain worked on

    async def apply(self, work: _Work) -> Any:
        if work.patch_user is not None:
            assert work.patch is not None
            key = work.patch_user
            brand, user = key
            current = self.states.get(key, {})
            # A state first made by a patch carries the brand as given (text).
            brand_now = current.get("ext_brand_id", None if brand == NO_BRAND else brand)
            state = apply_update(current, work.patch, user, brand_now)
            self.states[key] = self.changed[key] = state
            return state
        if self.journeys is not None and work.stop_journey is not None:
            applied = self.journeys.on_stop(work.stop_journey)
            for one in applied:
                self._journey_step(one)
            return len(applied)
        if self.journeys is not None and work.timers:
            stepped = 0
            for start in range(0, len(work.timers), TIMER_SLICE):
                await self._yield_now_and_then()
                part = work.timers[start : start + TIMER_SLICE]
                for one in self.journeys.on_timers(part, self.states):
                    self._journey_step(one)
                    stepped += 1
            return stepped
        if work.outcomes:
            await self.tx.record_outcomes(work.outcomes, self.now)
            return None
        if work.timers or work.stop_journey:
            return 0
        accepted = []
        for item in work.events:
            await self._yield_now_and_then()
            accepted.append(self._event(item))
        return accepted

    async def _yield_now_and_then(self) -> None:
        """A big group must not hold the loop: sends and answers wait behind it."""
        if time.perf_counter() >= self.yield_at:
            await asyncio.sleep(0)
            self.yield_at = time.perf_counter() + YIELD_EVERY

    def _event(self, item: EventInput, depth: int = 0) -> Accepted:
        if depth == 0:  # an event sent to hookline: a chain of emitted events starts here
            self._chain_starts()
        if item.eid is not None and item.eid in self.known:
            event_id, deliveries = self.known[item.eid]
            self.duplicates += 1
            return Accepted(event_id, item.eid, True, deliveries)
        event = Event(
            id=new_id("evt", self.now),
            eid=item.eid,
            event_type=item.event_type,
            user_ext_id=item.user_ext_id,
            ext_brand_id=item.ext_brand_id,
            event_date=item.event_date if item.event_date is not None else self.now,
            payload=item.payload,
            received_at=self.now,
        )
        self.events.append(event)
        state = self._state_after(event)
        rules = self.engine.index.match(event.event_type, event.ext_brand_id)
        journeys = self.journeys
        reacting = journeys is not None and journeys.index.reacts_to(event.event_type)
        ids: tuple[str, ...] = ()
        if rules or reacting:
            start = len(self.deliveries)
            context = {"event": event.template_scope(), "state": state}
            for rule in rules:
                if _matches(rule, context) and (
                    rule.limits is None or self._fires(rule, event, context)
                ):
                    self.deliveries.append(self._delivery(rule, event, context))
            if journeys is not None and reacting:
                # After the rules: journeys see the same event and the state it left.
                for applied in journeys.on_event(event, context["event"], state, depth):
                    self._journey_step(applied, event.id, depth)
            # What this event caused (a chained event's deliveries are that event's).
            ids = tuple(d.id for d in self.deliveries[start:] if d.event_id == event.id)
        if item.eid is not None:
            self.known[item.eid] = (event.id, ids)
        return Accepted(event.id, event.eid, False, ids)

    def _journey_step(
        self, applied: Applied, event_id: str | None = None, depth: int | None = None
    ) -> None:
        """Apply one journey step here: state patches, deliveries, then emitted events.

        ``event_id`` and ``depth``: the event whose step it is, and its depth in a chain of
        emitted events. A step no event drove (a timer, a stop) continues the chain of the
        event that entered the instance, or two journeys that enter each other through a
        delay would loop for ever (and double at each turn with two emit blocks).
        """
        step, journey = applied.step, applied.journey
        inst = step.instance
        if depth is None:  # a timer's or a stop's step: a chain starts here
            self._chain_starts()
            event_id, depth = inst.entry_event_id, inst.chain_depth
            if event_id is None:  # a row from before entry_event_id: its scope's, if text
                scoped = inst.entry_event.get("event_id")
                event_id = scoped if isinstance(scoped, str) else None
        user, brand = inst.user_ext_id, inst.ext_brand_id
        key = user_key(brand, user)
        for patch in step.state_patches:
            current = self.states.get(key, {})
            brand_now = current.get("ext_brand_id", brand)
            self.states[key] = self.changed[key] = apply_update(current, patch, user, brand_now)
        settings = self.engine.settings
        for planned in step.webhooks:
            origin = Origin(
                event_id,
                user,
                None,
                planned.webhook_id,
                journey.id,
                inst.id,
                brand_text(brand),
            )
            self.deliveries.append(
                plan_delivery(
                    new_id("dlv", self.now),
                    planned.webhook,
                    planned.context,
                    origin,
                    default_timeout=settings.default_timeout,
                    default_schedule=settings.retry_schedule,
                    now=self.now,
                )
            )
        for emitted in step.emitted:
            why = self._why_cut(depth)
            if why is not None:
                # Two journeys that trigger each other must not loop for ever, nor blocks
                # that emit their own trigger multiply. The cut is stored with this commit;
                # the first of each bound in a chain even past MAX_STORED_CUTS.
                assert self.journeys is not None
                first = why[0] not in self.chain_cut_by
                self.chain_cut_by.add(why[0])
                self.journeys.cut(applied, emitted.event_type, event_id or "", depth, first)
                if len(self.chain_cut_by) == 1 and first:  # once per chain: cuts are many
                    log.warning(
                        "journey %s: event %s for user %s not emitted, nor any more of this "
                        "chain past the same bound: %s",
                        journey.id,
                        emitted.event_type,
                        user,
                        why[1],
                    )
                continue
            self.chain_left -= 1
            self.group_left -= 1
            self.group_emitted += 1
            self._event(
                EventInput(None, emitted.event_type, user, brand, None, emitted.payload),
                depth + 1,
            )

    def _why_cut(self, depth: int) -> tuple[str, str] | None:
        """Which bound keeps an event emitted by a step at ``depth`` from being emitted, and
        why; None: none does."""
        if depth + 1 > MAX_CHAIN_DEPTH:
            return "depth", f"the chain is {MAX_CHAIN_DEPTH} events deep"
        if self.chain_left <= 0:
            return "chain", f"the event that started it caused {MAX_CHAIN_EVENTS} events"
        if self.group_left <= 0:
            return "commit", (
                f"the events and steps committed with it caused {self.group_emitted}, "
                f"{GROUP_EVENTS_PER_ROOT} for each and {MAX_CHAIN_EVENTS} more"
            )
        return None

    def _chain_starts(self) -> None:
        """A root (an event sent to hookline, a timer's or a stop's step) starts a chain."""
        self.chain_left = MAX_CHAIN_EVENTS
        self.chain_cut_by.clear()
        self.group_left += GROUP_EVENTS_PER_ROOT

    def _fires(self, rule: CompiledRule, event: Event, context: dict[str, Any]) -> bool:
        """Count the event for its user and a rule that counts; whether the rule fires."""
        assert rule.limits is not None
        if self.counters is None:
            # _needs_counters missed a case: firing without counting would break a promise.
            log.error("rule %s: counters were not read; the event is not counted", rule.rule.id)
            return False
        key = (rule.rule.id, user_key(event.ext_brand_id, event.user_ext_id))
        counter = self.counters.get(key) or Counter()
        fire, after = advance(
            rule.limits,
            counter,
            epoch=rule.rule.counting_epoch,
            at=counting_time(event.event_date, event.received_at),
            event=context["event"],
        )
        if after is not counter:
            self.counters[key] = self.counted[key] = after
        return fire

    def _state_after(self, event: Event) -> dict[str, Any]:
        user, brand = event.user_ext_id, event.ext_brand_id
        key = user_key(brand, user)
        current = self.states.get(key)
        if event.event_type == UPDATE_PROFILE:
            state = apply_update(current or {}, event.payload, user, brand)
        elif current is None:
            state = with_identity({}, user, brand)
        else:
            # The same brand as text (5 and "5" are one user): the state keeps its own form.
            return current
        self.states[key] = self.changed[key] = state
        return state

    def _delivery(self, rule: CompiledRule, event: Event, context: dict[str, Any]) -> Delivery:
        settings = self.engine.settings
        origin = Origin(
            event.id,
            event.user_ext_id,
            rule.rule.id,
            rule.rule.webhook_id,
            ext_brand_id=brand_text(event.ext_brand_id),
        )
        return plan_delivery(
            new_id("dlv", self.now),
            rule.webhook,
            context,
            origin,
            default_timeout=settings.default_timeout,
            default_schedule=settings.retry_schedule,
            now=self.now,
        )

    def _split(self, handoff: Handoff | None) -> tuple[list[Delivery], list[Delivery]]:
        """The deliveries to hand over (due now, with room), and those left to claims.

        Dead ones (a render failure) and ones whose schedule starts later are left too.
        """
        handed: list[Delivery] = []
        left: list[Delivery] = []
        total = handoff.capacity() if handoff is not None else 0
        rooms: dict[str, int] = {}
        for delivery in self.deliveries:
            due = delivery.next_attempt_at is not None and delivery.next_attempt_at <= self.now
            if handoff is None or not due or len(handed) >= total:
                left.append(delivery)
                continue
            destination = delivery.destination
            room = rooms.get(destination)
            if room is None:
                room = handoff.room(destination)
            if room > 0:
                handed.append(delivery)
            else:
                left.append(delivery)
            rooms[destination] = room - 1
        return handed, left

    async def flush(self) -> None:
        if self.journeys is not None:
            await self.journeys.flush(self.tx.conn)  # type: ignore[attr-defined]
        await self.tx.insert_events(self.events)
        await self.tx.save_states(self.changed, self.now)
        await self.tx.save_counters(self.counted, self.now)
        self.handed, self.left = self._split(self.engine.handoff)
        await self.tx.insert_deliveries(self.handed, lease_from=self.now + LEASE_MARGIN_MS)
        await self.tx.insert_deliveries(self.left)


def _matches(rule: CompiledRule, context: dict[str, Any]) -> bool:
    try:
        return rule.predicate(context)
    except Exception:  # conditions never raise by contract; a bug must not lose the event
        log.exception("condition of rule %s raised", rule.rule.id)
        return False
