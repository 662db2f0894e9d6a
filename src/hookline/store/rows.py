"""Row mappers derived from a record's dataclass, so its fields are written out once.

A :class:`RowMapper` lists the dataclass's fields itself; it is told only the fields whose
stored form differs from the value (JSON bytes, an enum's value, a bool the driver returns
as an integer). Every other field is its column, under the same name, as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import ColumnElement, Table
from sqlalchemy.engine import Row

R = TypeVar("R")
E = TypeVar("E", bound=Enum)


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Codec:
    """How one field is stored (``dump``) and read back (``load``)."""

    dump: Callable[[Any], Any] = _same
    load: Callable[[Any], Any] = _same


def _json_or_none(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value)


def _loads_or_none(raw: bytes | None) -> Any:
    return None if raw is None else orjson.loads(raw)


# JSON bytes, never NULL.
JSON = Codec(orjson.dumps, orjson.loads)
# JSON bytes, or NULL for None (a brand: 5 and "5" stay apart).
JSON_OR_NULL = Codec(_json_or_none, _loads_or_none)
# A bool that SQLite answers as 0 or 1.
BOOL = Codec(_same, bool)


def enum(kind: type[E], *, nullable: bool = False) -> Codec:
    """An enum stored as its value (NULL for None when ``nullable``)."""
    # A lookup, not a call of the enum (five times the cost, on every row read); a value
    # that is no member still raises the enum's own ValueError.
    members: dict[Any, E | None] = {member.value: member for member in kind}
    if nullable:
        members[None] = None

    def load(raw: Any) -> E | None:
        member = members.get(raw, _MISSING)
        return kind(raw) if member is _MISSING else member

    if nullable:
        return Codec(lambda v: None if v is None else v.value, load)
    return Codec(lambda v: v.value, load)


_MISSING: Any = object()


class RowMapper(Generic[R]):
    """Between one dataclass and the rows of its table, field by field."""

    def __init__(
        self,
        kind: type[R],
        codecs: Mapping[str, Codec] | None = None,
        *,
        stored: frozenset[str] | None = None,
    ) -> None:
        """``stored`` limits the fields that are columns (the others are not kept)."""
        names = tuple(f.name for f in fields(kind))  # type: ignore[arg-type]
        self.kind = kind
        self.codecs = dict(codecs or {})
        unknown = set(self.codecs) - set(names)
        if unknown:
            raise TypeError(f"{kind.__name__} has no fields {sorted(unknown)}")
        self.names = tuple(n for n in names if stored is None or n in stored)
        # Read by position when every field is a column (rows of :meth:`columns`): only the
        # fields with a codec are touched, the others are passed on as the driver gave them.
        self._loads = tuple(
            (i, self.codecs[n].load) for i, n in enumerate(names) if n in self.codecs
        )
        self._every_field = self.names == names
        self._dumps = {n: self.codecs[n].dump if n in self.codecs else _same for n in names}

    def columns(self, table: Table) -> list[ColumnElement[Any]]:
        """The table's columns in field order: select these to read with :meth:`from_tuple`."""
        return [table.c[n] for n in self.names]

    def from_tuple(self, values: Sequence[Any]) -> R:
        """The record of a row selected as :meth:`columns`, read by position (the hot reads:
        looking each column up by name cost more than the rest of making the record)."""
        if not self._every_field:
            raise TypeError(f"{self.kind.__name__} has fields that are not columns")
        if len(values) != len(self.names):
            raise ValueError(f"{len(values)} columns for the {len(self.names)} of {self.kind}")
        fields_ = list(values)
        for i, load in self._loads:
            fields_[i] = load(fields_[i])
        return self.kind(*fields_)

    def row(self, record: R) -> dict[str, Any]:
        """The record's columns, as stored."""
        dumps = self._dumps
        return {n: dumps[n](getattr(record, n)) for n in self.names}

    def values(self, record: R, names: tuple[str, ...]) -> tuple[Any, ...]:
        """Only the ``names`` columns of the record, as stored, in that order."""
        dumps = self._dumps
        return tuple(dumps[n](getattr(record, n)) for n in names)

    def record(self, row: Row[Any], **given: Any) -> R:
        """The record of a row; ``given`` fields are taken as they are, not read from it."""
        columns = row._mapping
        plain = Codec()
        values = {
            n: self.codecs.get(n, plain).load(columns[n]) for n in self.names if n not in given
        }
        return self.kind(**values, **given)
