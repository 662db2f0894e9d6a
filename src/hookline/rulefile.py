"""Rules as code: read a rules file, check every rule, and plan what applying it changes.

``hookline rules apply`` makes each stored rule equal to its entry in the file (a key left
out means its default, so removing ``conditions:`` clears them), matched by name. Nothing
here talks to a server: the command line fetches, validates and writes; this module only
decides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from hookline.errors import ConfigError, HooklineError, InvalidInput
from hookline.values import MAX_DEPTH, check_json

# The keys of a rule as written; the server adds id, created_at, updated_at (and may add more).
RULE_KEYS = (
    *("name", "description", "enabled", "trigger", "conditions"),
    *("once_per_user", "frequency", "accumulate", "activity"),
)
# Keys the server adds inside the activity: never written in a file, never a change.
SERVER_ACTIVITY_KEYS = ("signing_secret",)


class ChangeKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"
    KEEP = "keep"  # on the server, not in the file, and --prune not given


@dataclass(frozen=True)
class FieldChange:
    """One field that differs: its dotted path, the stored value and the file's value."""

    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Change:
    """What applying the file does to one rule."""

    kind: ChangeKind
    name: str
    rule_id: str | None = None
    fields: tuple[FieldChange, ...] = ()
    body: Mapping[str, Any] | None = None  # what to send (create/update), as in the file


def load(path: Path) -> list[dict[str, Any]]:
    """The rules of a YAML or JSON file: one rule, a list, or ``{rules: [...]}``."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", field="file") from None
    except RecursionError:
        raise ConfigError(f"cannot read {path}: nested too deep", field="file") from None
    try:
        # YAML reads .nan, .inf, dates and integers of any size; JSON, and so the API, has none
        # of them (encoded, NaN would silently become null). A rule nests its conditions and
        # body (64 levels each) at most 4 levels down the file.
        check_json(data, "", max_depth=MAX_DEPTH + 8)
    except InvalidInput as exc:
        raise ConfigError(
            f"{path}: {exc.field or 'the file'}: {exc.detail}", field="file"
        ) from None
    if isinstance(data, dict) and "rules" in data:
        data = data["rules"]
    if isinstance(data, dict):
        data = [data]
    if data is None:
        data = []
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ConfigError(
            f"{path}: expected a rule, a list of rules or {{rules: [...]}}", field="file"
        )
    return data


def label(rule: Mapping[str, Any], index: int) -> str:
    """How errors name a rule: by its name, or by its place in the file when it has none."""
    name = rule.get("name")
    return f"rule {json.dumps(name)}" if isinstance(name, str) else f"rule #{index + 1}"


def error_line(rule_label: str, field: str | None, detail: str) -> str:
    """``rule "x": activity.url: ...``, without naming the field twice."""
    if field and not detail.startswith(f"{field}:"):
        detail = f"{field}: {detail}"
    return f"{rule_label}: {detail}"


def check(rules: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every problem found without a server: shape, types, conditions and templates.

    The same pydantic models and compilers as the server's, so a file refused here would be
    refused there. A reference to a saved webhook is left to the server, which has them.
    """
    # Imported here: the API models pull in the web stack, which only `apply` needs.
    from pydantic import ValidationError

    from hookline.api.models import RuleIn, error_location
    from hookline.api.rules import activity_spec, limits_of
    from hookline.conditions import compile_conditions
    from hookline.webhooks import compile_webhook

    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(rules):
        where = label(raw, index)
        name = raw.get("name")
        if isinstance(name, str):
            seen[name] = seen.get(name, 0) + 1
            if seen[name] == 2:
                problems.append(f"{where}: the name appears more than once in the file")
        try:
            rule = RuleIn.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                field = _dotted(error_location(error))
                problems.append(error_line(where, field, str(error["msg"])))
            continue
        try:
            compile_conditions(rule.conditions, field="conditions")
            limits_of(rule)
            spec, _ = activity_spec(rule.activity)
            if spec is not None:
                compile_webhook(spec, field="activity")
        except HooklineError as exc:
            problems.append(error_line(where, exc.field, exc.detail))
    return problems


def _dotted(loc: Sequence[int | str]) -> str | None:
    """A pydantic location as the API names fields: ``activity.headers``, ``all[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values: numbers numerically (``0`` is ``0.0``), but never a bool a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(type(a) is type(b) and a == b)


def diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[FieldChange]:
    """The fields that differ, as dotted paths into nested objects (lists compare whole)."""
    changes: list[FieldChange] = []
    for key in sorted(old.keys() | new.keys(), key=str):
        path = f"{prefix}{key}"
        before, after = old.get(key), new.get(key)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changes.extend(diff(before, after, f"{path}."))
        elif not same(before, after):
            changes.append(FieldChange(path, before, after))
    return changes


def plan(
    wanted: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
    stored: Sequence[Mapping[str, Any]],
    *,
    prune: bool,
) -> list[Change]:
    """One change per rule of the file, in its order, then the rules the file leaves out.

    ``wanted`` pairs each rule as written (what is sent) with the server's normalised form
    of it (what it would store); ``stored`` is the server's list. Only the keys of a rule as
    written are compared, so a field the server adds never reads as a change. Secret header
    values are masked on both sides; the server marks those that differ (``compare_to``).
    """
    by_name = {r["name"]: r for r in stored}
    changes: list[Change] = []
    for written, normal in wanted:
        name = str(written["name"])
        current = by_name.pop(name, None)
        if current is None:
            changes.append(Change(ChangeKind.CREATE, name, body=written))
            continue
        fields = diff(_rule_part(current), _rule_part(normal))
        kind = ChangeKind.UPDATE if fields else ChangeKind.UNCHANGED
        changes.append(Change(kind, name, current["id"], tuple(fields), body=written))
    leftover = ChangeKind.DELETE if prune else ChangeKind.KEEP
    changes.extend(Change(leftover, name, r["id"]) for name, r in by_name.items())
    return changes


def _rule_part(rule: Mapping[str, Any]) -> dict[str, Any]:
    part = {k: rule.get(k) for k in RULE_KEYS}
    activity = part.get("activity")
    if isinstance(activity, Mapping):
        part["activity"] = {k: v for k, v in activity.items() if k not in SERVER_ACTIVITY_KEYS}
    return part
