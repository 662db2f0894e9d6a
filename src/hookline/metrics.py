"""Metrics in the Prometheus text exposition format (version 0.0.4): families and a renderer.

Pure: no I/O and no global registry. What a process counts lives where it happens (plain
ints, see :mod:`hookline.tallies`); a scrape reads those figures into :class:`Family`
values and :func:`render` writes them out. A :class:`Histogram` is the one accumulator
here, because its buckets must be counted as observations come.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# Seconds; an attempt's timeout defaults to 15 s, so the last bound is past it.
LATENCY_BOUNDS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Buckets:
    """A histogram's figures at one moment: counts per bucket (not cumulative), sum, count."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # one per bound, then the +Inf bucket's own
    sum: float

    @property
    def count(self) -> int:
        return sum(self.counts)


class Histogram:
    """Observations counted into fixed buckets; ``observe`` is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BOUNDS) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("histogram bounds must be distinct and ascending")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le is "<=").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> Buckets:
        return Buckets(self.bounds, tuple(self.counts), self.sum)


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of a family: its labels and its value (a histogram's buckets)."""

    value: float | Buckets
    labels: Labels = ()


@dataclass(frozen=True, slots=True)
class Family:
    """A named metric with its help text, type and series.

    A counter's name ends in ``_total`` (the name of its series, as in the text format).
    """

    name: str
    kind: Kind
    help: str
    samples: tuple[Sample, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"metric name {self.name!r} is not a valid Prometheus name")
        if self.kind is Kind.COUNTER and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end in _total")
        for sample in self.samples:
            if isinstance(sample.value, Buckets) != (self.kind is Kind.HISTOGRAM):
                raise ValueError(f"{self.name}: a histogram has buckets, other kinds numbers")
            for label, _ in sample.labels:
                if not _LABEL.fullmatch(label) or label.startswith("__") or label == "le":
                    raise ValueError(f"{self.name}: label name {label!r} is not allowed")


def one(name: str, kind: Kind, help: str, value: float, /, **labels: str) -> Family:
    """A family of a single series."""
    return Family(name, kind, help, (Sample(value, tuple(labels.items())),))


def by_label(
    name: str, kind: Kind, help: str, label: str, values: Iterable[tuple[str, float]]
) -> Family:
    """A family with one series per value of ``label``."""
    return Family(name, kind, help, tuple(Sample(v, ((label, k),)) for k, v in values))


def render(families: Iterable[Family]) -> str:
    """The text exposition of ``families``: HELP, TYPE, then each series on its line."""
    lines: list[str] = []
    seen: set[str] = set()
    for family in families:
        if family.name in seen:
            raise ValueError(f"metric {family.name!r} is rendered twice")
        seen.add(family.name)
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind.value}")
        for sample in family.samples:
            if isinstance(sample.value, Buckets):
                lines.extend(_histogram_lines(family.name, sample.labels, sample.value))
            else:
                lines.append(f"{family.name}{_labels(sample.labels)} {_number(sample.value)}")
    return "\n".join(lines) + "\n" if lines else ""


def _histogram_lines(name: str, labels: Labels, buckets: Buckets) -> list[str]:
    lines = []
    running = 0
    for bound, count in zip((*buckets.bounds, math.inf), buckets.counts, strict=True):
        running += count
        # Bounds as floats ("1.0"), as the reference client writes them: a series keeps its
        # name whichever client made it.
        le = (*labels, ("le", "+Inf" if math.isinf(bound) else repr(bound)))
        lines.append(f"{name}_bucket{_labels(le)} {running}")
    lines.append(f"{name}_sum{_labels(labels)} {_number(buckets.sum)}")
    lines.append(f"{name}_count{_labels(labels)} {running}")
    return lines


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_value(v)}"' for k, v in labels) + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
