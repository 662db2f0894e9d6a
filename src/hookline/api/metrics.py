"""GET /metrics: this process's figures in the Prometheus text format (hookline.metrics).

Read with a ``read`` (or admin) key, like every other read route (open while hookline runs
open). The figures are the whole process's, every brand's volumes together, so a key
limited to brands may not read them (403): brand labels would be the alternative, and
they would multiply series by brands for a view no scrape needs.

Counters come from the engine's and the dispatcher's tallies (plain ints counted after
each commit and each recorded batch of attempts); gauges from memory, except the outbox
and the journey timers, two counts on partial indexes, reused for up to a second.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import Response

from hookline import __version__
from hookline.api.auth import principal
from hookline.errors import Forbidden
from hookline.journeys import FinishReason, JourneyStatus
from hookline.metrics import CONTENT_TYPE, Family, Kind, Sample, by_label, one, render
from hookline.runtime import Runtime

# Seconds a count from the database is reused: scrapes from several Prometheus servers
# (or a dashboard refreshing) cost one query a second at most.
COUNT_MAX_AGE = 1.0

C, G = Kind.COUNTER, Kind.GAUGE


@dataclass(frozen=True, slots=True)
class StoredCounts:
    outbox: int
    timers: int


class CountCache:
    """The figures that take a query, read at most once per ``max_age`` seconds."""

    def __init__(self, runtime: Runtime, max_age: float = COUNT_MAX_AGE) -> None:
        self.runtime = runtime
        self.max_age = max_age
        self._counts: StoredCounts | None = None
        self._read_at = 0.0

    async def read(self) -> StoredCounts:
        now = time.monotonic()
        if self._counts is None or now - self._read_at >= self.max_age:
            journeys = self.runtime.journeys
            self._counts = StoredCounts(
                outbox=await self.runtime.store.count_outbox(),
                timers=await journeys.count_timers() if journeys is not None else 0,
            )
            self._read_at = now
        return self._counts


def collect(runtime: Runtime, stored: StoredCounts) -> list[Family]:
    """Every family ``/metrics`` answers, read from the running runtime."""
    engine, dispatcher = runtime.engine, runtime.dispatcher
    ingest, attempts = engine.tally, dispatcher.tally
    journeys = engine.journeys
    # Read from the dispatcher's own bookkeeping: nothing is counted twice for these.
    in_flight = len(dispatcher._inflight)
    queued = sum(len(queue) for queue in dispatcher._ready.values())
    statuses = dict.fromkeys(JourneyStatus, 0)
    for journey in journeys.current.values():
        statuses[journey.journey.status] += 1
    return [
        one(
            "hookline_build_info",
            G,
            "Always 1; the labels say which hookline and which Python run.",
            1,
            version=__version__,
            python=platform.python_version(),
        ),
        one(
            "hookline_start_time_seconds",
            G,
            "Unix time at which this process became ready.",
            runtime.started_at or 0,
        ),
        one(
            "hookline_events_accepted_total",
            C,
            "Events sent to hookline and stored (duplicates not included).",
            ingest.events_accepted,
        ),
        one(
            "hookline_events_duplicate_total",
            C,
            "Events answered as duplicates: their eid was already stored.",
            ingest.events_duplicate,
        ),
        one(
            "hookline_journey_events_emitted_total",
            C,
            "Events emitted by journey blocks (emit_event, campaign events) and stored.",
            ingest.events_emitted,
        ),
        one(
            "hookline_deliveries_created_total",
            C,
            "Deliveries written to the outbox by rules and journeys.",
            ingest.deliveries_created,
        ),
        by_label(
            "hookline_attempts_total",
            C,
            "Recorded attempts by outcome: succeeded; retrying (failed, another is "
            "scheduled); dead (failed, none left); blocked (refused by the SSRF guard).",
            "outcome",
            (
                ("succeeded", attempts.succeeded),
                ("retrying", attempts.retrying),
                ("dead", attempts.dead),
                ("blocked", attempts.blocked),
            ),
        ),
        Family(
            "hookline_attempt_duration_seconds",
            Kind.HISTOGRAM,
            "Time from sending an attempt to its answer or error (blocked ones left out).",
            (Sample(attempts.latency.snapshot()),),
        ),
        one(
            "hookline_deliveries_in_flight",
            G,
            "Deliveries being sent by this process now.",
            in_flight,
        ),
        one(
            "hookline_deliveries_queued",
            G,
            "Deliveries waiting in this process's memory for a free slot.",
            queued,
        ),
        one(
            "hookline_deliveries_outbox",
            G,
            "Deliveries not finished (pending or retrying) in the outbox, queued and in "
            "flight ones included; counted at most once a second.",
            stored.outbox,
        ),
        one(
            "hookline_journey_entries_total",
            C,
            "Users who entered a journey.",
            ingest.journeys_entered,
        ),
        by_label(
            "hookline_journey_finishes_total",
            C,
            "Journey instances finished, by reason.",
            "reason",
            ((reason.value, ingest.journeys_finished[reason]) for reason in FinishReason),
        ),
        one(
            "hookline_journey_timers_waiting",
            G,
            "Journey instances waiting for a due time; counted at most once a second.",
            stored.timers,
        ),
        one(
            "hookline_journey_chain_cuts_total",
            C,
            "Events not emitted because a chain of emitted events reached depth 8 or 1,000 events.",
            ingest.journey_chain_cuts,
        ),
        one(
            "hookline_rules_loaded",
            G,
            "Enabled rules in the index, ready to match events.",
            len(engine.index),
        ),
        by_label(
            "hookline_journeys_loaded",
            G,
            "Journeys loaded, by status.",
            "status",
            ((status.value, count) for status, count in statuses.items()),
        ),
        one(
            "hookline_load_problems",
            G,
            "Stored rules, webhooks, journeys and instances skipped because they cannot be "
            "loaded (the problem_count of /healthz).",
            len(runtime.problems()),
        ),
    ]


def install(app: FastAPI, runtime: Runtime) -> None:
    """Add ``GET /metrics`` (its right is in auth.RIGHTS)."""
    counts = CountCache(runtime)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if not principal(request).all_brands:
            raise Forbidden(
                "metrics are figures of every brand together: only a key without brands "
                "may read them",
                field="Authorization",
            )
        body = render(collect(runtime, await counts.read()))
        return Response(body, media_type=CONTENT_TYPE)
