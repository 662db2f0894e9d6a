"""The persistence contract: the few primitives the engine, dispatcher and API need.

A backend implements :class:`Store`; the domain never writes SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from hookline.counters import Counter
from hookline.deliveries import Attempt, Delivery, DeliveryStatus
from hookline.events import Event
from hookline.keys import ApiKey
from hookline.rules import Rule, SavedWebhook
from hookline.signing import Signing
from hookline.state import UserKey

# A user's counter for a rule: (rule id, user key).
CounterKey: TypeAlias = tuple[str, UserKey]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt and where it leaves its delivery."""

    attempt: Attempt
    status: DeliveryStatus
    next_attempt_at: int | None


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    rule_id: str | None = None
    user_ext_id: str | None = None
    event_id: str | None = None
    status: DeliveryStatus | None = None
    since: int | None = None
    until: int | None = None
    journey_id: str | None = None
    # As text (keys.brand_text). With user_ext_id, None means the user of no brand.
    ext_brand_id: str | None = None
    # Only these brands (a brand-scoped key's); None: every brand, and none.
    brands: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class EchoRecord:
    id: str
    secret: str
    received_at: int
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


class IngestTransaction(Protocol):
    """One write transaction of the ingest path: everything in it commits together."""

    async def known_eids(self, eids: Sequence[str]) -> dict[str, str]:
        """Map each already-stored ``eid`` to its event id."""

    async def delivery_ids(self, event_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The ids of the deliveries each stored event caused, oldest first."""

    async def load_states(self, users: Sequence[UserKey]) -> dict[UserKey, dict[str, Any]]: ...

    async def load_counters(self, users: Sequence[UserKey]) -> dict[CounterKey, Counter]:
        """The counters of these users, for every rule that has one (unreadable: left out)."""

    async def save_counters(self, counters: Mapping[CounterKey, Counter], now: int) -> None:
        """Insert or replace these counters."""

    async def insert_events(self, events: Sequence[Event]) -> None: ...

    async def save_states(self, states: dict[UserKey, dict[str, Any]], now: int) -> None: ...

    async def insert_deliveries(
        self, deliveries: Sequence[Delivery], lease_from: int | None = None
    ) -> None:
        """Write the outbox rows; with ``lease_from``, already leased to this process.

        A leased row's lease ends ``lease_from`` plus its own timeout: a crash frees it.
        """

    async def record_outcomes(self, outcomes: Sequence[Outcome], now: int) -> None:
        """Store the attempts and their deliveries' new state (as Store.record_outcomes)."""


class KeyStore(Protocol):
    """API keys: written by admins, read whole by the key ring (see hookline.keyring)."""

    async def insert_key(self, key: ApiKey) -> None: ...

    async def list_keys(self, *, active_only: bool = False) -> list[ApiKey]:
        """Every key (or only those not revoked), oldest first."""

    async def revoke_key(self, key_id: str, now: int) -> ApiKey | None:
        """Revoke at ``now`` (a revoked key keeps its first time); None if there is none."""


class Store(KeyStore, Protocol):
    """Everything hookline keeps."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def ingest(self) -> AbstractAsyncContextManager[IngestTransaction]: ...

    # user state
    async def get_state(
        self, user_ext_id: str, ext_brand_id: str | None = None
    ) -> dict[str, Any] | None:
        """The state of the user (``ext_brand_id``, ``user_ext_id``); None: no brand."""

    async def get_event(self, event_id: str) -> Event | None: ...

    # rules and saved webhooks: each write is one transaction that assigns the row's next
    # version (1 when created), applies only to ``expected_version`` when given (Conflict
    # otherwise) and keeps references whole (a rule on a missing webhook is InvalidInput,
    # deleting a webhook in use is Conflict naming the rules).
    async def list_rules(self) -> list[Rule]: ...

    async def get_rule(self, rule_id: str) -> Rule | None: ...

    async def save_rule(
        self, rule: Rule, *, create: bool, expected_version: int | None = None
    ) -> Rule: ...

    async def delete_rule(self, rule_id: str, expected_version: int | None = None) -> bool:
        """Delete a rule and its users' counters, in one transaction."""

    async def get_counter(
        self, rule_id: str, user_ext_id: str, ext_brand_id: str | None = None
    ) -> Counter | None:
        """The user's counter for a rule that counts, as stored."""

    async def list_webhooks(self) -> list[SavedWebhook]: ...

    async def get_webhook(self, webhook_id: str) -> SavedWebhook | None: ...

    async def save_webhook(
        self, webhook: SavedWebhook, *, create: bool, expected_version: int | None = None
    ) -> SavedWebhook: ...

    async def delete_webhook(
        self, webhook_id: str, expected_version: int | None = None
    ) -> bool: ...

    async def rules_using_webhook(self, webhook_id: str) -> list[Rule]: ...

    async def list_signing(self) -> dict[str, Signing]:
        """Every rule's, saved webhook's and journey's signing secrets, by its id."""

    # deliveries
    async def claim_due(
        self,
        now: int,
        limit: int,
        lease_margin_ms: int,
        host_room: dict[str, int],
        per_host: int,
        *,
        look_past: bool = True,
    ) -> list[Delivery]:
        """Lease due deliveries; ``look_past`` lets it read past full hosts' backlogs."""
        ...

    async def record_outcomes(self, outcomes: Sequence[Outcome], now: int) -> None: ...

    async def next_due_at(self) -> int | None: ...

    async def count_outbox(self) -> int:
        """Deliveries not finished yet (pending or retrying): a count on an index."""
        ...

    async def release_leases(self, ids: Sequence[str] | None = None) -> int:
        """Unlease these deliveries (None: every one); how many were leased."""
        ...

    async def list_deliveries(
        self, flt: DeliveryFilter, limit: int, before: str | None
    ) -> list[Delivery]: ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def list_attempts(self, delivery_id: str) -> list[Attempt]: ...

    async def requeue(self, delivery_id: str, now: int) -> Delivery | None: ...

    async def count_deliveries(self) -> dict[str, int]: ...

    # echo service
    async def echo_record(self, record: EchoRecord, keep: int) -> None: ...

    async def echo_list(self, secret: str, limit: int) -> list[EchoRecord]: ...

    async def echo_clear(self, secret: str) -> int: ...
