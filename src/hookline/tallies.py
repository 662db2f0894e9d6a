"""What the engine and the dispatcher count as they work, read by ``/metrics``.

Plain ints, added to once per committed group or per recorded batch of attempts: no locks
(one event loop writes them) and nothing allocated per event or per delivery. Counted
only after the commit or the record, so a group that fails and is committed again share
by share is counted once, and a figure never runs ahead of what the store holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from hookline.deliveries import DeliveryStatus
from hookline.journeys import FinishReason
from hookline.metrics import Histogram
from hookline.store.base import Outcome

# The start of every error the SSRF guard gives an attempt (netguard.DestinationBlocked).
BLOCKED_PREFIX: Final = "destination_blocked:"


class JourneyCounts(Protocol):
    """The journey side of one committed group (journey_runner.JourneyBatch)."""

    @property
    def entered(self) -> int: ...

    @property
    def finished(self) -> Mapping[FinishReason, int]: ...

    @property
    def cut_count(self) -> int: ...


@dataclass(slots=True)
class IngestTally:
    """Counted by the engine after each group commit."""

    events_accepted: int = 0  # new events sent to hookline (not duplicates)
    events_duplicate: int = 0  # events whose eid was already stored
    events_emitted: int = 0  # events journeys emitted (stored like any other)
    deliveries_created: int = 0
    journeys_entered: int = 0
    journeys_finished: dict[FinishReason, int] = field(
        default_factory=lambda: dict.fromkeys(FinishReason, 0)
    )
    journey_chain_cuts: int = 0  # events journeys did not emit: their chain was too deep

    def committed(
        self,
        received: int,
        duplicates: int,
        stored: int,
        deliveries: int,
        journeys: JourneyCounts | None,
    ) -> None:
        """One group is committed: ``received`` events came in, ``stored`` were written."""
        accepted = received - duplicates
        self.events_accepted += accepted
        self.events_duplicate += duplicates
        self.events_emitted += stored - accepted
        self.deliveries_created += deliveries
        if journeys is not None:
            self.journeys_entered += journeys.entered
            for reason, count in journeys.finished.items():
                self.journeys_finished[reason] += count
            self.journey_chain_cuts += journeys.cut_count


@dataclass(slots=True)
class AttemptTally:
    """Counted by the dispatcher once a batch of attempts is recorded."""

    succeeded: int = 0
    retrying: int = 0  # failed, another attempt is scheduled
    dead: int = 0  # failed, no attempt left (or not worth another)
    blocked: int = 0  # refused by the SSRF guard before sending: dead, counted apart
    latency: Histogram = field(default_factory=Histogram)

    def recorded(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            status = outcome.status
            if status is DeliveryStatus.SUCCEEDED:
                self.succeeded += 1
            elif status is DeliveryStatus.RETRYING:
                self.retrying += 1
            else:
                error = outcome.attempt.error
                if error is not None and error.startswith(BLOCKED_PREFIX):
                    self.blocked += 1
                    continue  # never sent: no latency to speak of
                self.dead += 1
            self.latency.observe(outcome.attempt.latency_ms / 1000)
