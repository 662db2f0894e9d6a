"""The sending loop: take deliveries, send them, record every attempt.

Deliveries arrive two ways: handed over by the engine right after their commit (leased to
this process when written, so no claim is needed), or claimed from the outbox (retries,
recovery, and whatever did not fit in memory). Both wait in per-destination queues that
are served round-robin under a global concurrency limit and a per-destination limit, so
one slow host never holds slots that other hosts could use.

A :class:`~hookline.sender.Sender` does the HTTP, in this process or in sender
processes; outcomes are recorded here, in batches.

Each attempt carries the signing keys its webhook has at that moment, from the key ring
that the catalog keeps current (no database read per delivery). A delivery whose rule or
webhook was deleted has no keys left: it is sent unsigned (still with ``webhook-id`` and
``webhook-timestamp``), and its attempt says so in ``warning``. Deleting a webhook revokes
its secret; a receiver that verifies refuses such a request, as it should.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from hookline.deliveries import (
    LEASE_MARGIN_MS,
    Attempt,
    Delivery,
    DeliveryStatus,
    is_retryable,
    is_success,
    next_delay,
)
from hookline.events import now_ms
from hookline.ids import new_id
from hookline.queue import WorkSignal
from hookline.sender import Exchange, Request, Sender, internal_error
from hookline.settings import Settings
from hookline.signing import SecretRing
from hookline.store.base import Outcome, Store
from hookline.supervision import ended, supervised
from hookline.tallies import AttemptTally

RecordOutcomes = Callable[[Sequence[Outcome], int], Awaitable[None]]

log = logging.getLogger("hookline.dispatcher")


CLAIM_BATCH = 500
RECORD_BATCH = 2000
# How many deliveries may wait in memory (queued or in flight); beyond it the outbox holds
# them until a claim. Bounds memory when events arrive faster than receivers answer.
MAX_HELD = 20_000
# Claims keep up to this many rounds of a destination's limit waiting in memory. A backlog
# (ingest outruns delivery) comes back through claims: at 4 rounds (128 rows at the default
# 32) claiming cost batches of 100 about 190-210 µs of server CPU per delivery, at 8 about 165.
CLAIM_AHEAD = 8
# The engine hands over at most this many rounds of a destination's limit: a destination
# that hangs until its timeouts cannot take every place in memory from the others.
HELD_ROUNDS = 16
# ... and at least this share of MAX_HELD. At the default limit (32) sixteen rounds are 512,
# fewer than one burst of batched events brings to one destination; the rest went to the
# outbox and were claimed back, row by row, at about a sixth of the ingest core's time.
HELD_SHARE = 8
# A destination with requests in flight and no answer for this long (seconds) is slow: it
# may hold SLOW_ROUNDS rounds of its limit in memory, not HELD_SHARE. When free places fall
# under a RESERVE_SHARE of MAX_HELD, slow destinations give the rest back to the outbox, so
# destinations that hang after a big burst was handed to them cannot keep every place in
# memory until their timeouts (a round of 15 s each) free it, while others wait. An answer
# is an HTTP status, or an error that came sooner than SLOW_AFTER; a timeout is none.
SLOW_AFTER = 1.0
SLOW_ROUNDS = 2
RESERVE_SHARE = 4
MAX_IDLE_WAIT = 5.0
# How often a claim may read past the backlog of destinations that have no room, to find
# other destinations' due work behind it. That read walks the whole backlog (100,000 rows:
# ~20 ms of the writer); every claim did it, up to twenty times a second, under load.
LOOK_PAST_EVERY_MS = 500
# Failed attempts in a row to one destination before the log says so, once per streak.
FAILING_STREAK = 5


class Dispatcher:
    """Sends deliveries until stopped; ``idle()`` lets tests wait without sleeping."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        signal: WorkSignal,
        sender: Sender,
        keyring: SecretRing | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.signal = signal
        self.sender = sender
        self.keyring = keyring if keyring is not None else SecretRing()
        # Where attempts are written: the store alone, or (wired by the runtime) the
        # engine's next group commit, so ingest does not wait behind a commit of its own.
        self.record_outcomes: RecordOutcomes = store.record_outcomes
        # In flight: delivery id -> destination. An answer to an id no longer here (given up
        # by stop()) is not recorded: its lease frees the delivery after a restart.
        self._inflight: dict[str, str] = {}
        self._none_in_flight = asyncio.Event()
        self._per_host: Counter[str] = Counter()  # in flight, by destination
        # Busy destinations: when each last answered, or began to be busy (time.monotonic()).
        self._answered: dict[str, float] = {}
        # Waiting to be sent, by destination; destinations with work and room, in turn.
        self._ready: dict[str, deque[Delivery]] = {}
        self._turns: dict[str, None] = {}
        # Ids waiting, in flight, or sent but not yet recorded: a claim never takes them
        # again, and their number bounds what this dispatcher holds in memory.
        self._held: set[str] = set()
        self._outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
        self._loop_task: asyncio.Task[None] | None = None
        self._recorder: asyncio.Task[None] | None = None
        self._slot_freed = asyncio.Event()
        self._starved = False  # due work waits in the outbox for a free slot
        self._idle = asyncio.Event()
        # Counts what may make a read of the outbox stale: a recording, idle() asking.
        self._epoch = 0
        self._look_past_at = 0  # when a claim may next read past full destinations
        # Destinations without room when the last claim found nothing although work was due:
        # their backlog fills the claim's window, so claiming again before one of them has
        # room (or before the next look past them) would read the same rows for nothing.
        self._blocked: frozenset[str] = frozenset()
        self._full_at_claim: frozenset[str] = frozenset()
        # Failed attempts in a row, by destination; a success ends the streak.
        self._streaks: dict[str, int] = {}
        self.tally = AttemptTally()  # read by /metrics

    async def start(self) -> None:
        released = await self.store.release_leases()
        if released:
            log.info("re-queued %d deliveries left in flight by a previous run", released)
        await self.sender.start()
        self._recorder = supervised(self._record_loop(), "hookline-recorder")
        self._loop_task = supervised(self._claim_loop(), "hookline-dispatcher")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, let in-flight sends finish (up to ``grace`` s), record them all.

        Deliveries still waiting in memory stay leased in the outbox; the next start frees
        them.
        """
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        waiting = sum(len(queue) for queue in self._ready.values())
        if waiting:
            log.info("%s not yet sent stay in the outbox for the next start", _count(waiting))
        self._ready.clear()
        self._turns.clear()
        if self._inflight:
            log.info("waiting up to %g s for %s in flight", grace, _count(len(self._inflight)))
            self._none_in_flight.clear()
            try:
                await asyncio.wait_for(self._none_in_flight.wait(), grace)
            except TimeoutError:
                log.warning(
                    "%d sends did not finish within %g s; they are sent again after a restart",
                    len(self._inflight),
                    grace,
                )
                self._held.difference_update(self._inflight)
                self._inflight.clear()
                self._per_host.clear()
                self._answered.clear()
        if self._recorder is not None:
            # A recorder that ended by a bug records nothing more: waiting for it hung the stop.
            recorded = asyncio.ensure_future(self._outcomes.join())
            await asyncio.wait({recorded, self._recorder}, return_when=asyncio.FIRST_COMPLETED)
            recorded.cancel()
            if self._outcomes.qsize():
                log.error(
                    "%d attempts were not recorded (the recorder ended); sent again after a "
                    "restart",
                    self._outcomes.qsize(),
                )
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)
            self._recorder = None
        self._held.clear()  # what was waiting stays leased in the outbox
        await self.sender.close()

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until nothing is due now, nothing is in flight and every attempt is recorded."""
        self._idle.clear()
        self._epoch += 1  # a read already under way must not answer this call
        self.signal.notify()
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def _claim_loop(self) -> None:
        while True:
            try:
                if not await self._claim():
                    await self._wait_for_work()
            except Exception:
                # A database hiccup must not end retries and recovery for this process.
                log.exception("claiming deliveries failed; retrying in 1 s")
                await asyncio.sleep(1)

    def failing(self) -> list[str]:
        """Its background loops that ended while it runs (see hookline.supervision)."""
        return ended(self._loop_task, self._recorder)

    def capacity(self) -> int:
        if self._loop_task is None or self._loop_task.done():
            return 0
        return max(0, MAX_HELD - len(self._held))

    def holds(self, delivery_id: str) -> bool:
        """Whether the delivery waits here, is in flight, or has an unrecorded attempt."""
        return delivery_id in self._held

    def room(self, destination: str) -> int:
        """How many more deliveries to ``destination`` the engine may hand over now."""
        if self._slow(destination, time.monotonic()):
            share = self.settings.max_per_host * SLOW_ROUNDS
        else:
            share = max(self.settings.max_per_host * HELD_ROUNDS, MAX_HELD // HELD_SHARE)
        return max(0, share - self._held_for(destination))

    def _slow(self, destination: str, now: float) -> bool:
        """Whether ``destination`` has requests in flight and answered none for SLOW_AFTER
        (timeouts are no answers)."""
        answered = self._answered.get(destination)
        return answered is not None and now - answered > SLOW_AFTER

    async def _give_back(self) -> None:
        """When memory runs short, slow destinations keep SLOW_ROUNDS rounds of their limit
        here and give the newest of the rest back to the outbox, unleased: claims take them
        again when the destination has room."""
        if MAX_HELD - len(self._held) >= MAX_HELD // RESERVE_SHARE:
            return
        now = time.monotonic()
        keep = self.settings.max_per_host * SLOW_ROUNDS
        given: list[str] = []
        for host, queue in list(self._ready.items()):
            if not self._slow(host, now):
                continue
            for _ in range(min(len(queue), self._held_for(host) - keep)):
                given.append(queue.pop().id)
            if not queue:
                del self._ready[host]
                self._turns.pop(host, None)
        if not given:
            return
        self._held.difference_update(given)
        log.info(
            "memory is short: %s to slow destinations go back to the outbox", _count(len(given))
        )
        # Should this fail, their leases end by themselves (a claim takes them after).
        await self.store.release_leases(given)

    def _held_for(self, destination: str) -> int:
        """Deliveries to ``destination`` in flight or waiting here."""
        return self._per_host[destination] + len(self._ready.get(destination, ()))

    async def _claim(self) -> int:
        await self._give_back()
        room = min(MAX_HELD - len(self._held), CLAIM_BATCH)
        if room <= 0:
            self._full_at_claim = frozenset()
            return 0
        # Claim ahead: a destination may have a few rounds of its limit waiting in memory,
        # so claims come in batches rather than one free slot at a time.
        # At most half of memory, though: a slow destination must leave room for the others.
        ahead = min(self.settings.max_per_host * CLAIM_AHEAD, MAX_HELD // 2)
        busy = self._per_host.keys() | self._ready.keys()
        slow_ahead = self.settings.max_per_host * SLOW_ROUNDS
        clock = time.monotonic()
        host_room = {
            h: (slow_ahead if self._slow(h, clock) else ahead) - self._held_for(h) for h in busy
        }
        if room < CLAIM_BATCH:
            # Memory is short: a place goes to a destination with nothing waiting here. Slow
            # destinations' backlogs come first in due order, and claiming ahead for them
            # gave each freed place to one more in their queues while another destination's
            # due work waited for their whole backlog.
            host_room.update(dict.fromkeys(self._ready, 0))
        now = now_ms()
        look_past = now >= self._look_past_at
        if (
            self._blocked
            and not look_past
            and all(host_room.get(host, ahead) <= 0 for host in self._blocked)
        ):
            return 0  # the window is still their backlog (see ``_blocked``)
        if look_past:
            self._look_past_at = now + LOOK_PAST_EVERY_MS
        self._blocked = frozenset()
        self._full_at_claim = frozenset(h for h, left in host_room.items() if left <= 0)
        batch = await self.store.claim_due(
            now, room, LEASE_MARGIN_MS, host_room, ahead, look_past=look_past
        )
        if batch:
            log.debug("claimed %s due from the outbox", _count(len(batch)))
        # A handed-over delivery whose lease ran out while it waited here is already held.
        self.offer([d for d in batch if d.id not in self._held])
        return len(batch)

    def offer(self, deliveries: Sequence[Delivery]) -> None:
        per_host = self.settings.max_per_host
        for delivery in deliveries:
            host = delivery.destination
            self._held.add(delivery.id)
            self._ready.setdefault(host, deque()).append(delivery)
            if self._per_host[host] < per_host:
                self._turns[host] = None
        self._pump()

    def _pump(self) -> None:
        """Start sends while there is room, one destination at a time in turn."""
        limit, per_host = self.settings.max_concurrency, self.settings.max_per_host
        while self._turns and len(self._inflight) < limit:
            host = next(iter(self._turns))
            del self._turns[host]
            queue = self._ready[host]
            delivery = queue.popleft()
            if not queue:
                del self._ready[host]
            if not self._per_host[host]:
                self._answered[host] = time.monotonic()  # busy from now on
            self._per_host[host] += 1
            self._send(delivery, host)
            if queue and self._per_host[host] < per_host:
                self._turns[host] = None  # back of the line

    async def _wait_for_work(self) -> None:
        if self._blocked:  # work is due, for destinations that are full: no need to read
            await self._wait_for(0.05, starved=True)
            return
        epoch = self._epoch
        due = await self.store.next_due_at()
        now = now_ms()
        # Idle only from a read begun after the last recording and after idle() was asked:
        # an older snapshot may miss a retry due now (it looked leased, and once recorded
        # nothing is held) or a delivery written just before idle() was called.
        if not self._held and epoch == self._epoch and (due is None or due > now):
            self._idle.set()
        if due is None:
            await self._wait_for(MAX_IDLE_WAIT)
        elif due > now:
            await self._wait_for(min(MAX_IDLE_WAIT, (due - now) / 1000))
        else:
            # Due but not claimable: every slot (or every due host) is busy. A freed slot
            # wakes us; the short timeout covers a claim that raced with a commit.
            self._blocked = self._full_at_claim
            await self._wait_for(0.05, starved=True)

    async def _wait_for(self, wait: float, *, starved: bool = False) -> None:
        """Until a signal, a freed slot if ``starved``, or ``wait`` seconds."""
        self._starved = self._starved or starved
        self._slot_freed.clear()
        signal = asyncio.ensure_future(self.signal.wait(wait))
        freed = asyncio.ensure_future(self._slot_freed.wait())
        await asyncio.wait({signal, freed}, return_when=asyncio.FIRST_COMPLETED)
        for fut in (signal, freed):
            fut.cancel()
        await asyncio.gather(signal, freed, return_exceptions=True)

    def _send(self, delivery: Delivery, host: str) -> None:
        """Hand the request to the sender; ``_sent`` takes the answer."""
        self._inflight[delivery.id] = host
        keys = self.keyring.keys(delivery.signer)
        request = Request(
            delivery.method,
            delivery.url,
            delivery.headers,
            delivery.body,
            delivery.timeout,
            delivery.id,
            keys or (),
        )
        sent = partial(self._sent, delivery, keys is not None)
        try:
            self.sender.submit(request, sent)
        except Exception as exc:  # a sender bug still ends in a recorded, retried attempt
            log.exception("sending %s failed", delivery.id)
            asyncio.get_running_loop().call_soon(sent, internal_error(exc))

    def _sent(self, delivery: Delivery, signed: bool, ex: Exchange) -> None:
        host = self._inflight.pop(delivery.id, None)
        if host is None:
            return  # given up by stop(): not recorded, its lease frees it
        queued = False
        try:
            outcome = self._outcome(delivery, signed, ex)
            self._outcomes.put_nowait(outcome)
            queued = True
            # A success touches nothing here unless it ends a streak of failures.
            if not outcome.attempt.succeeded or host in self._streaks:
                self._note_outcome(host, delivery, outcome)
        except Exception:
            # A bug here must not keep the delivery and its destination's place for ever:
            # not recorded, it goes again when its lease ends (at least once, never zero).
            log.exception("taking the answer to %s failed; it is sent again later", delivery.id)
            if not queued:
                self._held.discard(delivery.id)
        self._per_host[host] -= 1
        if self._per_host[host] <= 0:
            del self._per_host[host]
            del self._answered[host]
        elif ex.status_code is not None or ex.latency_ms < SLOW_AFTER * 1000:
            # A sign of life. A timeout is none: hung, with its requests sent at different
            # moments, a destination timed out often enough never to count as slow.
            self._answered[host] = time.monotonic()
        if host in self._ready:
            self._turns[host] = None
        if not self._inflight:
            self._none_in_flight.set()
        self._pump()

    def _note_outcome(self, host: str, delivery: Delivery, outcome: Outcome) -> None:
        """Log a dead delivery, and a destination's failures once per streak."""
        attempt = outcome.attempt
        if attempt.succeeded:
            failures = self._streaks.pop(host)
            if failures >= FAILING_STREAK:
                log.info("destination %s answers again after %d failed attempts", host, failures)
            return
        failures = self._streaks.get(host, 0) + 1
        self._streaks[host] = failures
        if failures == FAILING_STREAK:
            log.warning(
                "destination %s failed %d attempts in a row (last: %s); "
                "logged again when it answers",
                host,
                failures,
                attempt.error,
            )
        if outcome.status is DeliveryStatus.DEAD:
            log.warning(
                "delivery %s is dead after %d attempt(s) to %s: %s",
                delivery.id,
                attempt.number,
                host,
                attempt.error,
            )
        elif outcome.next_attempt_at is not None:
            log.debug(
                "delivery %s attempt %d failed (%s); next attempt in %.1f s",
                delivery.id,
                attempt.number,
                attempt.error,
                (outcome.next_attempt_at - now_ms()) / 1000,
            )

    async def send_once(self, request: Request) -> Exchange:
        """One request with the headers every delivery carries; nothing is recorded."""
        return await self.sender.exchange(request)

    def _outcome(self, delivery: Delivery, signed: bool, ex: Exchange) -> Outcome:
        """The attempt that ``ex`` answered, and what becomes of the delivery."""
        number = delivery.attempts + 1
        ok = is_success(ex.status_code)
        attempt = Attempt(
            id=new_id("att"),
            delivery_id=delivery.id,
            number=number,
            started_at=ex.started_at,
            latency_ms=ex.latency_ms,
            status_code=ex.status_code,
            response_headers=ex.headers,
            response_body=ex.body,
            error=ex.error,
            succeeded=ok,
            warning=ex.warning if signed else _unsigned(delivery, ex.warning),
        )
        if ok:
            return Outcome(attempt, DeliveryStatus.SUCCEEDED, None)
        if not ex.final and is_retryable(ex.status_code):
            delay = next_delay(delivery.retry_schedule, number, ex.retry_after)
            if delay is not None:
                return Outcome(attempt, DeliveryStatus.RETRYING, now_ms() + int(delay * 1000))
        return Outcome(attempt, DeliveryStatus.DEAD, None)

    async def _record_loop(self) -> None:
        while True:
            batch = [await self._outcomes.get()]
            while not self._outcomes.empty() and len(batch) < RECORD_BATCH:
                batch.append(self._outcomes.get_nowait())
            try:
                # Shielded: a stop must not lose the record of a request already sent.
                await asyncio.shield(self._record(batch))
            finally:
                self._held.difference_update(o.attempt.delivery_id for o in batch)
                self._epoch += 1
                for _ in batch:
                    self._outcomes.task_done()
            if self._starved:
                # Due work waits in the outbox, and recording just made room for it.
                self._starved = False
                self._slot_freed.set()
            # Wake the claim loop when a retry may be due or the dispatcher may be idle.
            if not self._held or any(o.next_attempt_at is not None for o in batch):
                self.signal.notify()

    async def _record(self, batch: list[Outcome]) -> None:
        for attempt in range(5):
            try:
                await self.record_outcomes(batch, now_ms())
                self.tally.recorded(batch)
                return
            except Exception:
                log.exception("recording %d attempts failed (try %d)", len(batch), attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
        # The leases expire and the deliveries are sent again: at least once, never zero.
        log.error("gave up recording %d attempts; they will be retried", len(batch))


def _unsigned(delivery: Delivery, warning: str | None) -> str:
    """The warning of an attempt sent without a signature: its webhook is gone."""
    if delivery.signer is None:
        note = "sent unsigned: it belongs to no rule, webhook or journey with a signing secret"
    else:
        kind = "webhook" if delivery.webhook_id else "rule" if delivery.rule_id else "journey"
        note = f"sent unsigned: its {kind} {delivery.signer} was deleted, and its secret with it"
    return f"{warning}; {note}" if warning else note


def _count(n: int) -> str:
    return f"{n} delivery" if n == 1 else f"{n} deliveries"
