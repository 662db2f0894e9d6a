"""Journeys, their versions and instances in SQL: the only module that knows their queries.

The ingest-side functions take the connection of the engine's open transaction, so an
instance moves in the same commit as the event or timer that moved it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields, replace
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hookline.errors import Conflict, StoreError
from hookline.journeys import (
    ChainCut,
    FinishReason,
    Instance,
    InstanceStatus,
    Journey,
    JourneyStatus,
    saved_webhooks_used,
)
from hookline.signing import Signing
from hookline.state import NO_BRAND, UserKey, user_key
from hookline.store import rows
from hookline.store import schema as t
from hookline.store.rows import RowMapper
from hookline.store.sql import placeholders, stale_write

log = logging.getLogger("hookline.journeys")

_CHUNK = 500
_I = t.journey_instances
_CUTS = t.journey_chain_cuts


def _brand(raw: bytes | None) -> Any:
    """A stored brand; one that cannot be read (a hand edit) as its text, so it keys a user."""
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return bytes(raw).decode(errors="replace")


_JOURNEY = RowMapper(
    Journey,
    stored=frozenset(f.name for f in fields(Journey)) - {"problem"},
    codecs={
        "status": rows.enum(JourneyStatus),
        "definition": rows.JSON,
        "ext_brand_id": rows.JSON_OR_NULL,
        "revision": rows.Codec(load=lambda raw: 1 if raw is None else raw),
        "signing": rows.Codec(
            dump=lambda s: None if s is None else orjson.dumps(s.as_json()),
            load=lambda raw: None if raw is None else Signing.from_json(orjson.loads(raw)),
        ),
    },
)


def _depth(raw: Any) -> int:
    """A stored chain depth: NULL (a row from before the column) is 0; one edited by hand
    into something else makes the row unreadable, not a step that fails at each try."""
    if raw is None:
        return 0
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise ValueError(f"chain_depth is {raw!r}, not a count")
    return raw


_INSTANCE = RowMapper(
    Instance,
    {
        "ext_brand_id": rows.JSON_OR_NULL,
        "status": rows.enum(InstanceStatus),
        "entry_event": rows.JSON,
        "last_event": rows.JSON,
        "control_group": rows.BOOL,
        "finish_reason": rows.enum(FinishReason, nullable=True),
        "chain_depth": rows.Codec(load=_depth),
    },
)
# A cut's brand as _brand reads it: a hand-edited one must not make the list unreadable.
_CHAIN_CUT = RowMapper(ChainCut, {"ext_brand_id": rows.Codec(rows.JSON_OR_NULL.dump, _brand)})


# What a column changed by hand can raise when read (orjson's error is a ValueError).
_UNREADABLE = (ValueError, TypeError, KeyError)


def _journey(row: Row[Any], definition: bytes | None = None) -> Journey:
    """A stored journey; one that cannot be read is kept with its ``problem`` and no
    definition, so it is skipped (not compiled), listed, and can be replaced or deleted."""
    try:
        if definition is None:
            return _JOURNEY.record(row)
        return _JOURNEY.record(row, definition=orjson.loads(definition))
    except _UNREADABLE as exc:
        problem = f"the stored journey cannot be read ({exc.__class__.__name__}: {exc})"
        log.error("journey %s: %s", row.id, problem)
    try:
        status = JourneyStatus(row.status)
    except ValueError:
        status = JourneyStatus.PAUSED  # nobody enters what cannot be read
    return Journey(
        id=row.id,
        name=row.name,
        status=status,
        definition={},
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
        description=row.description or "",
        ext_brand_id=_brand(row.ext_brand_id),
        revision=row.revision or 1,
        problem=problem,
    )


def _readable(rows: Iterable[Row[Any]], unreadable: dict[str, str] | None) -> list[Instance]:
    """The instances of ``rows`` (selected as ``_INSTANCE.columns``); one that cannot be read
    is logged and left out (its id and why into ``unreadable``), so one hand-edited row stops
    nobody else's walk."""
    found: list[Instance] = []
    for row in rows:
        try:
            found.append(_INSTANCE.from_tuple(row))
        except _UNREADABLE as exc:
            problem = f"the stored instance cannot be read ({exc.__class__.__name__}: {exc})"
            log.error("journey instance %s: %s; skipped", row.id, problem)
            if unreadable is not None:
                unreadable[row.id] = problem
    return found


def _instance_row(i: Instance) -> dict[str, Any]:
    return _INSTANCE.row(i)


def _loads_or_empty(raw: bytes) -> Any:
    """A stored definition, or {} when it cannot be read (it names nothing then)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


# --- inside the ingest transaction -------------------------------------------------------


def _ids(users: Sequence[UserKey]) -> list[str]:
    return sorted({user for _, user in users})


def brand_forms(brand: str) -> list[bytes]:
    """The stored (JSON) forms of a brand given as text: "5" is stored as "5" or as 5."""
    forms = [orjson.dumps(brand)]
    with contextlib.suppress(ValueError):
        if str(int(brand)) == brand:
            forms.append(orjson.dumps(int(brand)))
    return forms


def _brand_is(brand: str | None) -> Any:
    """A condition on an instance's brand, given as text (None: no brand)."""
    if brand is None or brand == NO_BRAND:
        return _I.c.ext_brand_id.is_(None)
    return _I.c.ext_brand_id.in_(brand_forms(brand))


async def load_active(
    conn: AsyncConnection,
    users: Sequence[UserKey],
    unreadable: dict[str, str] | None = None,
    *,
    converting_at: int | None = None,
) -> list[Instance]:
    """The active instances of these users (the one place that knows the user key); with
    ``converting_at``, also their finished ones whose goal still counts then (goal_until).

    Rows that cannot be read are left out, and named with why in ``unreadable``.
    """
    found: list[Instance] = []
    wanted = set(users)
    alive = _I.c.status == "active"
    if converting_at is not None:
        alive = or_(alive, _I.c.goal_until >= converting_at)
    for part in _chunks(_ids(users)):
        rows = await conn.execute(
            select(*_INSTANCE.columns(_I)).where(_I.c.user_ext_id.in_(part), alive)
        )
        found.extend(i for i in _readable(rows, unreadable) if i.user in wanted)
    return found


async def close_goal_windows(conn: AsyncConnection, journey_id: str) -> None:
    """A stopped journey counts no more conversions of users who walked it to its end."""
    await conn.execute(
        update(_I)
        .where(_I.c.journey_id == journey_id, _I.c.goal_until.is_not(None))
        .values(goal_until=None)
    )


async def clear_stuck_timers(conn: AsyncConnection, instance_ids: Sequence[str], now: int) -> int:
    """Clear the timers of these instances if still due: claimed, yet not loaded as active (a
    row that cannot be read), so nothing can move them and they would be claimed for ever."""
    cleared = 0
    for part in _chunks(instance_ids):
        result = await conn.execute(
            update(_I).where(_I.c.id.in_(part), _I.c.due_at <= now).values(due_at=None)
        )
        cleared += result.rowcount or 0
    return cleared


async def entered_ever(
    conn: AsyncConnection, users: Sequence[UserKey], journey_ids: Sequence[str]
) -> set[tuple[str, UserKey]]:
    """(journey id, user) pairs that have any instance, finished ones too."""
    pairs: set[tuple[str, UserKey]] = set()
    wanted = set(users)
    for part in _chunks(_ids(users)):
        rows = await conn.execute(
            select(_I.c.journey_id, _I.c.user_ext_id, _I.c.ext_brand_id)
            .where(_I.c.user_ext_id.in_(part), _I.c.journey_id.in_(journey_ids))
            .distinct()
        )
        for r in rows:
            key = user_key(_brand(r.ext_brand_id), r.user_ext_id)
            if key in wanted:
                pairs.add((r.journey_id, key))
    return pairs


def _inside(journey_id: str) -> ColumnElement[bool]:
    """The instances of users inside the journey now (active, on any version)."""
    return and_(_I.c.journey_id == journey_id, _I.c.status == "active")


async def active_users_of(
    conn: AsyncConnection, journey_id: str, *, after: str = "", limit: int | None = None
) -> list[UserKey]:
    """The users inside the journey: with ``limit``, those of the first ``limit``
    user_ext_ids after ``after`` (every brand of each), in order."""
    inside = _inside(journey_id)
    ids = (
        select(_I.c.user_ext_id)
        .where(inside, _I.c.user_ext_id > after)
        .distinct()
        .order_by(_I.c.user_ext_id)
        .limit(limit)
    )
    rows = await conn.execute(
        select(_I.c.user_ext_id, _I.c.ext_brand_id)
        .where(inside, _I.c.user_ext_id.in_(ids.scalar_subquery()))
        .distinct()
    )
    return list({user_key(_brand(r.ext_brand_id), r.user_ext_id) for r in rows})


# What a step can change on an instance that exists; the rest is fixed when it enters.
_UPDATABLE = (
    "status",
    "block",
    "block_since",
    "due_at",
    "waiting_for",
    "converted_at",
    "finish_reason",
    "finished_at",
    "updated_at",
    "last_event",
    "goal_until",
)


async def save_instances(
    conn: AsyncConnection, instances: Iterable[Instance], before: Mapping[str, Instance]
) -> None:
    """Write what a batch changed: new instances inserted, the others updated in place.

    ``before``: the instances as this transaction read them. An update sets only the
    columns whose value the step changed, so an index whose columns stayed (the user's
    status while a walk goes on, ``waiting_for`` after a delay) is not rewritten; the rows
    that changed the same columns share one statement. A delete and an insert of whole rows
    moved every index entry and re-encoded the entry event, for each of thousands of
    timers falling due at once.
    """
    new: list[dict[str, Any]] = []
    updates: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for inst in instances:
        old = before.get(inst.id)
        if old is None:
            new.append(_instance_row(inst))
            continue
        changed = tuple(c for c in _UPDATABLE if getattr(inst, c) != getattr(old, c))
        if changed:
            updates.setdefault(changed, []).append((*_INSTANCE.values(inst, changed), inst.id))
    for columns, rows_ in updates.items():
        marks = placeholders(conn, len(columns) + 1)
        sets = ", ".join(f"{c} = {m}" for c, m in zip(columns, marks, strict=False))
        await conn.exec_driver_sql(f"UPDATE {_I.name} SET {sets} WHERE id = {marks[-1]}", rows_)
    if new:
        await conn.execute(insert(_I), new)


async def add_block_counts(
    conn: AsyncConnection, counts: Mapping[tuple[str, str], tuple[int, int]]
) -> None:
    if not counts:
        return
    c = t.journey_block_counts
    marks = ", ".join(["?"] * 4) if conn.dialect.paramstyle == "qmark" else "%s, %s, %s, %s"
    await conn.exec_driver_sql(
        f"INSERT INTO {c.name} (journey_id, block, entered, passed) VALUES ({marks}) "
        "ON CONFLICT (journey_id, block) DO UPDATE SET "
        "entered = entered + excluded.entered, passed = passed + excluded.passed",
        [(j, b, e, p) for (j, b), (e, p) in counts.items()],
    )


async def insert_chain_cuts(conn: AsyncConnection, cuts: Sequence[ChainCut]) -> None:
    if cuts:
        await conn.execute(insert(_CUTS), [_CHAIN_CUT.row(c) for c in cuts])


async def load_version(conn: AsyncConnection, journey_id: str, version: int) -> Journey | None:
    return await _version(conn, journey_id, version)


async def _version(conn: AsyncConnection, journey_id: str, version: int) -> Journey | None:
    row = (await conn.execute(select(t.journeys).where(t.journeys.c.id == journey_id))).first()
    if row is None:
        return None
    if row.version == version:
        return _journey(row)
    v = t.journey_versions
    raw = await conn.scalar(
        select(v.c.definition).where(v.c.journey_id == journey_id, v.c.version == version)
    )
    if raw is None:
        return None
    return replace(_journey(row, raw), version=version)


# --- the journey store (API and timers) ----------------------------------------------------


class JourneyStore:
    """Journey definitions, instances and timers on the SQL store's engines."""

    def __init__(self, engine: AsyncEngine, read_engine: AsyncEngine | None = None) -> None:
        self.engine = engine
        self.read_engine = read_engine or engine

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"the database failed: {exc.__class__.__name__}: {exc}") from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.read_engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"the database failed: {exc.__class__.__name__}: {exc}") from exc

    async def list_journeys(self) -> list[Journey]:
        async with self._read() as conn:
            rows = await conn.execute(select(t.journeys).order_by(t.journeys.c.id))
            return [_journey(r) for r in rows]

    async def get_journey(self, journey_id: str) -> Journey | None:
        async with self._read() as conn:
            row = (
                await conn.execute(select(t.journeys).where(t.journeys.c.id == journey_id))
            ).first()
        return _journey(row) if row is not None else None

    async def get_version(self, journey_id: str, version: int) -> Journey | None:
        async with self._read() as conn:
            return await _version(conn, journey_id, version)

    async def list_versions(self, journey_id: str) -> list[dict[str, int]]:
        """Every kept version of the journey, newest first: ``version``, ``created_at`` and
        ``active``, the users inside who walk it."""
        v = t.journey_versions
        async with self._read() as conn:
            rows = await conn.execute(
                select(v.c.version, v.c.created_at)
                .where(v.c.journey_id == journey_id)
                .order_by(v.c.version.desc())
            )
            kept = [(int(r.version), int(r.created_at)) for r in rows]
            inside = await conn.execute(
                select(_I.c.version, func.count().label("n"))
                .where(_inside(journey_id))
                .group_by(_I.c.version)
            )
            walking = {int(r.version): int(r.n) for r in inside}
        return [
            {"version": version, "created_at": created_at, "active": walking.get(version, 0)}
            for version, created_at in kept
        ]

    async def versions_in_use(self, now: int) -> dict[tuple[str, int], bool]:
        """(journey id, version) of every version some active instance still walks (True), or
        whose goal only still counts for walks that completed (False), at ``now``."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(_I.c.journey_id, _I.c.version, _I.c.status)
                .where(or_(_I.c.status == "active", _I.c.goal_until >= now))
                .distinct()
            )
            found: dict[tuple[str, int], bool] = {}
            for r in rows:
                key = (r.journey_id, r.version)
                found[key] = found.get(key, False) or r.status == "active"
            return found

    async def save_journey(
        self, journey: Journey, *, create: bool, expected_revision: int | None = None
    ) -> Journey:
        """Insert or replace; answer it at its new revision. Every version's definition is kept.

        An update applies only at ``expected_revision`` when given (Conflict otherwise), and
        NotFound if the journey is gone.
        """
        row = _JOURNEY.row(journey)
        del row["id"], row["revision"]
        if journey.signing is None:  # None keeps what is stored, as for rules
            del row["signing"]
        v = t.journey_versions
        j = t.journeys
        revision = func.coalesce(j.c.revision, 1)
        try:
            async with self._write() as conn:
                if create:
                    await conn.execute(insert(j).values(id=journey.id, revision=1, **row))
                    new_revision = 1
                else:
                    del row["created_at"]
                    where = [j.c.id == journey.id]
                    if expected_revision is not None:
                        where.append(revision == expected_revision)
                    done = (
                        await conn.execute(
                            update(j)
                            .where(*where)
                            .values(**row, revision=revision + 1)
                            .returning(j.c.revision)
                        )
                    ).first()
                    if done is None:
                        current = await conn.scalar(select(revision).where(j.c.id == journey.id))
                        raise stale_write(current, journey.id, "journey")
                    new_revision = int(done.revision)
                # A version is created once: a later save of it (a draft edited, a status
                # changed) replaces its definition, not when it was created.
                kept = await conn.execute(
                    update(v)
                    .where(v.c.journey_id == journey.id, v.c.version == journey.version)
                    .values(definition=row["definition"])
                )
                if not kept.rowcount:
                    await conn.execute(
                        insert(v).values(
                            journey_id=journey.id,
                            version=journey.version,
                            definition=row["definition"],
                            created_at=journey.updated_at,
                        )
                    )
        except IntegrityError:
            raise Conflict(
                f"a journey named {journey.name!r} already exists", field="name"
            ) from None
        return replace(journey, revision=new_revision)

    async def delete_journey(self, journey_id: str, expected_revision: int | None = None) -> bool:
        """Delete a journey, its versions, instances and cuts (only at ``expected_revision``)."""
        j = t.journeys
        where = [j.c.id == journey_id]
        if expected_revision is not None:
            where.append(func.coalesce(j.c.revision, 1) == expected_revision)
        async with self._write() as conn:
            result = await conn.execute(delete(j).where(*where))
            if not result.rowcount:
                current = await conn.scalar(
                    select(func.coalesce(j.c.revision, 1)).where(j.c.id == journey_id)
                )
                if current is not None:
                    raise stale_write(current, journey_id, "journey")
                return False
            for table in (t.journey_versions, t.journey_block_counts, _I, _CUTS):
                await conn.execute(delete(table).where(table.c.journey_id == journey_id))
        return True

    async def journeys_using_webhook(self, webhook_id: str) -> list[str]:
        """The journeys whose definition names the saved webhook, or whose older version
        does while users are still inside it; each as its name (and that version)."""
        j, v = t.journeys, t.journey_versions
        found: list[str] = []
        async with self._read() as conn:
            current: dict[str, tuple[str, int]] = {}
            for row in await conn.execute(select(j.c.id, j.c.name, j.c.version, j.c.definition)):
                current[row.id] = (row.name, row.version)
                if webhook_id in saved_webhooks_used(_loads_or_empty(row.definition)):
                    found.append(row.name)
            in_use = await conn.execute(
                select(_I.c.journey_id, _I.c.version).where(_I.c.status == "active").distinct()
            )
            for journey_id, version in sorted((r.journey_id, r.version) for r in in_use):
                name, now = current.get(journey_id, (journey_id, 0))
                if version == now:
                    continue
                raw = await conn.scalar(
                    select(v.c.definition).where(
                        v.c.journey_id == journey_id, v.c.version == version
                    )
                )
                if raw is not None and webhook_id in saved_webhooks_used(_loads_or_empty(raw)):
                    found.append(f"{name} (version {version}, users inside)")
        return sorted(set(found))

    async def list_instances(
        self,
        *,
        journey_id: str | None = None,
        user_ext_id: str | None = None,
        ext_brand_id: str | None = None,
        status: InstanceStatus | None = None,
        limit: int = 100,
    ) -> list[Instance]:
        """Newest first. A user is (brand, user): with ``user_ext_id``, a None brand is none."""
        where = []
        if journey_id is not None:
            where.append(_I.c.journey_id == journey_id)
        if user_ext_id is not None:
            where.append(_I.c.user_ext_id == user_ext_id)
            where.append(_brand_is(ext_brand_id))
        elif ext_brand_id is not None:
            where.append(_brand_is(ext_brand_id))
        if status is not None:
            where.append(_I.c.status == status.value)
        query = select(*_INSTANCE.columns(_I)).order_by(_I.c.id.desc()).limit(limit)
        if where:
            query = query.where(and_(*where))
        async with self._read() as conn:
            return _readable(await conn.execute(query), None)

    async def list_chain_cuts(self, journey_id: str, limit: int = 100) -> list[ChainCut]:
        """The events the journey's steps did not emit (their chain was too deep), newest first."""
        query = (
            select(*_CHAIN_CUT.columns(_CUTS))
            .where(_CUTS.c.journey_id == journey_id)
            .order_by(_CUTS.c.id.desc())
            .limit(limit)
        )
        async with self._read() as conn:
            return [_CHAIN_CUT.from_tuple(row) for row in await conn.execute(query)]

    async def due(
        self, now: int, limit: int, skip: Collection[str] = ()
    ) -> list[tuple[str, UserKey]]:
        """(instance id, user) of up to ``limit`` instances whose timer is due, oldest first.

        ``skip``: instances already handed to the writer and not yet committed.
        """
        async with self._read() as conn:
            rows = await conn.execute(
                select(_I.c.id, _I.c.user_ext_id, _I.c.ext_brand_id)
                .where(_I.c.due_at.is_not(None), _I.c.due_at <= now)
                .order_by(_I.c.due_at)
                .limit(limit + len(skip))
            )
            found = [
                (r.id, user_key(_brand(r.ext_brand_id), r.user_ext_id))
                for r in rows
                if r.id not in skip
            ]
        return found[:limit]

    async def put_off(self, instance_id: str, until: int) -> None:
        """Move a due timer to ``until``: its step could not be stored (a timer set later
        meanwhile, or none, stays as it is)."""
        async with self._write() as conn:
            await conn.execute(
                update(_I)
                .where(_I.c.id == instance_id, _I.c.due_at.is_not(None), _I.c.due_at < until)
                .values(due_at=until)
            )

    async def next_due_at(self) -> int | None:
        async with self._read() as conn:
            # The condition lets the partial index on due_at answer (not a table scan).
            value = await conn.scalar(select(func.min(_I.c.due_at)).where(_I.c.due_at.is_not(None)))
        return int(value) if value is not None else None

    async def count_inside(self, journey_id: str) -> int:
        """Users inside the journey now (active instances, on any version)."""
        async with self._read() as conn:
            value = await conn.scalar(
                select(func.count()).select_from(_I).where(_inside(journey_id))
            )
        return int(value or 0)

    async def count_timers(self) -> int:
        """Journey instances waiting for a due time (a delay, a wait's timeout, max duration)."""
        async with self._read() as conn:
            value = await conn.scalar(
                select(func.count()).select_from(_I).where(_I.c.due_at.is_not(None))
            )
        return int(value or 0)

    async def stats(self, journey_id: str) -> dict[str, Any]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(
                    _I.c.control_group,
                    _I.c.status,
                    _I.c.finish_reason,
                    _I.c.converted_at.is_not(None).label("converted"),
                    func.count().label("n"),
                )
                .where(_I.c.journey_id == journey_id)
                .group_by(_I.c.control_group, _I.c.status, _I.c.finish_reason, "converted")
            )
            groups = list(rows)
            waiting = await conn.execute(
                select(_I.c.block, func.count().label("n"))
                .where(_inside(journey_id))
                .group_by(_I.c.block)
            )
            waiting_now = {r.block: r.n for r in waiting if r.block is not None}
            c = t.journey_block_counts
            counts = await conn.execute(select(c).where(c.c.journey_id == journey_id))
            blocks = {r.block: {"entered": r.entered, "passed": r.passed} for r in counts}
            chain_cuts = await conn.scalar(
                select(func.count()).select_from(_CUTS).where(_CUTS.c.journey_id == journey_id)
            )
        answer: dict[str, Any] = {}
        for name, control in (("treatment", False), ("control", True)):
            mine = [g for g in groups if bool(g.control_group) is control]
            entered = sum(g.n for g in mine)
            converted = sum(g.n for g in mine if g.converted)
            finished: dict[str, int] = {}
            for g in mine:
                if g.finish_reason is not None:
                    finished[g.finish_reason] = finished.get(g.finish_reason, 0) + g.n
            answer[name] = {
                "entered": entered,
                "active": sum(g.n for g in mine if g.status == "active"),
                "finished": finished,
                "converted": converted,
                "conversion_rate": converted / entered if entered else None,
            }
        # Both groups together, as one figure of the journey.
        treatment, control = answer["treatment"], answer["control"]
        entered = answer["entered"] = treatment["entered"] + control["entered"]
        answer["active"] = treatment["active"] + control["active"]
        finished = dict(treatment["finished"])
        for reason, n in control["finished"].items():
            finished[reason] = finished.get(reason, 0) + n
        answer["finished"] = finished
        converted = answer["converted"] = treatment["converted"] + control["converted"]
        answer["conversion_rate"] = converted / entered if entered else None
        answer["blocks"] = {
            name: {**counts_, "waiting": waiting_now.get(name, 0)}
            for name, counts_ in blocks.items()
        }
        answer["chain_cuts"] = int(chain_cuts or 0)
        return answer
