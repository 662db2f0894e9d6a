"""The SQL backend (SQLAlchemy Core, async). SQLite is the embedded default.

The only module that knows queries. Driver errors become StoreError at this boundary.
"""

from __future__ import annotations

import logging
import math
from collections import namedtuple
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Any

import orjson
from sqlalchemy import (
    Table,
    and_,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hookline.counters import Counter, limits_from_dict
from hookline.deliveries import Attempt, Delivery, DeliveryStatus
from hookline.errors import Conflict, HooklineError, InvalidInput, NotFound, StoreError
from hookline.events import Event
from hookline.keys import ApiKey, Role
from hookline.rules import Rule, SavedWebhook
from hookline.signing import Signing
from hookline.state import UserKey, user_key
from hookline.store import rows
from hookline.store import schema as t
from hookline.store.base import CounterKey, DeliveryFilter, EchoRecord, Outcome
from hookline.store.rows import RowMapper
from hookline.webhooks import MAX_DELAY, MAX_TIMEOUT, WebhookSpec

log = logging.getLogger("hookline.store")

# SQLite's default limit on bound parameters is generous, but stay well under it.
_CHUNK = 500


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def _pairs(raw: bytes) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in orjson.loads(raw))


# One write sent to the driver as it is: a statement and its rows (executemany).
Statement = tuple[str, list[tuple[Any, ...]]]


def placeholders(conn: AsyncConnection | AsyncEngine, count: int) -> list[str]:
    """Placeholders in the driver's own style, for statements sent without compiling."""
    style = conn.dialect.paramstyle
    if style == "qmark":
        return ["?"] * count
    if style == "numeric_dollar":
        return [f"${i}" for i in range(1, count + 1)]
    return ["%s"] * count


def _insert_many(
    conn: AsyncConnection | AsyncEngine, table: Table, rows: Sequence[dict[str, Any]]
) -> list[Statement]:
    """INSERT many rows straight to the driver: the hot paths skip per-row bind processing.

    Every row has the same keys, in the same order, naming columns of ``table``.
    """
    if not rows:
        return []
    columns = list(rows[0])
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join(placeholders(conn, len(columns)))})"
    )
    return [(sql, [tuple(row.values()) for row in rows])]


async def _names_using(conn: AsyncConnection, webhook_id: str) -> list[str]:
    rows = await conn.execute(
        select(t.rules.c.name).where(t.rules.c.webhook_id == webhook_id).order_by(t.rules.c.name)
    )
    return [r.name for r in rows]


def _in_use(names: Sequence[str]) -> Conflict:
    return Conflict(
        f"rules still use this webhook: {', '.join(names)}; change or delete them first",
        field="webhook_id",
    )


class SqlIngest:
    """The ingest unit of work on one open transaction.

    Reads run at once; writes are kept in ``pending`` and sent together just before the
    commit (the store's ``ingest``), so a group's writes cost one trip to the driver.
    """

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.conn = conn  # for the journey statements (store/journey_sql) in this transaction
        self.pending: list[Statement] = []

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of one query sent straight to the driver, in this transaction."""
        result = await self._conn.exec_driver_sql(sql, tuple(params))
        return [tuple(row) for row in result]

    def _in(self, count: int) -> str:
        return ", ".join(placeholders(self._conn, count))

    async def known_eids(self, eids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for part in _chunks(eids):
            sql = f"SELECT eid, id FROM {t.events.name} WHERE eid IN ({self._in(len(part))})"
            found.update(await self._fetch(sql, part))
        return found

    async def delivery_ids(self, event_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        found: dict[str, list[str]] = {}
        for part in _chunks(event_ids):
            sql = (
                f"SELECT event_id, id FROM {t.deliveries.name} "
                f"WHERE event_id IN ({self._in(len(part))}) ORDER BY id"
            )
            for event_id, id_ in await self._fetch(sql, part):
                found.setdefault(event_id, []).append(id_)
        return {event_id: tuple(ids) for event_id, ids in found.items()}

    async def load_states(self, users: Sequence[UserKey]) -> dict[UserKey, dict[str, Any]]:
        states: dict[UserKey, dict[str, Any]] = {}
        by_brand: dict[str, list[str]] = {}
        for brand, user in sorted(set(users)):
            by_brand.setdefault(brand, []).append(user)
        # One brand at a time: the key is (ext_brand_id, user_ext_id), so a lookup by user
        # alone would read every row of the table (a million users: a scan per group).
        for brand, brand_users in by_brand.items():
            for part in _chunks(brand_users):
                sql = (
                    f"SELECT user_ext_id, state FROM {t.users.name} "
                    f"WHERE ext_brand_id = {self._in(1)} "
                    f"AND user_ext_id IN ({self._in(len(part))})"
                )
                for user, raw in await self._fetch(sql, [brand, *part]):
                    states[(brand, user)] = _state(raw, user)
        return states

    async def load_counters(self, users: Sequence[UserKey]) -> dict[CounterKey, Counter]:
        counters: dict[CounterKey, Counter] = {}
        wanted = set(users)
        c = t.rule_counters
        for part in _chunks(sorted({user for _, user in users})):
            rows = await self._conn.execute(select(c).where(c.c.user_ext_id.in_(part)))
            for row in rows:
                key = (row.ext_brand_id, row.user_ext_id)
                if key in wanted:
                    counter = _counter(row)
                    if counter is not None:
                        counters[(row.rule_id, key)] = counter
        return counters

    async def save_counters(self, counters: Mapping[CounterKey, Counter], now: int) -> None:
        if not counters:
            return
        marks = ", ".join(placeholders(self._conn, 6))
        self.pending.append(
            (
                f"INSERT INTO {t.rule_counters.name} "
                "(user_ext_id, ext_brand_id, rule_id, epoch, state, updated_at) "
                f"VALUES ({marks}) ON CONFLICT (user_ext_id, ext_brand_id, rule_id) DO UPDATE SET "
                "epoch = excluded.epoch, state = excluded.state, updated_at = excluded.updated_at",
                [
                    (u, b, rule_id, counter.epoch, _dumps(counter.as_json()), now)
                    for (rule_id, (b, u)), counter in counters.items()
                ],
            )
        )

    async def insert_events(self, events: Sequence[Event]) -> None:
        self.pending += _insert_many(
            self._conn,
            t.events,
            [
                {
                    "id": e.id,
                    "eid": e.eid,
                    "event_type": e.event_type,
                    "user_ext_id": e.user_ext_id,
                    # JSON, so a brand id keeps its type (5 vs "5"); NULL when absent.
                    "ext_brand_id": None if e.ext_brand_id is None else _dumps(e.ext_brand_id),
                    "event_date": e.event_date,
                    "received_at": e.received_at,
                    "payload": _dumps(e.payload),
                }
                for e in events
            ],
        )

    async def save_states(self, states: dict[UserKey, dict[str, Any]], now: int) -> None:
        if not states:
            return
        marks = ", ".join(placeholders(self._conn, 4))
        self.pending.append(
            (
                f"INSERT INTO {t.users.name} (ext_brand_id, user_ext_id, state, updated_at) "
                f"VALUES ({marks}) ON CONFLICT (ext_brand_id, user_ext_id) DO UPDATE SET "
                "state = excluded.state, updated_at = excluded.updated_at",
                [(b, u, _dumps(s), now) for (b, u), s in states.items()],
            )
        )

    async def insert_deliveries(
        self, deliveries: Sequence[Delivery], lease_from: int | None = None
    ) -> None:
        rows = [_delivery_row(d, lease_from) for d in deliveries]
        self.pending += _insert_many(self._conn, t.deliveries, rows)

    async def record_outcomes(self, outcomes: Sequence[Outcome], now: int) -> None:
        if outcomes:
            self.pending += _outcome_statements(self._conn, outcomes, now)


def _outcome_statements(
    conn: AsyncConnection | AsyncEngine, outcomes: Sequence[Outcome], now: int
) -> list[Statement]:
    """Each attempt's row, and its delivery's new status, retry time and last answer."""
    marks = placeholders(conn, 7)
    return [
        *_insert_many(conn, t.attempts, [_ATTEMPT.row(o.attempt) for o in outcomes]),
        (
            f"UPDATE {t.deliveries.name} SET status = {marks[0]}, attempts = {marks[1]}, "
            f"next_attempt_at = {marks[2]}, lease_until = NULL, updated_at = {marks[3]}, "
            f"last_status_code = {marks[4]}, last_error = {marks[5]} WHERE id = {marks[6]}",
            [
                (
                    o.status.value,
                    o.attempt.number,
                    o.next_attempt_at,
                    now,
                    o.attempt.status_code,
                    o.attempt.error,
                    o.attempt.delivery_id,
                )
                for o in outcomes
            ],
        ),
    ]


def _delivery_row(d: Delivery, lease_from: int | None = None) -> dict[str, Any]:
    lease_until = None if lease_from is None else lease_from + int(d.timeout * 1000)
    return {
        "id": d.id,
        "event_id": d.event_id,
        "rule_id": d.rule_id,
        "webhook_id": d.webhook_id,
        "user_ext_id": d.user_ext_id,
        "status": d.status.value,
        "method": d.method,
        "url": d.url,
        "host": d.destination,
        "headers": _dumps(d.headers),
        "body": d.body,
        "timeout": d.timeout,
        "retry_schedule": _dumps(d.retry_schedule),
        "attempts": d.attempts,
        "created_at": d.created_at,
        "next_attempt_at": d.next_attempt_at,
        "lease_until": lease_until,
        "updated_at": d.updated_at,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "journey_id": d.journey_id,
        "instance_id": d.instance_id,
        "ext_brand_id": d.ext_brand_id,
        "secret_headers": _dumps(d.secret_headers) if d.secret_headers else None,
    }


# A deliveries row as claims read it, column by column (what _read_delivery reads).
_DeliveryRow = namedtuple("_DeliveryRow", [c.name for c in t.deliveries.columns])  # type: ignore[misc]


def _state(raw: Any, user_ext_id: str) -> dict[str, Any]:
    """A user's stored state; one that cannot be read (a hand edit) counts as empty.

    Refusing every event of that user for ever (a 503 its sender retries) would be worse; the
    stored text is logged so it can be put back, and the next write replaces it.
    """
    try:
        state = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        state = None
    if isinstance(state, dict):
        return state
    log.error(
        "the stored state of user %r cannot be read and counts as empty; it was: %r",
        user_ext_id,
        raw[:1000],
    )
    return {}


def _counter(row: Row[Any]) -> Counter | None:
    """A stored counter; one that cannot be read counts as none (logged, replaced on write).

    As with state: refusing the user's events for ever would be worse than counting anew.
    """
    try:
        return Counter.from_json(row.epoch, orjson.loads(row.state))
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        log.error(
            "the counter of rule %s for user %r (brand %r) cannot be read and counts as empty "
            "(%s); it was: %r",
            row.rule_id,
            row.user_ext_id,
            row.ext_brand_id,
            exc,
            row.state[:1000] if isinstance(row.state, bytes | str) else row.state,
        )
        return None


def _stored_json(raw: Any, event_id: str, unreadable: Any) -> Any:
    """A stored event's JSON column; one that cannot be read is logged, not a 500."""
    try:
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        log.error("a column of stored event %s cannot be read; it was: %r", event_id, raw[:1000])
        return unreadable


def _delivery(row: Row[Any]) -> Delivery:
    return _read_delivery(row)[0]


def _read_delivery(row: Row[Any]) -> tuple[Delivery, str | None]:
    """The stored delivery, and what is wrong with it if it cannot be sent as stored.

    Never raises: a row changed by hand or by another version (headers that are not JSON, a
    ``[null]`` schedule) must not stop the claim of every other due delivery, nor a listing.
    One that cannot be read comes back dead, its unreadable parts empty, its problem as
    ``last_error``; claim_due then records it as dead so it leaves the outbox.
    """
    try:
        status = DeliveryStatus(row.status)
        headers = _pairs(row.headers)
        if not all(type(k) is str and type(v) is str for k, v in headers):
            raise ValueError("headers must be pairs of strings")
        schedule = tuple(orjson.loads(row.retry_schedule))
        # Bounded as the API bounds them: beyond, a lease or a next attempt's time in
        # milliseconds overflows its integer column, and every claim (or every recording of
        # the batch it is in) fails.
        if not all(_seconds(d) and 0 <= d <= MAX_DELAY for d in schedule):
            raise ValueError(f"retry_schedule must hold seconds from 0 to {MAX_DELAY:g}")
        if not (_seconds(row.timeout) and 0 < row.timeout <= MAX_TIMEOUT):
            raise ValueError(f"timeout must be seconds above 0, at most {MAX_TIMEOUT:g}")
        if type(row.attempts) is not int or row.attempts < 0:
            raise ValueError("attempts must be a whole number, 0 or more")
        if not (isinstance(row.method, str) and isinstance(row.url, str)):
            raise ValueError("method and url must be text")
        if row.body is not None and not isinstance(row.body, bytes):
            raise ValueError("body must be bytes")
    except (ValueError, TypeError) as exc:
        problem = f"hookline cannot read this stored delivery: {exc}"
        broken = Delivery(
            id=row.id,
            event_id=row.event_id,
            rule_id=row.rule_id,
            webhook_id=row.webhook_id,
            user_ext_id=row.user_ext_id,
            status=DeliveryStatus.DEAD,
            method=str(row.method),
            url=str(row.url),
            headers=(),
            body=None,
            timeout=1.0,
            retry_schedule=(),
            attempts=row.attempts if type(row.attempts) is int else 0,
            created_at=row.created_at,
            next_attempt_at=None,
            updated_at=row.updated_at,
            last_status_code=row.last_status_code,
            last_error=problem,
        )
        return broken, problem
    delivery = Delivery(
        id=row.id,
        event_id=row.event_id,
        rule_id=row.rule_id,
        webhook_id=row.webhook_id,
        user_ext_id=row.user_ext_id,
        status=status,
        method=row.method,
        url=row.url,
        headers=headers,
        body=row.body,
        timeout=row.timeout,
        retry_schedule=schedule,
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        updated_at=row.updated_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        journey_id=row.journey_id,
        instance_id=row.instance_id,
        ext_brand_id=row.ext_brand_id,
        secret_headers=tuple(orjson.loads(row.secret_headers)) if row.secret_headers else (),
    )
    return delivery, None


def _seconds(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


# Reading a stored rule or webhook never raises: one that cannot be read (changed by hand,
# written by another version) is returned with its problem, so hookline still starts and the
# API can still list, replace and delete it.


def _signing(raw: bytes | None) -> Signing | None:
    return Signing.from_json(orjson.loads(raw)) if raw is not None else None


def _signing_value(signing: Signing | None) -> bytes | None:
    return _dumps(signing.as_json()) if signing is not None else None


async def _fill_signing(conn: AsyncConnection) -> None:
    """Give every rule, webhook and journey without a signing secret one (an older hookline's)."""
    for table in (t.rules, t.webhooks, t.journeys):
        rows = await conn.execute(select(table.c.id).where(table.c.signing.is_(None)))
        for key in [r.id for r in rows]:
            await conn.execute(
                update(table)
                .where(table.c.id == key, table.c.signing.is_(None))
                .values(signing=_signing_value(Signing.new()))
            )


def _rule(row: Row[Any]) -> Rule:
    problem = None
    try:
        conditions = orjson.loads(row.conditions) if row.conditions is not None else None
        webhook = (
            WebhookSpec.from_dict(orjson.loads(row.webhook)) if row.webhook is not None else None
        )
        limits = limits_from_dict(orjson.loads(row.limits) if row.limits is not None else None)
    except Exception as exc:
        conditions, webhook, limits = None, None, limits_from_dict(None)
        problem = f"the stored rule cannot be read: {exc.__class__.__name__}: {exc}"
    return Rule(
        id=row.id,
        name=row.name,
        description=row.description,
        enabled=bool(row.enabled),
        event_type=row.event_type,
        conditions=conditions,
        webhook=webhook,
        webhook_id=row.webhook_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
        problem=problem,
        ext_brand_id=row.ext_brand_id,
        signing=_signing(row.signing),
        limits=limits,
        counting_epoch=row.counting_epoch or 0,
    )


def _webhook(row: Row[Any]) -> SavedWebhook:
    problem = None
    try:
        spec = WebhookSpec.from_dict(orjson.loads(row.spec))
    except Exception as exc:
        spec = WebhookSpec(url="")
        problem = f"the stored webhook cannot be read: {exc.__class__.__name__}: {exc}"
    return SavedWebhook(
        id=row.id,
        name=row.name,
        spec=spec,
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
        problem=problem,
        ext_brand_id=row.ext_brand_id,
        signing=_signing(row.signing),
    )


def _missing_webhook(webhook_id: str) -> InvalidInput:
    return InvalidInput(
        f"no saved webhook {webhook_id!r}; create it at /api/v1/webhooks first",
        field="activity.webhook_id",
    )


def _is_foreign_key(exc: IntegrityError) -> bool:
    # SQLite: "FOREIGN KEY constraint failed"; PostgreSQL: "violates foreign key constraint".
    return "foreign key" in str(exc.orig).lower()


async def _bump(
    conn: AsyncConnection,
    table: Table,
    key: str,
    expected_version: int | None,
    values: dict[str, Any],
    kind: str,
) -> int:
    """Update one row and raise its version by one, only from ``expected_version`` if given.

    Answers the new version; NotFound if the row is gone, Conflict if another writer
    changed it since the caller read ``expected_version``.
    """
    where = [table.c.id == key]
    if expected_version is not None:
        where.append(table.c.version == expected_version)
    row = (
        await conn.execute(
            update(table)
            .where(*where)
            .values(**values, version=table.c.version + 1)
            .returning(table.c.version)
        )
    ).first()
    if row is not None:
        return int(row.version)
    raise stale_write(
        await conn.scalar(select(table.c.version).where(table.c.id == key)), key, kind
    )


def stale_write(current: int | None, key: str, kind: str) -> HooklineError:
    """Why a write to one version of a row did not apply: the row is gone, or has moved on."""
    if current is None:
        return NotFound(f"no {kind} {key!r}", field=f"{kind}_id")
    return Conflict(
        f"{kind} {key!r} was changed by another writer meanwhile (now version {current}); "
        "read it again and retry",
        field=f"{kind}_id",
    )


async def migrate(conn: AsyncConnection, version: int) -> None:
    """Bring a database of schema ``version`` to the current one, in the caller's transaction.

    Foreign keys must not be checked meanwhile (see SqliteStore): a rule of version 1 may
    already point at a deleted webhook, and the migration keeps it for its owner to see.
    """
    if version < 2:
        await conn.exec_driver_sql(
            "ALTER TABLE webhooks ADD COLUMN version INTEGER NOT NULL DEFAULT 1"
        )
        # A foreign key cannot be added to a table in SQLite: rebuild it (its documented
        # way: create the new table, copy, drop the old one).
        columns = (
            "id, name, description, enabled, event_type, conditions, webhook, webhook_id, "
            "created_at, updated_at"
        )
        await conn.exec_driver_sql("DROP INDEX IF EXISTS ix_rules_webhook_id")
        await conn.exec_driver_sql("ALTER TABLE rules RENAME TO rules_v1")
        await conn.run_sync(t.rules.create)
        await conn.exec_driver_sql(
            f"INSERT INTO rules ({columns}, version) SELECT {columns}, 1 FROM rules_v1"
        )
        await conn.exec_driver_sql("DROP TABLE rules_v1")
    if version < 3:
        await _users_by_brand(conn)


async def _users_by_brand(conn: AsyncConnection) -> None:
    """Key users by (brand, user): each row takes the brand its state was made with.

    Rebuilt (SQLite cannot change a primary key) and copied in Python: the brand is inside
    the JSON state, and 5 and "5" must both become the text "5".
    """
    await conn.exec_driver_sql("ALTER TABLE users RENAME TO users_v2")
    await conn.run_sync(t.users.create)
    result = await conn.execute(text("SELECT user_ext_id, state, updated_at FROM users_v2"))
    while rows := result.fetchmany(_CHUNK):
        await conn.execute(
            insert(t.users),
            [
                {
                    "ext_brand_id": user_key(_state_brand(r.state), r.user_ext_id)[0],
                    "user_ext_id": r.user_ext_id,
                    "state": r.state,
                    "updated_at": r.updated_at,
                }
                for r in rows
            ],
        )
    await conn.exec_driver_sql("DROP TABLE users_v2")


def _state_brand(raw: bytes) -> Any:
    try:
        state = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # kept as the user of no brand; unreadable either way
    return state.get("ext_brand_id") if isinstance(state, dict) else None


_API_KEY = RowMapper(
    ApiKey,
    {
        "role": rows.enum(Role),
        "brands": rows.Codec(
            lambda brands: _dumps(list(brands)), lambda raw: tuple(orjson.loads(raw))
        ),
    },
)


def _answer_pairs(raw: Any) -> tuple[tuple[str, str], ...]:
    """An attempt's stored response headers: the pairs of text that can be read. A hand edit
    (not JSON, not pairs) is logged and left out, not a 500 on reading the delivery."""
    try:
        loaded = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        loaded = None
    items = loaded if isinstance(loaded, list) else [None]
    pairs = tuple(
        (item[0], item[1])
        for item in items
        if isinstance(item, list) and len(item) == 2 and all(type(x) is str for x in item)
    )
    if len(pairs) != len(items):
        log.error("stored response headers cannot be read whole; they were: %.1000r", raw)
    return pairs


_ATTEMPT = RowMapper(
    Attempt, {"response_headers": rows.Codec(_dumps, _answer_pairs), "succeeded": rows.BOOL}
)


def _api_key(row: Row[Any]) -> ApiKey:
    return _API_KEY.record(row)


def _attempt(row: Row[Any]) -> Attempt:
    return _ATTEMPT.record(row)


class _Picker:
    """Chooses claimed rows in due order, within each host's room and the claim's limit."""

    def __init__(self, limit: int, host_room: dict[str, int], per_host: int) -> None:
        self.limit = limit
        self.room = dict(host_room)
        self.per_host = per_host
        self.chosen: list[Delivery] = []
        self.unreadable: list[Delivery] = []
        self._seen: set[str] = set()

    @property
    def full(self) -> bool:
        return len(self.chosen) >= self.limit

    def take(self, rows: Sequence[tuple[Any, ...]]) -> None:
        for values in rows:
            if self.full:
                return
            row: Any = _DeliveryRow(*values)
            left = self.room.get(row.host, self.per_host)
            if left <= 0 or row.id in self._seen:  # no room, or read again by the second look
                continue
            self._seen.add(row.id)
            delivery, problem = _read_delivery(row)
            if problem is not None:
                self.unreadable.append(delivery)
                continue
            self.room[row.host] = left - 1
            self.chosen.append(delivery)

    def hosts_without_room(self) -> list[str]:
        return [host for host, left in self.room.items() if left <= 0]


class SqlStore:
    """A :class:`~hookline.store.base.Store` on any SQLAlchemy async engine."""

    def __init__(self, engine: AsyncEngine, read_engine: AsyncEngine | None = None) -> None:
        self.engine = engine
        self.read_engine = read_engine or engine

    async def open(self) -> None:
        """Create the tables, or migrate those of an older hookline, in one transaction."""
        try:
            async with self.engine.connect() as conn:
                await self._before_migrations(conn)
                try:
                    async with conn.begin():
                        await self._create_or_migrate(conn)
                finally:
                    await self._after_migrations(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"the database failed: {exc.__class__.__name__}: {exc}") from exc

    async def _create_or_migrate(self, conn: AsyncConnection) -> None:
        await conn.run_sync(t.metadata.create_all)
        await conn.run_sync(t.add_missing_columns)
        stored = await conn.scalar(select(t.meta.c.value).where(t.meta.c.key == "schema_version"))
        if stored is None:
            await conn.execute(
                insert(t.meta).values(key="schema_version", value=str(t.SCHEMA_VERSION))
            )
            return
        version = int(stored)
        if version > t.SCHEMA_VERSION:
            raise StoreError(
                f"the database has schema version {version}, newer than this hookline "
                f"({t.SCHEMA_VERSION}); upgrade hookline"
            )
        if version < t.SCHEMA_VERSION:
            await migrate(conn, version)
            await conn.execute(
                update(t.meta)
                .where(t.meta.c.key == "schema_version")
                .values(value=str(t.SCHEMA_VERSION))
            )
        await _fill_signing(conn)

    async def _before_migrations(self, conn: AsyncConnection) -> None:
        """Prepare the connection that creates or migrates tables (outside a transaction)."""

    async def _after_migrations(self, conn: AsyncConnection) -> None:
        """Undo what :meth:`_before_migrations` did, once the migration is over."""

    async def close(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise  # callers translate it: only they know which name clashed
        except SQLAlchemyError as exc:
            raise StoreError(f"the database failed: {exc.__class__.__name__}: {exc}") from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.read_engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"the database failed: {exc.__class__.__name__}: {exc}") from exc

    def ingest(self) -> AbstractAsyncContextManager[SqlIngest]:
        return self._unit()

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[SqlIngest]:
        """One write transaction: reads at once, writes sent together before the commit."""
        async with self._write() as conn:
            tx = SqlIngest(conn)
            yield tx
            for sql, rows in tx.pending:
                await conn.exec_driver_sql(sql, rows)

    async def _write_statements(self, statements: Sequence[Statement]) -> None:
        """Run these writes in one transaction of their own."""
        async with self._write() as conn:
            for sql, rows in statements:
                await conn.exec_driver_sql(sql, rows)

    # --- user state and events -------------------------------------------------------

    async def get_state(
        self, user_ext_id: str, ext_brand_id: str | None = None
    ) -> dict[str, Any] | None:
        brand, user = user_key(ext_brand_id, user_ext_id)
        async with self._read() as conn:
            raw = await conn.scalar(
                select(t.users.c.state).where(
                    t.users.c.ext_brand_id == brand, t.users.c.user_ext_id == user
                )
            )
        return _state(raw, user_ext_id) if raw is not None else None

    async def get_event(self, event_id: str) -> Event | None:
        async with self._read() as conn:
            row = (await conn.execute(select(t.events).where(t.events.c.id == event_id))).first()
        if row is None:
            return None
        return Event(
            id=row.id,
            eid=row.eid,
            event_type=row.event_type,
            user_ext_id=row.user_ext_id,
            ext_brand_id=_stored_json(row.ext_brand_id, row.id, None) if row.ext_brand_id else None,
            event_date=row.event_date,
            payload=_stored_json(row.payload, row.id, {}),
            received_at=row.received_at,
        )

    # --- rules and saved webhooks ------------------------------------------------------

    async def list_rules(self) -> list[Rule]:
        async with self._read() as conn:
            rows = await conn.execute(select(t.rules).order_by(t.rules.c.id))
            return [_rule(r) for r in rows]

    async def get_rule(self, rule_id: str) -> Rule | None:
        async with self._read() as conn:
            row = (await conn.execute(select(t.rules).where(t.rules.c.id == rule_id))).first()
        return _rule(row) if row is not None else None

    async def save_rule(
        self, rule: Rule, *, create: bool, expected_version: int | None = None
    ) -> Rule:
        """Insert or update ``rule`` in one transaction; answer it with its new version.

        Its saved webhook must exist (InvalidInput); an update applies only to
        ``expected_version`` when given (Conflict otherwise), and NotFound if it is gone.
        """
        values = {
            "name": rule.name,
            "description": rule.description,
            "enabled": rule.enabled,
            "event_type": rule.event_type,
            "conditions": _dumps(rule.conditions) if rule.conditions is not None else None,
            "webhook": _dumps(rule.webhook.as_dict()) if rule.webhook is not None else None,
            "webhook_id": rule.webhook_id,
            "updated_at": rule.updated_at,
            "ext_brand_id": rule.ext_brand_id,
            "limits": _dumps(rule.limits.as_dict()) if rule.limits.counting else None,
            "counting_epoch": rule.counting_epoch,
        }
        if rule.signing is not None:  # None keeps what is stored (the catalog always sets it)
            values["signing"] = _signing_value(rule.signing)
        try:
            async with self._write() as conn:
                # Checked in the write's own transaction, so a webhook deleted a moment
                # ago cannot be referenced; the foreign key stands behind this check.
                if rule.webhook_id is not None and not await conn.scalar(
                    select(func.count()).where(t.webhooks.c.id == rule.webhook_id)
                ):
                    raise _missing_webhook(rule.webhook_id)
                if create:
                    await conn.execute(
                        insert(t.rules).values(
                            id=rule.id, created_at=rule.created_at, version=1, **values
                        )
                    )
                    version = 1
                else:
                    version = await _bump(conn, t.rules, rule.id, expected_version, values, "rule")
        except IntegrityError as exc:
            if _is_foreign_key(exc) and rule.webhook_id is not None:
                raise _missing_webhook(rule.webhook_id) from None
            raise Conflict(f"a rule named {rule.name!r} already exists", field="name") from None
        return replace(rule, version=version)

    async def delete_rule(self, rule_id: str, expected_version: int | None = None) -> bool:
        """Delete a rule (only at ``expected_version`` when given); False if there was none."""
        where = [t.rules.c.id == rule_id]
        if expected_version is not None:
            where.append(t.rules.c.version == expected_version)
        async with self._write() as conn:
            result = await conn.execute(delete(t.rules).where(*where))
            if not result.rowcount and expected_version is not None:
                current = await conn.scalar(
                    select(t.rules.c.version).where(t.rules.c.id == rule_id)
                )
                if current is not None:
                    raise stale_write(current, rule_id, "rule")
            # Its users' counters go with it, in the same commit.
            await conn.execute(delete(t.rule_counters).where(t.rule_counters.c.rule_id == rule_id))
        return bool(result.rowcount)

    async def get_counter(
        self, rule_id: str, user_ext_id: str, ext_brand_id: str | None = None
    ) -> Counter | None:
        """The user's counter for the rule as stored (None: none, or unreadable)."""
        brand, user = user_key(ext_brand_id, user_ext_id)
        c = t.rule_counters
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(c).where(
                        c.c.rule_id == rule_id, c.c.ext_brand_id == brand, c.c.user_ext_id == user
                    )
                )
            ).first()
        return _counter(row) if row is not None else None

    async def list_webhooks(self) -> list[SavedWebhook]:
        async with self._read() as conn:
            rows = await conn.execute(select(t.webhooks).order_by(t.webhooks.c.id))
            return [_webhook(r) for r in rows]

    async def get_webhook(self, webhook_id: str) -> SavedWebhook | None:
        async with self._read() as conn:
            row = (
                await conn.execute(select(t.webhooks).where(t.webhooks.c.id == webhook_id))
            ).first()
        return _webhook(row) if row is not None else None

    async def save_webhook(
        self, webhook: SavedWebhook, *, create: bool, expected_version: int | None = None
    ) -> SavedWebhook:
        """Insert or update a saved webhook; answer it with its new version (as save_rule)."""
        values = {
            "name": webhook.name,
            "spec": _dumps(webhook.spec.as_dict()),
            "updated_at": webhook.updated_at,
            "ext_brand_id": webhook.ext_brand_id,
        }
        if webhook.signing is not None:  # as in save_rule
            values["signing"] = _signing_value(webhook.signing)
        try:
            async with self._write() as conn:
                if create:
                    await conn.execute(
                        insert(t.webhooks).values(
                            id=webhook.id, created_at=webhook.created_at, version=1, **values
                        )
                    )
                    version = 1
                else:
                    version = await _bump(
                        conn, t.webhooks, webhook.id, expected_version, values, "webhook"
                    )
        except IntegrityError:
            raise Conflict(
                f"a webhook named {webhook.name!r} already exists", field="name"
            ) from None
        return replace(webhook, version=version)

    async def delete_webhook(self, webhook_id: str, expected_version: int | None = None) -> bool:
        """Delete a saved webhook no rule uses (Conflict naming them otherwise)."""
        w = t.webhooks
        where = [w.c.id == webhook_id]
        if expected_version is not None:
            where.append(w.c.version == expected_version)
        try:
            async with self._write() as conn:
                # In the delete's own transaction: a rule saved a moment ago is seen here.
                users = await _names_using(conn, webhook_id)
                if users:
                    raise _in_use(users)
                result = await conn.execute(delete(w).where(*where))
                if not result.rowcount and expected_version is not None:
                    current = await conn.scalar(select(w.c.version).where(w.c.id == webhook_id))
                    if current is not None:
                        raise stale_write(current, webhook_id, "webhook")
        except IntegrityError:
            async with self._read() as conn:
                raise _in_use(await _names_using(conn, webhook_id)) from None
        return bool(result.rowcount)

    async def list_signing(self) -> dict[str, Signing]:
        """Every rule's, saved webhook's and journey's signing secrets, by its id (key ring)."""
        found: dict[str, Signing] = {}
        async with self._read() as conn:
            for table in (t.rules, t.webhooks, t.journeys):
                rows = await conn.execute(
                    select(table.c.id, table.c.signing).where(table.c.signing.is_not(None))
                )
                for row in rows:
                    signing = _signing(row.signing)
                    if signing is not None:
                        found[row.id] = signing
        return found

    async def rules_using_webhook(self, webhook_id: str) -> list[Rule]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(t.rules).where(t.rules.c.webhook_id == webhook_id).order_by(t.rules.c.id)
            )
            return [_rule(r) for r in rows]

    # --- deliveries ----------------------------------------------------------------------

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
        """Lease up to ``limit`` due deliveries, leaving out hosts with no room.

        The first look reads a bounded window of the earliest due rows. Only if that window
        was all hosts without room, and ``look_past`` allows it, does a second look skip
        those hosts' rows (it reads their whole backlog, so the dispatcher asks for it
        seldom). Each lease lasts the delivery's own timeout plus ``lease_margin_ms``; a
        dispatcher that dies mid-send frees its deliveries when the lease ends.
        """
        d = t.deliveries
        window = limit * 2
        set_ = placeholders(self.engine, 6)
        async with self._unit() as tx:
            picker = _Picker(limit, host_room, per_host)
            rows = await tx._fetch(self._due_sql(()), [now, now, window])
            picker.take(rows)
            skipped = picker.hosts_without_room()
            if look_past and len(rows) == window and not picker.full and skipped:
                # A saturated (slow) host's backlog must not hide other hosts' due work.
                picker.take(await tx._fetch(self._due_sql(skipped), [now, now, *skipped, window]))
            for broken in picker.unreadable:
                log.error("delivery %s is dead: %s", broken.id, broken.last_error)
            if picker.unreadable:
                tx.pending.append(
                    (
                        f"UPDATE {d.name} SET status = {set_[0]}, next_attempt_at = NULL, "
                        f"lease_until = NULL, updated_at = {set_[1]}, last_error = {set_[2]} "
                        f"WHERE id = {set_[3]}",
                        [
                            (DeliveryStatus.DEAD.value, now, b.last_error, b.id)
                            for b in picker.unreadable
                        ],
                    )
                )
            if picker.chosen:
                # Each lease: the delivery's own timeout (as CAST(timeout * 1000) would) + margin.
                tx.pending.append(
                    (
                        f"UPDATE {d.name} SET lease_until = {set_[4]} WHERE id = {set_[5]}",
                        [
                            (now + lease_margin_ms + int(c.timeout * 1000), c.id)
                            for c in picker.chosen
                        ],
                    )
                )
        return picker.chosen

    def _due_sql(self, hosts: Sequence[str]) -> str:
        """Due, unleased rows in due order, leaving out ``hosts``; binds now, now, hosts, limit."""
        marks = placeholders(self.engine, 3 + len(hosts))
        return (
            f"SELECT {', '.join(_DeliveryRow._fields)} FROM {t.deliveries.name} "
            f"WHERE next_attempt_at <= {marks[0]} "
            f"AND (lease_until IS NULL OR lease_until < {marks[1]}) "
            + (f"AND host NOT IN ({', '.join(marks[2:-1])}) " if hosts else "")
            + f"ORDER BY next_attempt_at LIMIT {marks[-1]}"
        )

    async def record_outcomes(self, outcomes: Sequence[Outcome], now: int) -> None:
        if outcomes:
            await self._write_statements(_outcome_statements(self.engine, outcomes, now))

    async def next_due_at(self) -> int | None:
        """When the next unleased delivery falls due (leases end by the periodic poll)."""
        d = t.deliveries
        async with self._read() as conn:
            value = await conn.scalar(
                select(func.min(d.c.next_attempt_at)).where(
                    d.c.next_attempt_at.is_not(None), d.c.lease_until.is_(None)
                )
            )
        return int(value) if value is not None else None

    async def count_outbox(self) -> int:
        """Deliveries not finished yet (pending or retrying), in memory or not."""
        d = t.deliveries
        async with self._read() as conn:
            # Only active deliveries carry next_attempt_at: the partial index answers alone.
            value = await conn.scalar(
                select(func.count()).select_from(d).where(d.c.next_attempt_at.is_not(None))
            )
        return int(value or 0)

    async def release_leases(self, ids: Sequence[str] | None = None) -> int:
        d = t.deliveries
        leased = d.c.lease_until.is_not(None)
        parts = [None] if ids is None else list(_chunks(ids))
        released = 0
        async with self._write() as conn:
            for part in parts:
                where = leased if part is None else and_(leased, d.c.id.in_(part))
                result = await conn.execute(update(d).where(where).values(lease_until=None))
                released += int(result.rowcount or 0)
        return released

    async def list_deliveries(
        self, flt: DeliveryFilter, limit: int, before: str | None
    ) -> list[Delivery]:
        d = t.deliveries
        where = []
        if flt.rule_id is not None:
            where.append(d.c.rule_id == flt.rule_id)
        if flt.journey_id is not None:
            where.append(d.c.journey_id == flt.journey_id)
        if flt.user_ext_id is not None:
            where.append(d.c.user_ext_id == flt.user_ext_id)
            # A user is (brand, user): naming a user without a brand names the one of none.
            if flt.ext_brand_id is None:
                where.append(d.c.ext_brand_id.is_(None))
        if flt.ext_brand_id is not None:
            where.append(d.c.ext_brand_id == flt.ext_brand_id)
        if flt.brands is not None:
            where.append(d.c.ext_brand_id.in_(flt.brands))
        if flt.event_id is not None:
            where.append(d.c.event_id == flt.event_id)
        if flt.status is not None:
            where.append(d.c.status == flt.status.value)
        if flt.since is not None:
            where.append(d.c.created_at >= flt.since)
        if flt.until is not None:
            where.append(d.c.created_at < flt.until)
        if before is not None:
            where.append(d.c.id < before)
        query = select(d).order_by(d.c.id.desc()).limit(limit)
        if where:
            query = query.where(and_(*where))
        async with self._read() as conn:
            return [_delivery(r) for r in await conn.execute(query)]

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        d = t.deliveries
        async with self._read() as conn:
            row = (await conn.execute(select(d).where(d.c.id == delivery_id))).first()
        return _delivery(row) if row is not None else None

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        a = t.attempts
        async with self._read() as conn:
            rows = await conn.execute(
                select(a).where(a.c.delivery_id == delivery_id).order_by(a.c.number, a.c.id)
            )
            return [_attempt(r) for r in rows]

    async def requeue(self, delivery_id: str, now: int) -> Delivery | None:
        """Send again now, same webhook-id; refused while an attempt is in flight."""
        d = t.deliveries
        async with self._write() as conn:
            row = (await conn.execute(select(d).where(d.c.id == delivery_id))).first()
            if row is None:
                return None
            if row.lease_until is not None and row.lease_until >= now:
                raise Conflict("an attempt of this delivery is in flight; try again shortly")
            status = DeliveryStatus.RETRYING if row.attempts else DeliveryStatus.PENDING
            await conn.execute(
                update(d)
                .where(d.c.id == delivery_id)
                .values(status=status.value, next_attempt_at=now, lease_until=None, updated_at=now)
            )
            row = (await conn.execute(select(d).where(d.c.id == delivery_id))).first()
        assert row is not None
        return _delivery(row)

    async def count_deliveries(self) -> dict[str, int]:
        d = t.deliveries
        async with self._read() as conn:
            rows = await conn.execute(select(d.c.status, func.count()).group_by(d.c.status))
            return {row[0]: int(row[1]) for row in rows}

    # --- echo service --------------------------------------------------------------------

    async def echo_record(self, record: EchoRecord, keep: int) -> None:
        e = t.echo_requests
        async with self._write() as conn:
            await conn.execute(
                insert(e).values(
                    id=record.id,
                    secret=record.secret,
                    received_at=record.received_at,
                    method=record.method,
                    path=record.path,
                    query=record.query,
                    headers=_dumps(record.headers),
                    body=record.body,
                )
            )
            # Keep exactly the newest ``keep`` for this secret.
            cutoff = await conn.scalar(
                select(e.c.id)
                .where(e.c.secret == record.secret)
                .order_by(e.c.id.desc())
                .offset(keep)
                .limit(1)
            )
            if cutoff is not None:
                await conn.execute(delete(e).where(e.c.secret == record.secret, e.c.id <= cutoff))

    async def echo_list(self, secret: str, limit: int) -> list[EchoRecord]:
        e = t.echo_requests
        async with self._read() as conn:
            rows = await conn.execute(
                select(e).where(e.c.secret == secret).order_by(e.c.id.desc()).limit(limit)
            )
            return [
                EchoRecord(
                    id=r.id,
                    secret=r.secret,
                    received_at=r.received_at,
                    method=r.method,
                    path=r.path,
                    query=r.query,
                    headers=_pairs(r.headers),
                    body=r.body,
                )
                for r in rows
            ]

    async def echo_clear(self, secret: str) -> int:
        e = t.echo_requests
        async with self._write() as conn:
            result = await conn.execute(delete(e).where(e.c.secret == secret))
        return int(result.rowcount or 0)

    # --- API keys --------------------------------------------------------------------------

    async def insert_key(self, key: ApiKey) -> None:
        try:
            async with self._write() as conn:
                await conn.execute(insert(t.api_keys).values(_API_KEY.row(key)))
        except IntegrityError as exc:  # a clash of 256-bit random keys: never, but say so
            raise StoreError(f"the key could not be stored: {exc.orig}") from exc

    async def list_keys(self, *, active_only: bool = False) -> list[ApiKey]:
        k = t.api_keys
        query = select(k).order_by(k.c.id)
        if active_only:
            query = query.where(k.c.revoked_at.is_(None))
        async with self._read() as conn:
            return [_api_key(r) for r in await conn.execute(query)]

    async def revoke_key(self, key_id: str, now: int) -> ApiKey | None:
        k = t.api_keys
        async with self._write() as conn:
            await conn.execute(
                update(k).where(k.c.id == key_id, k.c.revoked_at.is_(None)).values(revoked_at=now)
            )
            row = (await conn.execute(select(k).where(k.c.id == key_id))).first()
        return _api_key(row) if row is not None else None
