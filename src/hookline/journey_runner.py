"""Journeys inside the engine: the index of running versions, the per-commit work, the timer.

The engine's writer applies journey steps in the same group commit as the events and timers
that cause them (see engine._Batch); this module holds what that needs. A waiting user costs a
row with a due time, never a task: one timer loop claims due instances in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.errors import HooklineError
from hookline.events import Event, now_ms
from hookline.ids import new_id
from hookline.journeys import (
    ChainCut,
    CompiledJourney,
    EntryMode,
    FinishReason,
    Instance,
    InstanceStatus,
    Journey,
    JourneyStatus,
    Step,
    compile_journey,
    enter,
    may_enter,
    merged_state,
    on_event,
    on_timer,
    stop,
)
from hookline.labels import printable
from hookline.rules import SavedWebhook
from hookline.state import UserKey, user_key
from hookline.store import journey_sql as jsql
from hookline.supervision import supervised

if TYPE_CHECKING:
    from hookline.engine import Engine

log = logging.getLogger("hookline.journeys")

# A chain of events emitted by journeys (and the campaign events) stops at this depth.
MAX_CHAIN_DEPTH = 8
# Events one event (or one timer or stop step) may cause through journeys, all depths
# together. The depth alone bounds no fan-out: a journey whose three blocks each emit its own
# trigger entered 3 + 9 + ... + 3**8 = 9,840 times in the commit of one event.
MAX_CHAIN_EVENTS = 1000
# And a commit's events caused through journeys: MAX_CHAIN_EVENTS, plus this many for each
# event, timer or stop step in it. Bounded per event only, a batch of 1,000 events into
# journeys that fan out caused a million in one commit: minutes of the writer, gigabytes.
# Ordinary journeys stay far below it: each entry emits campaign_started and _finished, and
# an event that enters a dozen journeys, each emitting two events more, causes 48.
GROUP_EVENTS_PER_ROOT = 50
# Cuts stored per commit; /metrics counts them all. A journey of many blocks that each emit
# its trigger made one event store 198,000 cut rows once its chain was spent.
MAX_STORED_CUTS = 1000
# Due instances claimed per timer round.
TIMER_BATCH = 1000
# Claimed batches queued for the writer at most (one committing, the next waiting).
TIMER_AHEAD = 2
# A timer whose step failed (a bug) is tried again this much later (ms), not at once.
TIMER_RETRY_MS = 60_000
# The timer looks again at least this often (seconds), in case a wake-up was missed.
TIMER_IDLE = 1.0
# Journeys whose finished walks may still convert (a stopped one counts no more).
_RUNNING = frozenset({JourneyStatus.ACTIVE, JourneyStatus.PAUSED})
# Journeys everyone has left, or leaves when next met.
_LEFT = frozenset({JourneyStatus.STOPPED, JourneyStatus.ARCHIVED})


@dataclass
class JourneyIndex:
    """Compiled journey versions: the current one of each journey, and older ones in use."""

    versions: dict[tuple[str, int], CompiledJourney] = field(default_factory=dict)
    current: dict[str, CompiledJourney] = field(default_factory=dict)
    by_trigger: dict[str, tuple[CompiledJourney, ...]] = field(default_factory=dict)
    watched: frozenset[str] = frozenset()
    lifetime_ids: tuple[str, ...] = ()
    problems: dict[str, str] = field(default_factory=dict)
    # Stored instances met that cannot be read (id: why): skipped, their timers cleared.
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return bool(self.versions)

    def reacts_to(self, event_type: str) -> bool:
        return event_type in self.watched

    def version(self, journey_id: str, version: int) -> CompiledJourney | None:
        return self.versions.get((journey_id, version))

    def put(self, compiled: CompiledJourney) -> None:
        self.current[compiled.id] = compiled
        self.versions[(compiled.id, compiled.version)] = compiled
        self.problems.pop(compiled.id, None)
        self._derive()

    def refresh(self, compiled: Iterable[CompiledJourney]) -> None:
        """Replace versions already indexed (recompiled after a saved webhook changed)."""
        for journey in compiled:
            key = (journey.id, journey.version)
            if key not in self.versions:
                continue
            self.versions[key] = journey
            if self.current.get(journey.id) is not None and (
                self.current[journey.id].version == journey.version
            ):
                self.current[journey.id] = journey
        self._derive()

    def using(self, webhook_id: str) -> list[CompiledJourney]:
        """The indexed versions whose webhook blocks call this saved webhook."""
        return [j for j in self.versions.values() if webhook_id in j.webhook_ids]

    def remove(self, journey_id: str) -> None:
        self.current.pop(journey_id, None)
        for key in [k for k in self.versions if k[0] == journey_id]:
            del self.versions[key]
        self._derive()

    def rebuild(self, compiled: Iterable[CompiledJourney]) -> None:
        self.versions = {}
        self.current = {}
        for journey in compiled:
            self.versions[(journey.id, journey.version)] = journey
            best = self.current.get(journey.id)
            if best is None or best.version < journey.version:
                self.current[journey.id] = journey
        self._derive()

    def _derive(self) -> None:
        triggers: dict[str, list[CompiledJourney]] = {}
        watched: set[str] = set()
        for journey in self.current.values():
            if journey.journey.status is JourneyStatus.ACTIVE:
                triggers.setdefault(journey.trigger, []).append(journey)
                watched.add(journey.trigger)
        for journey in self.versions.values():
            watched.update(journey.watched_types())
        self.by_trigger = {k: tuple(v) for k, v in triggers.items()}
        self.watched = frozenset(watched)
        self.lifetime_ids = tuple(
            j.id for j in self.current.values() if j.mode is EntryMode.ONCE_IN_LIFETIME
        )


async def load_index(
    store: jsql.JourneyStore, webhooks: dict[str, SavedWebhook], index: JourneyIndex
) -> None:
    """Compile every journey's current version and the older versions instances still walk."""
    compiled: list[CompiledJourney] = []
    problems: dict[str, str] = {}
    wanted: list[Journey] = [
        j for j in await store.list_journeys() if j.status is not JourneyStatus.DRAFT
    ]
    current = {(j.id, j.version) for j in wanted}
    # Older versions only finished walks still convert on: no user is held up without them.
    for_goals: set[tuple[str, int]] = set()
    for (journey_id, version), walked in (await store.versions_in_use(now_ms())).items():
        if (journey_id, version) not in current:
            old = await store.get_version(journey_id, version)
            if old is not None:
                wanted.append(old)
                if not walked:
                    for_goals.add((journey_id, version))
    for journey in wanted:
        if journey.problem is not None:
            problems[journey.id] = journey.problem
            continue
        try:
            compiled.append(compile_journey(journey, webhooks))
        except HooklineError as exc:
            if (journey.id, journey.version) in for_goals:
                # A saved webhook it called may be gone (nobody walks it): no load problem.
                log.warning(
                    "journey %s (%s) version %d no longer compiles (%s): the users who walked "
                    "it to its end no longer convert",
                    printable(journey.name),
                    journey.id,
                    journey.version,
                    exc.detail,
                )
                continue
            # As for rules: what was valid when saved but no longer is, is skipped, loudly.
            log.error(
                "journey %s (%s) is skipped: %s", printable(journey.name), journey.id, exc.detail
            )
            problems[journey.id] = exc.detail
    index.rebuild(compiled)
    index.problems = problems


@dataclass(frozen=True, slots=True)
class Applied:
    """A step and the journey version it ran on."""

    journey: CompiledJourney
    step: Step


class JourneyBatch:
    """The journey side of one group commit: instances read once, written once."""

    def __init__(
        self,
        index: JourneyIndex,
        instances: Sequence[Instance],
        ever: set[tuple[str, UserKey]],
        now: int,
    ) -> None:
        self.index = index
        self.now = now
        self.ever = ever
        self.by_user: dict[UserKey, list[Instance]] = {}
        # Finished walks whose goal still counts (goal_until), by user: they only convert.
        self.converting: dict[UserKey, list[Instance]] = {}
        # As read in this transaction: the store updates these, and inserts the others.
        self.loaded: dict[str, Instance] = {}
        for inst in instances:
            active = inst.status is InstanceStatus.ACTIVE
            (self.by_user if active else self.converting).setdefault(inst.user, []).append(inst)
            self.loaded[inst.id] = inst
        self.closed_goals: list[str] = []  # stopped journeys: their goal windows close
        self.changed: dict[str, Instance] = {}
        self.counts: dict[tuple[str, str], tuple[int, int]] = {}
        self.timers_set = False
        self.stuck: list[str] = []  # due, claimed, not loaded: rows that cannot be read
        self.cuts: list[ChainCut] = []  # events not emitted: their chain was too deep
        self.cut_count = 0  # all of them; only the first MAX_STORED_CUTS are stored
        # Counted into the engine's tally once this group is committed.
        self.entered = 0
        self.finished: dict[FinishReason, int] = {}

    @classmethod
    async def load(
        cls,
        index: JourneyIndex,
        conn: AsyncConnection,
        users: Sequence[UserKey],
        now: int,
    ) -> JourneyBatch:
        instances = (
            await jsql.load_active(conn, users, index.unreadable, converting_at=now)
            if users
            else []
        )
        ever: set[tuple[str, UserKey]] = set()
        if index.lifetime_ids and users:
            ever = await jsql.entered_ever(conn, users, index.lifetime_ids)
        return cls(index, instances, ever, now)

    def _record(self, journey: CompiledJourney, step: Step) -> Applied:
        inst = step.instance
        before = self.changed.get(inst.id) or self.loaded.get(inst.id)
        # A walk that had finished and now converts late is no second finish.
        newly = before is None or before.status is InstanceStatus.ACTIVE
        self.changed[inst.id] = inst
        users = self.by_user.setdefault(inst.user, [])
        users[:] = [i for i in users if i.id != inst.id]
        if inst.status is InstanceStatus.ACTIVE:
            users.append(inst)
            if inst.due_at is not None:
                self.timers_set = True
        elif inst.finish_reason is not None and newly:
            reason = inst.finish_reason
            self.finished[reason] = self.finished.get(reason, 0) + 1
        for name in step.entered:
            e, p = self.counts.get((journey.id, name), (0, 0))
            self.counts[(journey.id, name)] = (e + 1, p)
        for name in step.passed:
            e, p = self.counts.get((journey.id, name), (0, 0))
            self.counts[(journey.id, name)] = (e, p + 1)
        for error in step.render_errors:
            log.warning("journey %s instance %s: %s", journey.id, inst.id, error)
        return Applied(journey, step)

    def cut(
        self, applied: Applied, event_type: str, event_id: str, depth: int, keep: bool = False
    ) -> None:
        """Record that ``applied`` did not emit ``event_type``: the step of ``event_id``, at
        ``depth``, was as deep as a chain goes (or as wide). Counted always; stored while
        fewer than MAX_STORED_CUTS are, or when ``keep``."""
        self.cut_count += 1
        if len(self.cuts) >= MAX_STORED_CUTS and not keep:
            return
        inst = applied.step.instance
        self.cuts.append(
            ChainCut(
                id=new_id("jcc", self.now),
                journey_id=inst.journey_id,
                version=inst.version,
                instance_id=inst.id,
                user_ext_id=inst.user_ext_id,
                ext_brand_id=inst.ext_brand_id,
                event_type=event_type,
                depth=depth,
                event_id=event_id,
                cut_at=self.now,
            )
        )

    def on_event(
        self, event: Event, scope: dict[str, Any], state: dict[str, Any], depth: int = 0
    ) -> list[Applied]:
        """Advance the user's instances on this event, then enter the journeys it triggers;
        ``depth``: the event's in a chain of emitted events, kept by the instances it enters.

        An event that comes while the user is inside a ``once_while_active`` journey enters
        no second walk, even when it is the one that ends the first (an awaited event of
        the trigger's type, an exit or a goal): it was the first walk's event.
        """
        applied: list[Applied] = []
        user = user_key(event.ext_brand_id, event.user_ext_id)
        brand = user[0]
        inside = {inst.journey_id for inst in self.by_user.get(user, ())}
        for inst in list(self.by_user.get(user, ())):
            journey = self.index.version(inst.journey_id, inst.version)
            if journey is None:
                continue
            if self._left_behind(inst):
                applied.append(self._record(journey, stop(journey, inst, self.now)))
                continue
            step = on_event(journey, inst, event.event_type, scope, state, self.now)
            if step is not None:
                applied.append(self._record(journey, step))
                state = _with_patches(state, step)
        applied += self._late_conversions(user, event, scope, state)
        context = {"event": scope, "state": state}
        for journey in self.index.by_trigger.get(event.event_type, ()):
            own = journey.journey.ext_brand_id
            if own is not None and str(own) != brand:
                continue  # a journey of one brand is entered by that brand's users only
            running = journey.id in inside or any(
                i.journey_id == journey.id for i in self.by_user.get(user, ())
            )
            ever = (journey.id, user) in self.ever
            try:
                allowed = may_enter(journey, context, running=running, ever=ever)
            except Exception:  # conditions never raise by contract; a bug must not lose events
                log.exception("entry conditions of journey %s raised", journey.id)
                allowed = False
            if not allowed:
                continue
            self.ever.add((journey.id, user))
            self.entered += 1
            instance_id = new_id("jri", self.now)
            step = enter(
                journey,
                instance_id,
                event.user_ext_id,
                event.ext_brand_id,
                scope,
                state,
                self.now,
                entry_event_id=event.id,
                chain_depth=depth,
            )
            applied.append(self._record(journey, step))
            state = _with_patches(state, step)
        return applied

    def _late_conversions(
        self, user: UserKey, event: Event, scope: dict[str, Any], state: dict[str, Any]
    ) -> list[Applied]:
        """The goal event of a user who walked a journey to its end, while the goal counts."""
        applied: list[Applied] = []
        waiting = self.converting.get(user)
        for inst in list(waiting or ()):
            journey = self.index.version(inst.journey_id, inst.version)
            current = self.index.current.get(inst.journey_id)
            if journey is None or current is None or current.journey.status not in _RUNNING:
                continue
            step = on_event(journey, inst, event.event_type, scope, state, self.now)
            if step is not None and waiting is not None:
                waiting.remove(inst)
                applied.append(self._record(journey, step))
        return applied

    def on_timers(
        self, timers: Sequence[tuple[str, UserKey]], states: dict[UserKey, dict[str, Any]]
    ) -> list[Applied]:
        """Step the claimed instances that are still due; one that fails is put off, alone."""
        applied: list[Applied] = []
        for instance_id, user in timers:
            inst = next((i for i in self.by_user.get(user, ()) if i.id == instance_id), None)
            if inst is None:
                # Finished meanwhile (then its timer is gone), or a row that cannot be read:
                # its timer is cleared, or it would be claimed again and again.
                self.stuck.append(instance_id)
                continue
            if inst.due_at is None or inst.due_at > self.now:
                continue  # moved on meanwhile (an event came first)
            journey = self.index.version(inst.journey_id, inst.version)
            if journey is not None and self._left_behind(inst):
                applied.append(self._record(journey, stop(journey, inst, self.now)))
                continue
            try:
                step = (
                    on_timer(journey, inst, states.get(user, {}), self.now)
                    if journey is not None
                    else None
                )
            except Exception:  # a bug in one step must not hold back the batch
                log.exception("instance %s: timer step failed; tried again later", inst.id)
                later = self.now + TIMER_RETRY_MS
                self.changed[inst.id] = replace(inst, due_at=later, updated_at=self.now)
                continue
            if step is None or journey is None:
                # Nothing can move it: drop the timer rather than claim it for ever.
                log.error("instance %s has a timer nothing can handle; cleared", inst.id)
                self.changed[inst.id] = replace(inst, due_at=None, updated_at=self.now)
                continue
            applied.append(self._record(journey, step))
        return applied

    def _left_behind(self, inst: Instance) -> bool:
        """Whether ``inst`` is still inside a journey that was stopped: the stop's last pages
        were never committed (the server died meanwhile). It leaves now, not walks on."""
        current = self.index.current.get(inst.journey_id)
        return current is not None and current.journey.status in _LEFT

    def on_stop(self, journey_id: str) -> list[Applied]:
        applied: list[Applied] = []
        self.closed_goals.append(journey_id)
        for finished in self.converting.values():
            finished[:] = [i for i in finished if i.journey_id != journey_id]
        for instances in list(self.by_user.values()):
            for inst in list(instances):
                if inst.journey_id != journey_id:
                    continue
                journey = self.index.version(inst.journey_id, inst.version)
                journey = journey or self.index.current.get(journey_id)
                if journey is None:
                    continue
                applied.append(self._record(journey, stop(journey, inst, self.now)))
        return applied

    async def flush(self, conn: AsyncConnection) -> None:
        await jsql.save_instances(conn, self.changed.values(), self.loaded)
        await jsql.add_block_counts(conn, self.counts)
        await jsql.insert_chain_cuts(conn, self.cuts)
        for journey_id in self.closed_goals:
            await jsql.close_goal_windows(conn, journey_id)
        if self.stuck and await jsql.clear_stuck_timers(conn, self.stuck, self.now):
            log.error("journey instances %s cannot be read; their timers are cleared", self.stuck)


def _with_patches(state: dict[str, Any], step: Step) -> dict[str, Any]:
    if not step.state_patches:
        return state
    for patch in step.state_patches:
        state = merged_state(state, patch)
    return state


class JourneyTimer:
    """One task for every waiting user: claims due instances in batches for the writer.

    While one batch is being committed the next is already claimed and queued
    (``ahead`` batches at most), so the writer never waits for a claim; a claim skips
    the instances of batches not yet committed.
    """

    def __init__(
        self,
        store: jsql.JourneyStore,
        engine: Engine,
        batch: int = TIMER_BATCH,
        ahead: int = TIMER_AHEAD,
    ):
        self.store = store
        self.engine = engine
        self.batch = batch
        self.ahead = ahead
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending: deque[tuple[asyncio.Task[None], frozenset[str]]] = deque()
        self._claimed: set[str] = set()
        # A batch failed to commit: the next claim waits a round (the store may be failing).
        self._failed = False

    def start(self) -> None:
        self._task = supervised(self._run(), "hookline-journey-timer")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        # Batches already queued are the writer's: it commits them before it stops.
        await self.drain()

    @property
    def task(self) -> asyncio.Task[None] | None:
        """Its loop, once started (None after a stop)."""
        return self._task

    async def _run(self) -> None:
        while True:
            self.wake.clear()
            try:
                if await self.tick() and not self._failed:
                    continue
                await self.drain()
                next_due = await self.store.next_due_at()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("journey timer round failed; retrying")
                next_due = None
            wait = TIMER_IDLE
            if next_due is not None and not self._failed:
                wait = min(max((next_due - now_ms()) / 1000, 0.0), TIMER_IDLE)
            # Claimed again at once, a batch the store cannot commit failed (and was logged)
            # hundreds of times a second.
            self._failed = False
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)

    async def tick(self) -> int:
        """Claim one batch of the instances due now and queue it; how many were claimed."""
        # Room first, then the claim: the writer still has a batch queued while this one is
        # read, and the read, after one more commit, passes over one uncommitted batch fewer.
        while len(self._pending) >= self.ahead:
            await self._settle_oldest()
        due = await self.store.due(now_ms(), self.batch, skip=self._claimed)
        if not due:
            return 0
        ids = frozenset(instance_id for instance_id, _ in due)
        self._claimed |= ids
        task = asyncio.create_task(self.engine.submit_timers(due))
        self._pending.append((task, ids))
        return len(due)

    async def drain(self) -> None:
        """Wait until every queued batch is committed (or failed, then logged)."""
        while self._pending:
            await self._settle_oldest()

    async def _settle_oldest(self) -> None:
        task, ids = self._pending[0]
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                raise  # this task is cancelled, not the batch: it stays queued
            log.error("a batch of %d journey timers was cancelled; claimed again", len(ids))
        except Exception:
            # Not committed: the instances are still due and will be claimed again.
            log.exception("a batch of %d journey timers failed", len(ids))
            self._failed = True
        self._pending.popleft()
        self._claimed -= ids
