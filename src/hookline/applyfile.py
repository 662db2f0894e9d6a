"""Resources as code: read a file of named resources and plan what applying it changes.

``hookline rules apply`` and ``hookline journeys apply`` make each stored resource equal to
its entry in the file (a key left out means its default), matched by name. A :class:`Kind`
says what differs between them: the noun, the keys a file writes, the local checks. Nothing
here talks to a server: the command line fetches, validates and writes; this module decides.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from hookline.errors import ConfigError, InvalidInput
from hookline.labels import printable
from hookline.readonly import ReadOnly
from hookline.values import MAX_DEPTH, check_json, same


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
    """What applying the file does to one resource."""

    kind: ChangeKind
    name: str
    resource_id: str | None = None
    fields: tuple[FieldChange, ...] = ()
    body: Mapping[str, Any] | None = None  # what to send (create/update), as in the file


@dataclass(frozen=True)
class Kind:
    """One kind of named resource a file declares."""

    noun: str  # "rule": how errors name one
    plural: str  # "rules": the file's top key, and the API's path /api/v1/<plural>
    keys: tuple[str, ...]  # the keys a file writes; the server's others are never a change
    check: Callable[[Sequence[Mapping[str, Any]]], list[str]]  # problems found locally
    # What only the server sets (ids, versions, signing secrets): never a file's to decide.
    read_only: ReadOnly

    @property
    def path(self) -> str:
        return f"/api/v1/{self.plural}"

    def part(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """The fields of ``resource`` a file decides, as compared."""
        return self.read_only.strip({k: resource.get(k) for k in self.keys})

    def label(self, resource: Mapping[str, Any], index: int) -> str:
        """How errors name a resource: by its name, or by its place in the file."""
        name = resource.get("name")
        if isinstance(name, str):
            # Written as in the file (Cyrillic stays Cyrillic), unless it holds what a name
            # may not: then every character past ASCII is escaped, U+2028 and U+202E too.
            return f"{self.noun} {json.dumps(name, ensure_ascii=printable(name) != name)}"
        return f"{self.noun} #{index + 1}"


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last,
    so a journey written twice under one name would silently lose its first half)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue  # not hashable as written; YAML's own constructor judges it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: where (line and column, from 1) and what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if "'\\t'" in problem:  # PyYAML names the tab it found as '\t'
        problem += " (YAML indents with spaces, not tabs)"
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def load(path: Path, kind: Kind) -> list[dict[str, Any]]:
    """The resources of a YAML or JSON file: one, a list, or ``{<plural>: [...]}``.

    The fields only the server sets (``id``, ``version``, ``signing_secret``, ...) are left
    out, so a file saved from the API's answers (of this server or another) applies as is:
    resources match by name, and each keeps its own id and secret.
    """
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot read {path}: {_yaml_problem(exc)}", field="file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", field="file") from None
    except RecursionError:
        raise ConfigError(f"cannot read {path}: nested too deep", field="file") from None
    try:
        # YAML reads .nan, .inf, dates and integers of any size; JSON, and so the API, has none
        # of them (encoded, NaN would silently become null). A resource nests its conditions
        # and bodies (64 levels each) at most a few levels down the file.
        check_json(data, "", max_depth=MAX_DEPTH + 8)
    except InvalidInput as exc:
        raise ConfigError(
            f"{path}: {exc.field or 'the file'}: {exc.detail}", field="file"
        ) from None
    if isinstance(data, dict) and kind.plural in data:
        data = data[kind.plural]
    if isinstance(data, dict):
        data = [data]
    if data is None:
        data = []
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ConfigError(
            f"{path}: expected a {kind.noun}, a list of {kind.plural} or {{{kind.plural}: [...]}}",
            field="file",
        )
    return [kind.read_only.strip(resource) for resource in data]


def error_line(label: str, field: str | None, detail: str) -> str:
    """``rule "x": activity.url: ...``, without naming the field twice."""
    if field and not detail.startswith(f"{field}:"):
        detail = f"{field}: {detail}"
    return f"{label}: {detail}"


def duplicate_names(kind: Kind, resources: Sequence[Mapping[str, Any]]) -> list[str]:
    """A problem for each name the file gives twice (names are how resources match)."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(resources):
        name = raw.get("name")
        if isinstance(name, str):
            seen[name] = seen.get(name, 0) + 1
            if seen[name] == 2:
                problems.append(
                    f"{kind.label(raw, index)}: the name appears more than once in the file"
                )
    return problems


def dotted(loc: Sequence[int | str]) -> str | None:
    """A pydantic location as the API names fields: ``activity.headers``, ``all[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


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
    kind: Kind,
    wanted: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
    stored: Sequence[Mapping[str, Any]],
    *,
    prune: bool,
) -> list[Change]:
    """One change per resource of the file, in its order, then those the file leaves out.

    ``wanted`` pairs each resource as written (what is sent) with the server's normalised
    form of it (what it would store); ``stored`` is the server's list. Only the keys a file
    writes are compared, so a field the server adds never reads as a change.
    """
    by_name = {r["name"]: r for r in stored}
    changes: list[Change] = []
    for written, normal in wanted:
        name = str(written["name"])
        current = by_name.pop(name, None)
        if current is None:
            changes.append(Change(ChangeKind.CREATE, name, body=written))
            continue
        fields = diff(kind.part(current), kind.part(normal))
        change = ChangeKind.UPDATE if fields else ChangeKind.UNCHANGED
        changes.append(Change(change, name, current["id"], tuple(fields), body=written))
    leftover = ChangeKind.DELETE if prune else ChangeKind.KEEP
    changes.extend(Change(leftover, name, r["id"]) for name, r in by_name.items())
    return changes
