"""Campaign journeys: the definition, its validation, and step semantics as a pure state machine.

A journey is a graph of named blocks a user walks through after an entry event. Nothing here
does I/O: :func:`compile_journey` checks a definition once (422 naming the block and field),
and :func:`enter`, :func:`on_event`, :func:`on_timer` and :func:`stop` take an instance and a
trigger and return a :class:`Step`: the new instance, the webhooks to plan, the state patches
and the events to emit. The engine applies a step inside the same commit as its trigger.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from hookline.brands import check_webhook_use
from hookline.conditions import JOURNEY_SCOPES as CONDITION_SCOPES
from hookline.conditions import Predicate, always_true, compile_conditions
from hookline.errors import Conflict, InvalidInput
from hookline.redaction import keep_masked, redact_headers, same_origin
from hookline.rules import SavedWebhook
from hookline.signing import Signing
from hookline.state import RESERVED, UserKey, merge_patch, user_key
from hookline.templates import JOURNEY_SCOPES, Template, TemplateMode, compile_template
from hookline.times import MAX_DURATION_MS, parse_duration, short_value
from hookline.values import MAX_DEPTH, check_json
from hookline.webhooks import CompiledWebhook, WebhookSpec, compile_webhook


class JourneyStatus(StrEnum):
    DRAFT = "draft"  # not running
    ACTIVE = "active"
    PAUSED = "paused"  # users inside go on; no new entries
    STOPPED = "stopped"  # everyone leaves (reason "stopped")
    ARCHIVED = "archived"


class EntryMode(StrEnum):
    ONCE_WHILE_ACTIVE = "once_while_active"  # no second entry while an instance runs
    ONCE_IN_LIFETIME = "once_in_lifetime"
    EVERY_TIME = "every_time"


class BlockType(StrEnum):
    WEBHOOK = "webhook"
    DELAY = "delay"
    WAIT_FOR_EVENT = "wait_for_event"
    CONDITION = "condition"
    SPLIT = "split"
    UPDATE_STATE = "update_state"
    EMIT_EVENT = "emit_event"
    EXIT = "exit"


class InstanceStatus(StrEnum):
    ACTIVE = "active"
    FINISHED = "finished"


class FinishReason(StrEnum):
    COMPLETED = "completed"  # walked to an exit block or a block with nowhere to go
    EXITED = "exited"  # an exit_on event came
    GOAL = "goal"  # converted, and the goal says exit_on_goal
    TIMEOUT = "timeout"  # max_duration passed, or a wait without on_timeout ran out
    STOPPED = "stopped"  # the journey was stopped or archived


# The walk ended without the user leaving it (an exit event) or the journey ending it (a
# stop): the goal still counts until its window ends.
_ENDED_BY_ITSELF: Final = frozenset({FinishReason.COMPLETED, FinishReason.TIMEOUT})


CAMPAIGN_STARTED: Final = "campaign_started"
CAMPAIGN_CONVERTED: Final = "campaign_converted"
CAMPAIGN_FINISHED: Final = "campaign_finished"
# Blocks whose outgoing edges may close a cycle: they always wait for time or an event.
WAITING_BLOCKS: Final = frozenset({BlockType.DELAY, BlockType.WAIT_FOR_EVENT})
MAX_BLOCKS: Final = 200
# What an update_state block's ``set`` or an emit_event block's ``payload`` may render to.
# A block in a cycle that feeds a value back into itself ({"a": "{{state.a}}{{state.a}}"})
# would otherwise double the user's state on every pass, nesting or length alike.
MAX_RENDERED_BYTES: Final = 64 * 1024
# Letters and digits of any script ("приветствие" as well as "hello"), no spaces or dots.
_BLOCK_NAME: Final = re.compile(r"[\w\-?!]{1,64}")
_EVENT_TYPE: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
_TIME_OF_DAY: Final = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?")
# A fixed offset from UTC, as profiles often keep a zone: "+02:00", "-0530", "UTC+3", "GMT-5".
_UTC_OFFSET: Final = re.compile(r"(?:UTC|GMT)?\s*([+-])([01]?[0-9])(?::?([0-5][0-9]))?", re.I)
_UTC_NAMES: Final = frozenset({"UTC", "GMT", "Z"})
# Offsets in use run from -12:00 to +14:00.
_MAX_OFFSET: Final = timedelta(hours=14)
# A template string that is a single tag: in update_state and emit_event, a typed value.
_WHOLE_TAG: Final = re.compile(r"\{\{[^{}]*\}\}")
_STATE_NAME: Final = re.compile(r"[A-Za-z0-9_\-]{1,128}")
_ACTIVITY_KEYS: Final = frozenset(
    {"type", "webhook_id", "url", "method", "content_type", "headers", "query", "body"}
    | {"timeout", "retry_schedule", "secret_headers"}
)
DEFINITION_KEYS: Final = (
    "entry",
    "control_group",
    "goal",
    "exit_on",
    "max_duration",
    "start",
    "blocks",
)


# --- the definition ---------------------------------------------------------------------


@dataclass(frozen=True)
class Journey:
    """A journey as stored: its definition is the JSON the user wrote (validated on save).

    ``version`` names a definition (instances walk the version they entered; a status change
    is no new one); ``revision`` rises by one on every write, so it is the journey's ETag.
    """

    id: str
    name: str
    status: JourneyStatus
    definition: Mapping[str, Any]
    created_at: int
    updated_at: int
    version: int = 1
    description: str = ""
    ext_brand_id: str | int | None = None
    revision: int = 1
    # What its inline webhook blocks sign with; kept across versions, replaced by a rotation.
    signing: Signing | None = None
    # Why the stored row cannot be read (a hand edit): it is skipped, listed, replaceable.
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "status": self.status.value,
            "version": self.version,
            "revision": self.revision,
            "ext_brand_id": self.ext_brand_id,
            **{k: self.definition[k] for k in DEFINITION_KEYS if k in self.definition},
            "signing_secret": self.signing.secret if self.signing is not None else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.problem is not None:
            shown["problem"] = self.problem
        return shown


@dataclass(frozen=True, slots=True)
class TimeOfDay:
    """``delay.until``: the next hh:mm in the user's time zone (a state field, or a default)."""

    hour: int
    minute: int
    zone_field: str | None
    zone_default: str | float  # all that _zone reads: a name, an offset, hours
    second: int = 0


@dataclass(frozen=True, slots=True)
class Block:
    """One step of the graph; only the fields of its type are set."""

    name: str
    type: BlockType
    next: str | None = None
    webhook: CompiledWebhook | None = None
    webhook_id: str | None = None
    duration_ms: int | None = None
    until: TimeOfDay | None = None
    event_type: str | None = None
    predicate: Predicate = always_true
    timeout_ms: int | None = None
    on_timeout: str | None = None
    then: str | None = None
    otherwise: str | None = None
    branches: tuple[tuple[float, str], ...] = ()
    template: Template | None = None  # update_state's ``set``, emit_event's ``payload``

    def exits(self) -> list[tuple[str, str]]:
        """(field, target) of every edge out of this block."""
        pairs = [("next", self.next), ("on_timeout", self.on_timeout)]
        pairs += [("then", self.then), ("else", self.otherwise)]
        pairs += [(f"branches[{i}].next", target) for i, (_, target) in enumerate(self.branches)]
        return [(name, target) for name, target in pairs if target is not None]


@dataclass(frozen=True, slots=True)
class Watch:
    """An event type (with conditions) a journey reacts to: a goal or an exit criterion."""

    event_type: str
    predicate: Predicate = always_true


@dataclass(frozen=True, slots=True)
class Goal:
    watch: Watch
    within_ms: int | None
    exit_on_goal: bool


@dataclass(frozen=True)
class CompiledJourney:
    """A journey version ready to run."""

    journey: Journey
    trigger: str
    entry: Predicate
    audience: Predicate
    mode: EntryMode
    control_percent: float
    control_sticky: bool
    goal: Goal | None
    exit_on: tuple[Watch, ...]
    max_duration_ms: int | None
    start: str
    blocks: Mapping[str, Block]
    webhook_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def id(self) -> str:
        return self.journey.id

    @property
    def version(self) -> int:
        return self.journey.version

    def watched_types(self) -> frozenset[str]:
        """Event types that can move an instance of this version (besides the trigger)."""
        types = {w.event_type for w in self.exit_on}
        if self.goal is not None:
            types.add(self.goal.watch.event_type)
        types.update(b.event_type for b in self.blocks.values() if b.event_type is not None)
        types.discard("")
        return frozenset(t for t in types if t)


def compile_journey(journey: Journey, webhooks: Mapping[str, SavedWebhook]) -> CompiledJourney:
    """Check a whole definition and compile it; errors name the block and field."""
    d = journey.definition
    _only(d, set(DEFINITION_KEYS), "")
    entry = _object(d.get("entry"), "entry", required=True)
    _only(entry, {"trigger", "conditions", "audience", "mode"}, "entry")
    trigger = _object(entry.get("trigger"), "entry.trigger", required=True)
    _only(trigger, {"event_type"}, "entry.trigger")
    trigger_type = _event_type(trigger.get("event_type"), "entry.trigger.event_type")
    mode = _enum(EntryMode, entry.get("mode", EntryMode.ONCE_WHILE_ACTIVE.value), "entry.mode")
    percent, sticky = _control_group(d.get("control_group"))
    goal = _goal(d.get("goal"))
    exit_on = _exit_on(d.get("exit_on"))
    max_duration = d.get("max_duration")
    blocks, webhook_ids = _blocks(d.get("blocks"), webhooks)
    for block in blocks.values():
        if block.webhook_id is not None:
            # Another brand's webhook would send with its credentials and signing secret.
            check_webhook_use(
                "journey",
                journey.name,
                journey.ext_brand_id,
                webhooks[block.webhook_id],
                field=f"blocks.{block.name}.activity.webhook_id",
            )
    start = d.get("start")
    if not isinstance(start, str) or start not in blocks:
        raise InvalidInput(
            f"start must name a block; got {short_value(start)} (blocks: {', '.join(blocks)})",
            field="start",
        )
    _check_graph(start, blocks)
    return CompiledJourney(
        journey=journey,
        trigger=trigger_type,
        entry=_conditions(entry.get("conditions"), "entry.conditions"),
        audience=_conditions(entry.get("audience"), "entry.audience"),
        mode=mode,
        control_percent=percent,
        control_sticky=sticky,
        goal=goal,
        exit_on=exit_on,
        max_duration_ms=(
            parse_duration(max_duration, "max_duration") if max_duration is not None else None
        ),
        start=start,
        blocks=blocks,
        webhook_ids=frozenset(webhook_ids),
    )


def check_journey_name(name: str) -> None:
    """A name has no spaces at either end (" welcome" would be a second journey by mistake)."""
    if not name.strip() or name != name.strip():
        raise InvalidInput(
            f"a journey name has no spaces at its start or end; got {short_value(name)}",
            field="name",
        )


def successor(current: Journey, proposed: Journey) -> Journey:
    """``proposed`` as the write that follows ``current``, at the version it must have.

    A changed definition of a journey that has run is a new version (users inside finish on
    theirs); a draft is edited in place. A journey that has run cannot go back to draft.
    """
    if current.status is not JourneyStatus.DRAFT and proposed.status is JourneyStatus.DRAFT:
        raise Conflict(
            "a journey that has run cannot go back to draft; pause or stop it", field="status"
        )
    unchanged = dict(current.definition) == dict(proposed.definition)
    if unchanged or current.status is JourneyStatus.DRAFT:
        version = current.version
    else:
        version = current.version + 1
    return replace(proposed, id=current.id, version=version, revision=current.revision)


def saved_webhooks_used(definition: Mapping[str, Any]) -> frozenset[str]:
    """The saved webhooks a definition's webhook blocks name, read without compiling it.

    A stored definition may no longer compile; what it names is still in use.
    """
    blocks = definition.get("blocks")
    if not isinstance(blocks, Mapping):
        return frozenset()
    found: set[str] = set()
    for block in blocks.values():
        activity = block.get("activity") if isinstance(block, Mapping) else None
        webhook_id = activity.get("webhook_id") if isinstance(activity, Mapping) else None
        if isinstance(webhook_id, str):
            found.add(webhook_id)
    return frozenset(found)


def _with_activity_headers(
    definition: Mapping[str, Any], change: Callable[[str, Mapping[str, Any]], dict[str, str]]
) -> dict[str, Any]:
    """``definition`` with each inline activity's headers replaced by ``change(block, act)``."""
    blocks = definition.get("blocks")
    if not isinstance(blocks, Mapping):
        return dict(definition)
    changed: dict[str, Any] = {}
    for name, block in blocks.items():
        activity = block.get("activity") if isinstance(block, Mapping) else None
        if isinstance(activity, Mapping) and isinstance(activity.get("headers"), Mapping):
            activity = {**activity, "headers": change(name, activity)}
            block = {**block, "activity": activity}
        changed[name] = block
    return {**definition, "blocks": changed}


def _secret_list(activity: Mapping[str, Any]) -> list[str]:
    names = activity.get("secret_headers")
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def keeping_secrets(
    definition: Mapping[str, Any], stored: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``definition`` with secret headers sent back as ``***`` kept from the same block of
    ``stored`` (see :func:`hookline.redaction.keep_masked`, the merge rules use too)."""
    before = stored.get("blocks") if stored is not None else None

    def keep(name: str, activity: Mapping[str, Any]) -> dict[str, str]:
        old = before.get(name) if isinstance(before, Mapping) else None
        old_activity = old.get("activity") if isinstance(old, Mapping) else None
        old_headers = old_activity.get("headers") if isinstance(old_activity, Mapping) else None
        old_url = old_activity.get("url") if isinstance(old_activity, Mapping) else None
        return keep_masked(
            activity["headers"],
            _secret_list(activity),
            old_headers if isinstance(old_headers, Mapping) else None,
            f"blocks.{name}.activity.headers",
            same_destination=same_origin(
                old_url if isinstance(old_url, str) else None, str(activity.get("url") or "")
            ),
        )

    return _with_activity_headers(definition, keep)


def shown_definition(definition: Mapping[str, Any]) -> dict[str, Any]:
    """``definition`` as answers show it: secret header values of its blocks as ``***``."""
    return _with_activity_headers(
        definition, lambda _, act: redact_headers(act["headers"], _secret_list(act))
    )


def _only(data: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in data:
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            raise InvalidInput(
                f"unknown key {key!r}; expected only {expected}",
                field=f"{path}.{key}" if path else str(key),
            )


def _object(value: Any, path: str, *, required: bool = False) -> Mapping[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{path} must be an object; got {short_value(value)}", field=path)
    return value


def _event_type(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _EVENT_TYPE.fullmatch(value):
        raise InvalidInput(
            "an event type is 1-128 characters of letters, digits, '_', '-', '.', ':'",
            field=path,
        )
    return value


_E = TypeVar("_E", bound=StrEnum)


def _enum(kind: type[_E], value: Any, path: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidInput(
            f"expected one of {allowed}; got {short_value(value)}", field=path
        ) from None


def _conditions(spec: Any, path: str) -> Predicate:
    return compile_conditions(spec, field=path, scopes=CONDITION_SCOPES)


def _percent(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise InvalidInput(
            f"a percent is a number from 0 to 100; got {short_value(value)}", field=path
        )
    return float(value)


def _control_group(raw: Any) -> tuple[float, bool]:
    data = _object(raw, "control_group")
    _only(data, {"percent", "sticky"}, "control_group")
    sticky = data.get("sticky", True)
    if not isinstance(sticky, bool):
        raise InvalidInput("sticky is true or false", field="control_group.sticky")
    return _percent(data.get("percent", 0), "control_group.percent"), sticky


def _watch(raw: Any, path: str, extra: frozenset[str] = frozenset()) -> Watch:
    data = _object(raw, path, required=True)
    _only(data, {"event_type", "conditions", *extra}, path)
    event_type = _event_type(data.get("event_type"), f"{path}.event_type")
    return Watch(event_type, _conditions(data.get("conditions"), f"{path}.conditions"))


def _goal(raw: Any) -> Goal | None:
    if raw is None:
        return None
    watch = _watch(raw, "goal", frozenset({"within", "exit_on_goal"}))
    within = raw.get("within")
    exit_on_goal = raw.get("exit_on_goal", True)
    if not isinstance(exit_on_goal, bool):
        raise InvalidInput("exit_on_goal is true or false", field="goal.exit_on_goal")
    return Goal(
        watch,
        parse_duration(within, "goal.within") if within is not None else None,
        exit_on_goal,
    )


def _exit_on(raw: Any) -> tuple[Watch, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidInput("exit_on is a list of {event_type, conditions}", field="exit_on")
    return tuple(_watch(item, f"exit_on[{i}]") for i, item in enumerate(raw))


# Keys each block type takes, besides "type".
_BLOCK_KEYS: Final[Mapping[BlockType, frozenset[str]]] = {
    BlockType.WEBHOOK: frozenset({"activity", "next"}),
    BlockType.DELAY: frozenset({"duration", "until", "time_zone_field", "time_zone", "next"}),
    BlockType.WAIT_FOR_EVENT: frozenset(
        {"event_type", "conditions", "timeout", "next", "on_timeout"}
    ),
    BlockType.CONDITION: frozenset({"conditions", "then", "else"}),
    BlockType.SPLIT: frozenset({"branches"}),
    BlockType.UPDATE_STATE: frozenset({"set", "next"}),
    BlockType.EMIT_EVENT: frozenset({"event_type", "payload", "next"}),
    BlockType.EXIT: frozenset(),
}


def _blocks(raw: Any, webhooks: Mapping[str, SavedWebhook]) -> tuple[dict[str, Block], list[str]]:
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidInput("blocks must be an object of named blocks", field="blocks")
    if len(raw) > MAX_BLOCKS:
        raise InvalidInput(f"a journey takes at most {MAX_BLOCKS} blocks", field="blocks")
    blocks: dict[str, Block] = {}
    webhook_ids: list[str] = []
    for name, spec in raw.items():
        path = f"blocks.{name}"
        if not isinstance(name, str) or not _BLOCK_NAME.fullmatch(name):
            raise InvalidInput(
                "a block name is 1-64 letters (of any script), digits, '_', '-', '?', '!'",
                field=path,
            )
        data = _object(spec, path, required=True)
        kind = _enum(BlockType, data.get("type"), f"{path}.type")
        _only(data, {"type", *_BLOCK_KEYS[kind]}, path)
        block = _block(name, kind, data, path, webhooks)
        if block.webhook_id is not None:
            webhook_ids.append(block.webhook_id)
        blocks[name] = block
    return blocks, webhook_ids


def _target(data: Mapping[str, Any], key: str, path: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{key} names a block; got {short_value(value)}", field=f"{path}.{key}")
    return value


def _block(
    name: str,
    kind: BlockType,
    data: Mapping[str, Any],
    path: str,
    webhooks: Mapping[str, SavedWebhook],
) -> Block:
    nxt = _target(data, "next", path)
    if kind is BlockType.WEBHOOK:
        webhook, webhook_id = _activity(data.get("activity"), f"{path}.activity", webhooks)
        return Block(name, kind, nxt, webhook=webhook, webhook_id=webhook_id)
    if kind is BlockType.DELAY:
        if ("duration" in data) == ("until" in data):
            raise InvalidInput(
                "a delay takes either duration or until (a time of day such as '09:00')",
                field=f"{path}.duration",
            )
        if "duration" in data:
            duration = parse_duration(data["duration"], f"{path}.duration")
            return Block(name, kind, nxt, duration_ms=duration)
        return Block(name, kind, nxt, until=_until(data, path))
    if kind is BlockType.WAIT_FOR_EVENT:
        timeout = data.get("timeout")
        on_timeout = _target(data, "on_timeout", path)
        if on_timeout is not None and timeout is None:
            raise InvalidInput("on_timeout needs a timeout", field=f"{path}.timeout")
        return Block(
            name,
            kind,
            nxt,
            event_type=_event_type(data.get("event_type"), f"{path}.event_type"),
            predicate=_conditions(data.get("conditions"), f"{path}.conditions"),
            timeout_ms=parse_duration(timeout, f"{path}.timeout") if timeout is not None else None,
            on_timeout=on_timeout,
        )
    if kind is BlockType.CONDITION:
        then, otherwise = _target(data, "then", path), _target(data, "else", path)
        if then is None or otherwise is None:
            missing = "then" if then is None else "else"
            raise InvalidInput("a condition block needs then and else", field=f"{path}.{missing}")
        predicate = _conditions(data.get("conditions"), f"{path}.conditions")
        return Block(name, kind, predicate=predicate, then=then, otherwise=otherwise)
    if kind is BlockType.SPLIT:
        return Block(name, kind, branches=_branches(data.get("branches"), path))
    if kind is BlockType.UPDATE_STATE:
        values = data.get("set")
        if not isinstance(values, Mapping) or not values:
            raise InvalidInput("set is an object of state properties", field=f"{path}.set")
        return Block(name, kind, nxt, template=_json_template(values, f"{path}.set"))
    if kind is BlockType.EMIT_EVENT:
        payload = data.get("payload", {})
        if not isinstance(payload, Mapping):
            raise InvalidInput("payload is an object", field=f"{path}.payload")
        return Block(
            name,
            kind,
            nxt,
            event_type=_event_type(data.get("event_type"), f"{path}.event_type"),
            template=_json_template(payload, f"{path}.payload"),
        )
    return Block(name, kind)


def _until(data: Mapping[str, Any], path: str) -> TimeOfDay:
    """``until`` and the zone it is read in: ``time_zone_field`` and ``time_zone`` (the
    default), or both in one object, ``time_zone: {"field": ..., "default": ...}``."""
    text = data.get("until")
    match = _TIME_OF_DAY.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput(
            "until is a time of day, hh:mm or hh:mm:ss (24 h)", field=f"{path}.until"
        )
    zone_field, field_path = data.get("time_zone_field"), f"{path}.time_zone_field"
    default, default_path = data.get("time_zone", "UTC"), f"{path}.time_zone"
    if isinstance(default, Mapping):
        if zone_field is not None:
            raise InvalidInput(
                "give the state property once: time_zone.field or time_zone_field",
                field=field_path,
            )
        _only(default, {"field", "default"}, default_path)
        zone_field, field_path = default.get("field"), f"{default_path}.field"
        default, default_path = default.get("default", "UTC"), f"{default_path}.default"
    if isinstance(zone_field, str) and _STATE_NAME.fullmatch(zone_field):
        zone_field = f"state.{zone_field}"  # a bare property name is the state's
    if zone_field is not None and (
        not isinstance(zone_field, str) or not zone_field.startswith("state.")
    ):
        raise InvalidInput(
            "the time zone is read from a state property, such as 'state.core_timezone'",
            field=field_path,
        )
    if _zone(default) is None:
        raise InvalidInput(
            f"unknown time zone {short_value(default)}; use an IANA name such as "
            "'Europe/Malta', an offset of at most 14 hours such as '+02:00', or hours (2)",
            field=default_path,
        )
    second = int(match[3] or 0)
    return TimeOfDay(int(match[1]), int(match[2]), zone_field, default, second)


def _zone(name: Any) -> tzinfo | None:
    """The time zone ``name`` means: an IANA name (``Europe/Malta``), a fixed offset
    (``+02:00``, ``-0530``, ``UTC+3``, ``GMT-5``) or a number of hours (``2``, ``-3.5``)."""
    if isinstance(name, int | float) and not isinstance(name, bool):
        hours = name if name == name else 99.0  # NaN is no offset
        offset = timedelta(minutes=round(hours * 60)) if abs(hours) <= 14 else None
        return timezone(offset) if offset is not None else None
    if not isinstance(name, str):
        return None
    name = name.strip()
    if name.upper() in _UTC_NAMES:  # "utc", "Z": as profiles write them, not as IANA does
        return UTC
    if match := _UTC_OFFSET.fullmatch(name):
        offset = timedelta(hours=int(match[2]), minutes=int(match[3] or 0))
        return timezone(-offset if match[1] == "-" else offset) if offset <= _MAX_OFFSET else None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _branches(raw: Any, path: str) -> tuple[tuple[float, str], ...]:
    where = f"{path}.branches"
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("branches is a list of {percent, next}", field=where)
    branches = []
    for i, item in enumerate(raw):
        data = _object(item, f"{where}[{i}]", required=True)
        _only(data, {"percent", "next"}, f"{where}[{i}]")
        target = _target(data, "next", f"{where}[{i}]")
        if target is None:
            raise InvalidInput("a branch needs next", field=f"{where}[{i}].next")
        branches.append((_percent(data.get("percent"), f"{where}[{i}].percent"), target))
    total = sum(p for p, _ in branches)
    if abs(total - 100) > 1e-9:
        raise InvalidInput(f"the percents add up to {total:g}, not 100", field=where)
    return tuple(branches)


def _json_template(values: Mapping[str, Any], path: str) -> Template:
    """An object whose strings may hold tags, compiled as one JSON template (always valid).

    A string that is one tag and nothing else stands for the value itself, typed:
    ``{"amount": "{{event.amount}}"}`` keeps 12.5 a number (a missing one is null, or its
    fallback), so conditions on the state compare it as the event had it. A string with
    more around its tags (``"lvl-{{event.level}}"``) renders a string.

    Every tag goes into the template as written: JSON-encoding the values escapes what is
    around the tags, not their fallback texts (``say "hi"`` rendered ``say \\"hi\\"``).
    """
    token = secrets.token_hex(8)
    tags: dict[str, str] = {}  # marker as it stands in the encoded source -> the tag

    def marker(tag: str, quoted: bool) -> str:
        name = f"hookline-tag-{token}-{len(tags)}."  # the dot: -1. is no prefix of -10.
        tags[f'"{name}"' if quoted else name] = tag
        return name

    def mark_text(text: str) -> str:
        parts: list[str] = []
        pos = 0
        # Tags found as the template parser finds them; an unclosed one is left to refuse.
        while (start := text.find("{{", pos)) >= 0 and (close := text.find("}}", start + 2)) >= 0:
            parts += (text[pos:start], marker(text[start : close + 2], quoted=False))
            pos = close + 2
        return "".join(parts) + text[pos:] if parts else text

    def mark(value: Any) -> Any:
        if isinstance(value, str):
            if _WHOLE_TAG.fullmatch(value):
                return marker(value, quoted=True)
            return mark_text(value)
        if isinstance(value, dict):
            return {mark_text(k) if isinstance(k, str) else k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    try:
        source = orjson.dumps(mark(values)).decode()
    except TypeError as exc:
        raise InvalidInput(f"not JSON: {exc}", field=path) from None
    for name, tag in tags.items():
        source = source.replace(name, tag, 1)
    return compile_template(source, TemplateMode.JSON, field=path, scopes=JOURNEY_SCOPES)


def _activity(
    raw: Any, path: str, webhooks: Mapping[str, SavedWebhook]
) -> tuple[CompiledWebhook, str | None]:
    """A rule's activity object: inline, or ``webhook_id`` of a saved webhook."""
    data = _object(raw, path, required=True)
    _only(data, set(_ACTIVITY_KEYS), path)
    if data.get("type", "webhook") != "webhook":
        raise InvalidInput("the activity type is 'webhook'", field=f"{path}.type")
    inline = {k: v for k, v in data.items() if k not in ("type", "webhook_id") and v is not None}
    webhook_id = data.get("webhook_id")
    if webhook_id is not None:
        if inline:
            raise InvalidInput(
                "give either webhook_id or an inline webhook (url, body, ...), not both",
                field=f"{path}.webhook_id",
            )
        saved = webhooks.get(webhook_id) if isinstance(webhook_id, str) else None
        if saved is None:
            raise InvalidInput(
                f"no saved webhook {short_value(webhook_id)}; create it at /api/v1/webhooks first",
                field=f"{path}.webhook_id",
            )
        if saved.problem is not None:
            raise Conflict(
                f"the saved webhook {saved.id!r} cannot be used: {saved.problem}",
                field=f"{path}.webhook_id",
            )
        return compile_webhook(saved.spec, field=path, scopes=JOURNEY_SCOPES), saved.id
    if not isinstance(inline.get("url"), str):
        raise InvalidInput("the activity needs a url or a webhook_id", field=f"{path}.url")
    for key in ("method", "content_type"):
        if key in inline and not isinstance(inline[key], str):
            raise InvalidInput(f"{key} is a string", field=f"{path}.{key}")
    for key in ("headers", "query"):
        value = inline.get(key, {})
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise InvalidInput(f"{key} is an object of strings", field=f"{path}.{key}")
    secret = inline.get("secret_headers", [])
    if not isinstance(secret, list) or not all(isinstance(n, str) for n in secret):
        raise InvalidInput(
            "secret_headers is a list of header names", field=f"{path}.secret_headers"
        )
    schedule = inline.get("retry_schedule")
    if schedule is not None and not isinstance(schedule, list):
        raise InvalidInput("retry_schedule is a list of seconds", field=f"{path}.retry_schedule")
    spec = WebhookSpec.from_dict(inline)
    return compile_webhook(spec, field=path, scopes=JOURNEY_SCOPES), None


def _check_graph(start: str, blocks: Mapping[str, Block]) -> None:
    """Every edge lands on a block, every block is reachable, and cycles always wait."""
    for block in blocks.values():
        for key, target in block.exits():
            if target not in blocks:
                raise InvalidInput(
                    f"{key} points to {target!r}, which is not a block",
                    field=f"blocks.{block.name}.{key}",
                )
    seen = {start}
    todo = [start]
    while todo:
        for _, target in blocks[todo.pop()].exits():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    for name in blocks:
        if name not in seen:
            raise InvalidInput(
                f"block {name!r} cannot be reached from start {start!r}", field=f"blocks.{name}"
            )
    # A cycle is only allowed through a block that waits: walk the graph without their edges.
    instant = {
        b.name: [t for _, t in b.exits()] for b in blocks.values() if b.type not in WAITING_BLOCKS
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        path.append(name)
        for target in instant.get(name, ()):
            if state.get(target) == 1:
                loop = [*path[path.index(target) :], target]
                raise InvalidInput(
                    f"the blocks {' -> '.join(loop)} form a cycle with no delay or "
                    "wait_for_event; a user would loop without end",
                    field=f"blocks.{target}",
                )
            if target not in state:
                visit(target, path)
        path.pop()
        state[name] = 2

    for name in blocks:
        if name not in state:
            visit(name, [])


# --- instances and steps ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instance:
    """One user's walk through one journey version."""

    id: str
    journey_id: str
    version: int
    user_ext_id: str
    ext_brand_id: str | int | None
    status: InstanceStatus
    block: str | None
    entered_at: int
    updated_at: int
    entry_event: Mapping[str, Any]  # the entry event's template scope ({{event.*}})
    last_event: Mapping[str, Any]  # the event that last moved the instance
    control_group: bool = False
    due_at: int | None = None
    waiting_for: str | None = None
    finish_reason: FinishReason | None = None
    finished_at: int | None = None
    converted_at: int | None = None
    block_since: int | None = None
    # A walk that completed before converting: its goal still counts until then (ms).
    goal_until: int | None = None
    # The id of the event that entered the user (the scope's event_id may be its payload's).
    entry_event_id: str | None = None
    # How deep in a chain of emitted events the entry event was. A step no event drives (a
    # timer, a stop) emits one deeper, so journeys entering each other through a delay stop.
    chain_depth: int = 0

    @property
    def user(self) -> UserKey:
        """Whose walk this is: (brand, user), as state.user_key."""
        return user_key(self.ext_brand_id, self.user_ext_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "journey_id": self.journey_id,
            "version": self.version,
            "user_ext_id": self.user_ext_id,
            "ext_brand_id": self.ext_brand_id,
            "status": self.status.value,
            "block": self.block,
            "block_since": self.block_since,
            "entered_at": self.entered_at,
            "updated_at": self.updated_at,
            "due_at": self.due_at,
            "waiting_for": self.waiting_for,
            "control_group": self.control_group,
            "converted_at": self.converted_at,
            "finish_reason": self.finish_reason.value if self.finish_reason else None,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True, slots=True)
class ChainCut:
    """An event a step did not emit: the chain of emitted events had reached its depth."""

    id: str
    journey_id: str
    version: int
    instance_id: str
    user_ext_id: str
    ext_brand_id: str | int | None
    event_type: str  # the event not emitted
    depth: int  # the chain depth of event_id; the event not emitted would be one deeper
    event_id: str  # the event whose step emitted it
    cut_at: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PlannedWebhook:
    """A webhook block reached: the engine plans it with the same code as a rule's."""

    block: str
    webhook: CompiledWebhook
    webhook_id: str | None
    context: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Emitted:
    """An event to put into the stream for the instance's user."""

    event_type: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Step:
    """What one trigger does to one instance."""

    instance: Instance
    webhooks: tuple[PlannedWebhook, ...] = ()
    state_patches: tuple[dict[str, Any], ...] = ()
    emitted: tuple[Emitted, ...] = ()
    entered: tuple[str, ...] = ()  # blocks entered, in order
    passed: tuple[str, ...] = ()  # blocks left, in order
    render_errors: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.instance.status is InstanceStatus.FINISHED


def bucket(*parts: str) -> float:
    """A stable number in [0, 100) for the given parts: the same user always lands alike."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 1_000_000 / 10_000


def in_control_group(journey: CompiledJourney, user_ext_id: str, instance_id: str) -> bool:
    """Whether this entry lands in the control group (sticky: by user, else by entry)."""
    if journey.control_percent <= 0:
        return False
    key = user_ext_id if journey.control_sticky else instance_id
    return bucket("control", journey.id, key) < journey.control_percent


def may_enter(
    journey: CompiledJourney,
    context: Mapping[str, Any],
    *,
    running: bool,
    ever: bool,
) -> bool:
    """Whether an event (``context``: event and state) enters its user into the journey.

    ``running``: the user has an active instance of this journey; ``ever``: any, finished too.
    """
    if journey.journey.status is not JourneyStatus.ACTIVE:
        return False
    if journey.mode is EntryMode.ONCE_WHILE_ACTIVE and running:
        return False
    if journey.mode is EntryMode.ONCE_IN_LIFETIME and ever:
        return False
    return journey.entry(context) and journey.audience(context)


def campaign_payload(journey: CompiledJourney, instance: Instance) -> dict[str, Any]:
    return {
        "journey_id": journey.id,
        "journey_name": journey.journey.name,
        "version": instance.version,
        "instance_id": instance.id,
        "control_group": instance.control_group,
    }


class _Walk:
    """Collects the effects of one step while the instance moves through blocks."""

    def __init__(
        self, journey: CompiledJourney, instance: Instance, state: Mapping[str, Any], now: int
    ) -> None:
        self.journey = journey
        self._instance = instance
        # Fields changed since ``_instance``, copied into a new Instance once, when read whole:
        # a copy of the frozen record cost more than a timer's whole walk besides.
        self._moves: dict[str, Any] = {}
        self.state = state
        self.now = now
        self.webhooks: list[PlannedWebhook] = []
        self.patches: list[dict[str, Any]] = []
        self.emitted: list[Emitted] = []
        self.entered: list[str] = []
        self.passed: list[str] = []
        self.errors: list[str] = []

    def step(self) -> Step:
        return Step(
            self.instance,
            tuple(self.webhooks),
            tuple(self.patches),
            tuple(self.emitted),
            tuple(self.entered),
            tuple(self.passed),
            tuple(self.errors),
        )

    @property
    def instance(self) -> Instance:
        """The instance as the walk has moved it so far."""
        if self._moves:
            self._instance = replace(self._instance, **self._moves)
            self._moves = {}
        return self._instance

    def move(self, **changes: Any) -> None:
        """Change fields of the instance (applied when it is next read whole)."""
        self._moves.update(changes)

    def _now(self, name: str) -> Any:
        """One field of the instance as moved so far, without copying it."""
        return self._moves[name] if name in self._moves else getattr(self._instance, name)

    def context(self, block: str | None) -> dict[str, Any]:
        # id, version and entry_event never move during a walk.
        inst = self._instance
        return {
            "event": inst.entry_event,
            "last_event": self._now("last_event"),
            "state": self.state,
            "journey": {
                "id": self.journey.id,
                "name": self.journey.journey.name,
                "version": inst.version,
                "instance_id": inst.id,
                "block": block,
            },
        }

    def deadline(self) -> int | None:
        limit = self.journey.max_duration_ms
        return self._instance.entered_at + limit if limit is not None else None

    def finish(self, reason: FinishReason) -> None:
        goal_until = None
        if reason in _ENDED_BY_ITSELF and self._now("converted_at") is None:
            # Walking to the end is no reason not to convert: the goal counts for the same
            # window as the control group's (see goal_window_end), or the rates would differ.
            # So is a wait that ran out with nowhere to go (timeout); after max_duration
            # (timeout too) the window is over, as it ends by max_duration at the latest.
            end = goal_window_end(self.journey, self._instance.entered_at)
            goal_until = end if end is not None and end > self.now else None
        self.move(
            status=InstanceStatus.FINISHED,
            block=None,
            due_at=None,
            waiting_for=None,
            finish_reason=reason,
            finished_at=self.now,
            updated_at=self.now,
            goal_until=goal_until,
        )
        payload = campaign_payload(self.journey, self._instance)  # names no field that moves
        payload["reason"] = reason.value
        self.emitted.append(Emitted(CAMPAIGN_FINISHED, payload))

    def convert(self) -> None:
        """The goal is met: converted now (once), and ``campaign_converted`` says so."""
        self.move(converted_at=self.now, goal_until=None, updated_at=self.now)
        self.emitted.append(
            Emitted(CAMPAIGN_CONVERTED, campaign_payload(self.journey, self._instance))
        )

    def leave(self) -> None:
        """The current block is done."""
        block = self._now("block")
        if block is not None:
            self.passed.append(block)

    def wait(self, due_at: int | None, waiting_for: str | None) -> None:
        deadline = self.deadline()
        if deadline is not None and (due_at is None or deadline < due_at):
            due_at = deadline
        self.move(due_at=due_at, waiting_for=waiting_for, updated_at=self.now)

    def run(self, name: str | None) -> None:
        """Move to block ``name`` and on, until a block waits or the walk ends."""
        # Cycles always pass a waiting block (checked when saved), so this ends within one
        # pass over the blocks; the bound guards a definition changed by hand.
        for _ in range(len(self.journey.blocks) + 1):
            if name is None:
                self.finish(FinishReason.COMPLETED)
                return
            block = self.journey.blocks[name]
            self.move(
                block=name,
                block_since=self.now,
                due_at=None,
                waiting_for=None,
                updated_at=self.now,
            )
            self.entered.append(name)
            name = self.enter(block)
            if self._now("status") is InstanceStatus.FINISHED or name == "":
                return  # finished, or waiting
            self.leave()
        self.finish(FinishReason.COMPLETED)

    def enter(self, block: Block) -> str | None:
        """Do one block; the next block, or "" when it waits (or the walk finished)."""
        kind = block.type
        if kind is BlockType.WEBHOOK:
            assert block.webhook is not None
            self.webhooks.append(
                PlannedWebhook(
                    block.name, block.webhook, block.webhook_id, self.context(block.name)
                )
            )
            return block.next
        if kind is BlockType.DELAY:
            self.wait(self._delay_until(block), None)
            return ""
        if kind is BlockType.WAIT_FOR_EVENT:
            due = self.now + block.timeout_ms if block.timeout_ms is not None else None
            self.wait(due, block.event_type)
            return ""
        if kind is BlockType.CONDITION:
            return block.then if block.predicate(self.context(block.name)) else block.otherwise
        if kind is BlockType.SPLIT:
            point = bucket("split", self.journey.id, self._instance.user_ext_id, block.name)
            total = 0.0
            for percent, target in block.branches:
                total += percent
                if point < total:
                    return target
            return block.branches[-1][1]
        if kind is BlockType.UPDATE_STATE:
            patch = self._render(block)
            if patch is not None:
                self.patches.append(patch)
                self.state = merged_state(self.state, patch)
            return block.next
        if kind is BlockType.EMIT_EVENT:
            assert block.event_type is not None
            payload = self._render(block)
            if payload is not None:
                self.emitted.append(Emitted(block.event_type, payload))
            return block.next
        self.leave()  # an exit block is passed: the user walked the journey to its end
        self.finish(FinishReason.COMPLETED)
        return ""

    def _render(self, block: Block) -> dict[str, Any] | None:
        assert block.template is not None
        try:
            text = block.template.render(self.context(block.name))
            if len(text) > MAX_RENDERED_BYTES:  # characters: a cheap bound before parsing
                raise ValueError(f"renders to more than {MAX_RENDERED_BYTES} bytes")
            value = orjson.loads(text)
            if isinstance(value, dict):
                # What it renders is kept or emitted as an event: the limits of an event.
                check_json(value, block.name, MAX_DEPTH)
        except Exception as exc:  # a render failure skips the block's effect, not the walk
            self.errors.append(f"block {block.name!r}: {exc}")
            return None
        return value if isinstance(value, dict) else None

    def _delay_until(self, block: Block) -> int:
        if block.duration_ms is not None:
            return self.now + block.duration_ms
        assert block.until is not None
        return next_time_of_day(block.until, self.state, self.now)


def merged_state(state: Mapping[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``state`` after an update_state patch, as the engine keeps it (state.apply_update):
    a merge patch that cannot change whose state it is, so later blocks see the kept state."""
    return merge_patch(dict(state), {k: v for k, v in patch.items() if k not in RESERVED})


def next_time_of_day(until: TimeOfDay, state: Mapping[str, Any], now: int) -> int:
    """The next ``until`` (hh:mm:ss) after ``now`` in the user's zone, in ms."""
    zone = None
    if until.zone_field is not None:
        name: Any = state
        for key in until.zone_field.split(".")[1:]:
            name = name.get(key) if isinstance(name, Mapping) else None
        zone = _zone(name)
    zone = zone or _zone(until.zone_default) or UTC
    local = datetime.fromtimestamp(now / 1000, UTC).astimezone(zone)
    hour, minute, second = until.hour, until.minute, until.second
    target = local.replace(hour=hour, minute=minute, second=second, microsecond=0)
    if target <= local:
        target = (target + timedelta(days=1)).replace(hour=hour, minute=minute, second=second)
    return int(target.timestamp() * 1000)


def goal_window_end(journey: CompiledJourney, entered_at: int) -> int | None:
    """Until when the goal counts for an entry at ``entered_at``: ``within`` or
    ``max_duration`` after it, the earlier; None without a goal.

    A goal with neither counts as long as the journey runs (ten years at most).
    """
    if journey.goal is None:
        return None
    limits = (journey.goal.within_ms, journey.max_duration_ms)
    return entered_at + min((x for x in limits if x is not None), default=MAX_DURATION_MS)


def enter(
    journey: CompiledJourney,
    instance_id: str,
    user_ext_id: str,
    ext_brand_id: str | int | None,
    event_scope: Mapping[str, Any],
    state: Mapping[str, Any],
    now: int,
    *,
    entry_event_id: str | None = None,
    chain_depth: int = 0,
) -> Step:
    """A user enters: ``campaign_started``, then the blocks run (none in the control group).

    A control-group instance stays active, without blocks, until its goal window ends (see
    :func:`goal_window_end`; without ``within`` or ``max_duration``, until it converts), so its
    conversions are counted like the treatment's.
    """
    control = in_control_group(journey, user_ext_id, instance_id)
    instance = Instance(
        id=instance_id,
        journey_id=journey.id,
        version=journey.version,
        user_ext_id=user_ext_id,
        ext_brand_id=ext_brand_id,
        status=InstanceStatus.ACTIVE,
        block=None,
        entered_at=now,
        updated_at=now,
        entry_event=event_scope,
        last_event=event_scope,
        control_group=control,
        entry_event_id=entry_event_id,
        chain_depth=chain_depth,
    )
    walk = _Walk(journey, instance, state, now)
    walk.emitted.append(Emitted(CAMPAIGN_STARTED, campaign_payload(journey, instance)))
    if not control:
        walk.run(journey.start)
        return walk.step()
    if journey.goal is None:
        # Nothing to measure against: the control user is done at once.
        walk.finish(FinishReason.COMPLETED)
    else:
        limited = journey.goal.within_ms is not None or journey.max_duration_ms is not None
        walk.wait(goal_window_end(journey, now) if limited else None, None)
    return walk.step()


def on_event(
    journey: CompiledJourney,
    instance: Instance,
    event_type: str,
    event_scope: Mapping[str, Any],
    state: Mapping[str, Any],
    now: int,
) -> Step | None:
    """An event of the instance's user came; None when it changes nothing.

    Order: the goal first (converted once, within its window; exit if the goal says so), so
    a goal event that is also an exit criterion still counts; then an exit criterion ends the
    instance; then a waiting ``wait_for_event`` block moves on.
    A walk that completed converts until its ``goal_until``, and stays finished as it was.
    """
    if instance.status is not InstanceStatus.ACTIVE:
        return _late_conversion(journey, instance, event_type, event_scope, state, now)
    walk = _Walk(journey, instance, state, now)
    context = {**walk.context(instance.block), "event": event_scope}
    changed = False
    goal = journey.goal
    if (
        goal is not None
        and instance.converted_at is None
        and goal.watch.event_type == event_type
        and (goal.within_ms is None or now <= instance.entered_at + goal.within_ms)
        and goal.watch.predicate(context)
    ):
        walk.convert()
        changed = True
        if goal.exit_on_goal or instance.control_group:
            walk.finish(FinishReason.GOAL)
            return walk.step()
    for watch in journey.exit_on:
        if watch.event_type == event_type and watch.predicate(context):
            walk.move(last_event=event_scope)
            walk.finish(FinishReason.EXITED)
            return walk.step()
    block = journey.blocks.get(instance.block) if instance.block is not None else None
    if (
        block is not None
        and block.type is BlockType.WAIT_FOR_EVENT
        and instance.waiting_for == event_type
        and block.predicate({**context, "last_event": event_scope})
    ):
        walk.move(last_event=event_scope)
        walk.leave()
        walk.run(block.next)
        changed = True
    return walk.step() if changed else None


def _late_conversion(
    journey: CompiledJourney,
    instance: Instance,
    event_type: str,
    event_scope: Mapping[str, Any],
    state: Mapping[str, Any],
    now: int,
) -> Step | None:
    """The goal event of a user who walked the journey to its end, while it still counts."""
    goal = journey.goal
    if (
        goal is None
        or instance.goal_until is None
        or instance.converted_at is not None
        or goal.watch.event_type != event_type
        or now > instance.goal_until
    ):
        return None
    walk = _Walk(journey, instance, state, now)
    if not goal.watch.predicate({**walk.context(None), "event": event_scope}):
        return None
    walk.convert()
    return walk.step()


def on_timer(
    journey: CompiledJourney, instance: Instance, state: Mapping[str, Any], now: int
) -> Step | None:
    """The instance's due time came; None when it is not due (already moved on)."""
    if instance.status is not InstanceStatus.ACTIVE or instance.due_at is None:
        return None
    if instance.due_at > now:
        return None
    walk = _Walk(journey, instance, state, now)
    if instance.control_group:
        # Its measuring window is over; it ran no blocks, so it completed.
        walk.finish(FinishReason.COMPLETED)
        return walk.step()
    deadline = walk.deadline()
    if deadline is not None and now >= deadline:
        walk.finish(FinishReason.TIMEOUT)
        return walk.step()
    block = journey.blocks.get(instance.block) if instance.block is not None else None
    if block is None:
        walk.finish(FinishReason.COMPLETED)
    elif block.type is BlockType.DELAY:
        walk.leave()
        walk.run(block.next)
    elif block.type is BlockType.WAIT_FOR_EVENT:
        walk.leave()
        if block.on_timeout is None:
            # Nowhere to go when the event did not come: the user timed out, which the
            # stats tell apart from walking the flow to its end (completed).
            walk.finish(FinishReason.TIMEOUT)
        else:
            walk.run(block.on_timeout)
    else:  # no other block waits; a stale timer changes nothing
        return None
    return walk.step()


def stop(journey: CompiledJourney, instance: Instance, now: int) -> Step:
    """The journey was stopped: the instance leaves with reason ``stopped``."""
    walk = _Walk(journey, instance, {}, now)
    walk.finish(FinishReason.STOPPED)
    return walk.step()
