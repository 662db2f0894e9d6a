"""Rule conditions over the event and the user's state, compiled once into fast predicates.

A spec is parsed JSON. ``None`` or ``{}`` is always true. A group is ``{"all": [...]}``
(true when every child is; empty is true), ``{"any": [...]}`` (true when one child is; empty
is false) or ``{"not": <condition>}``. A leaf is ``{"field": "event.a.b", "op": "eq",
"value": ...}``: the scope is ``event`` or ``state``, then dot-separated segments of letters,
digits, ``_`` and ``-``; a segment of digits also indexes a list.

Semantics, chosen so that evaluation never raises whatever the data:

- A missing field makes every operator false except ``ne`` and ``not_in`` (true) and
  ``exists`` (true for ``"value": false``). A field present with ``null`` is present.
- Equality (``eq``, ``ne``, ``in``, ``not_in``, ``contains`` on lists): numbers compare
  numerically (1 == 1.0); a numeric string equals the number it spells ("3" == 3), because
  the original platform tells users to quote numbers; two strings compare as text ("3" !=
  "3.0", so codes such as "007" keep their identity); bool is never a number (true != 1);
  lists and objects compare element by element with the same rules.
- ``gt``, ``gte``, ``lt``, ``lte``: numeric when both sides are numbers or numeric strings,
  by code point when both are non-numeric strings, otherwise false.
- ``contains``: substring when both are strings, an equal element in a list, a key of an
  object. ``starts_with``: strings only.
- ``regex``: a search (not a full match) on strings, and on numbers via their JSON text
  (``1e+20``), in RE2 syntax. RE2 runs in time linear in the text, whatever the pattern, so
  no pattern can stall ingest (backtracking engines take exponential time on ``^(a+)+$``);
  the price is no backreferences and no lookaround, which are refused when saved. A string
  longer than 16 KiB (UTF-8) never matches, and the regexes of one rule compile to at most
  1000 RE2 instructions together: linear time is still slow on a 1 MiB field.
- ``exists``: the field is present (``"value": true``, the default) or absent (``false``).

Numeric strings follow JSON's number grammar, also allowing leading zeros: ``-12``, ``0.5``,
``1e3``; not ``nan``, ``inf``, ``+1`` or ``1_000``.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final

import re2

from hookline.errors import ConditionError

Predicate = Callable[[Mapping[str, Any]], bool]
Test = Callable[[Any], bool]

# Tuple for messages (a stable, readable order); frozenset for the public membership test.
_OPERATOR_ORDER: Final = (
    *("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in"),
    *("contains", "starts_with", "exists", "regex"),
)
OPERATORS: Final[frozenset[str]] = frozenset(_OPERATOR_ORDER)
SCOPES: Final = ("event", "state")
# Journey conditions also see the event that last moved the instance and the journey.
JOURNEY_SCOPES: Final = ("event", "state", "last_event", "journey")
MAX_DEPTH: Final = 32
MAX_LEAVES: Final = 1000
MAX_PATTERN: Final = 1000
# RE2's time is linear in the text, times the size of the compiled program when its DFA
# cannot be used; counted repetitions of Unicode classes (\p{L}{100}) grow the program
# far past what the pattern's length suggests, so the program is bounded too: all the
# regexes of one rule together. And only text up to MAX_REGEX_TEXT bytes is searched: a
# pattern whose DFA blows up ((?i)a.{200}z) fell back to a cost of about 3 ns per byte per
# instruction, 6 s for one 1 MiB field; within both bounds one rule costs under ~100 ms.
MAX_PROGRAM: Final = 1000
MAX_REGEX_TEXT: Final = 16 * 1024
# RE2's memory per pattern (its DFA cache and program). Not RE2's 8 MiB: filling a cache
# that large with the states of a pattern whose DFA blows up took 400 ms on 16 KiB; with
# 256 KiB RE2 gives up on the DFA sooner, and the worst rule took under 100 ms.
MAX_REGEX_MEMORY: Final = 256 << 10

_GROUP_KEYS: Final = ("all", "any", "not")
_LEAF_KEYS: Final = frozenset({"field", "op", "value"})
_SEGMENT: Final = re.compile(r"[A-Za-z0-9_\-]+")
_NUMERIC: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_ORDERINGS: Final = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
# dict first: an exact type match short-circuits the slower ABC check on the hot path.
_MAPPINGS: Final = (dict, Mapping)
_SEQUENCES: Final = (list, tuple)
_MISSING: Final = object()
_SHORT_DIGITS: Final = 18  # always below any int digit limit Python may be configured with


def always_true(context: Mapping[str, Any]) -> bool:
    """The predicate of a rule without conditions."""
    return True


def compile_conditions(
    spec: Any, *, field: str = "conditions", scopes: Sequence[str] = SCOPES
) -> Predicate:
    """Validate ``spec`` and compile it into a predicate over ``{"event": ..., "state": ...}``.

    Raises ConditionError whose ``field`` is the JSON path of the first problem found,
    starting at ``field`` (e.g. ``conditions.all[0].op``).
    """
    if spec is None or (isinstance(spec, Mapping) and not spec):
        return always_true
    return _Compiler(scopes).node(spec, field, 1)


class _Compiler:
    """Walks a spec once; keeps the leaf count that bounds the size of one rule."""

    def __init__(self, scopes: Sequence[str] = SCOPES) -> None:
        self.leaves = 0
        self.scopes = scopes
        self.program = 0  # RE2 instructions of the rule's regexes so far

    def node(self, spec: Any, path: str, depth: int) -> Predicate:
        if not isinstance(spec, Mapping):
            raise ConditionError(
                f"a condition must be an object, a group ({{'all': [...]}}, {{'any': [...]}}, "
                f"{{'not': {{...}}}}) or a leaf ({{'field', 'op', 'value'}}); got {_kind(spec)}",
                field=path,
            )
        if depth > MAX_DEPTH:
            raise ConditionError(
                f"conditions are nested deeper than {MAX_DEPTH} levels; flatten them",
                field=path,
            )
        groups = [key for key in _GROUP_KEYS if key in spec]
        if len(groups) > 1:
            raise ConditionError(
                f"a group takes exactly one of 'all', 'any', 'not'; got {', '.join(groups)}",
                field=path,
            )
        if groups:
            return self.group(spec, groups[0], path, depth)
        if not spec.keys() & _LEAF_KEYS:
            raise ConditionError(
                "a condition needs 'all', 'any' or 'not' (a group) or 'field' and 'op' (a leaf)",
                field=path,
            )
        return self.leaf(spec, path)

    def group(self, spec: Mapping[Any, Any], key: str, path: str, depth: int) -> Predicate:
        _refuse_unknown(spec, {key}, path)
        inner_path = f"{path}.{key}"
        children = spec[key]
        if key == "not":
            negated = self.node(children, inner_path, depth + 1)
            return lambda context: not negated(context)
        if not isinstance(children, list):
            raise ConditionError(
                f"{key!r} takes a list of conditions; got {_kind(children)}", field=inner_path
            )
        preds = tuple(
            self.node(child, f"{inner_path}[{i}]", depth + 1) for i, child in enumerate(children)
        )
        if len(preds) == 1:
            return preds[0]  # one child needs no wrapper call
        if key == "all":
            if not preds:
                return always_true

            def all_of(context: Mapping[str, Any]) -> bool:
                # An explicit loop runs twice as fast as all(<genexpr>): no generator frame.
                for pred in preds:  # noqa: SIM110
                    if not pred(context):
                        return False
                return True

            return all_of
        if not preds:
            return lambda context: False

        def any_of(context: Mapping[str, Any]) -> bool:
            for pred in preds:  # noqa: SIM110
                if pred(context):
                    return True
            return False

        return any_of

    def leaf(self, spec: Mapping[Any, Any], path: str) -> Predicate:
        self.leaves += 1
        if self.leaves > MAX_LEAVES:
            raise ConditionError(
                f"a rule takes at most {MAX_LEAVES} conditions; split it", field=path
            )
        _refuse_unknown(spec, _LEAF_KEYS, path)
        steps = _parse_field(spec.get("field", _MISSING), f"{path}.field", self.scopes)
        op = spec.get("op", _MISSING)
        if not isinstance(op, str) or op not in OPERATORS:
            got = "nothing" if op is _MISSING else repr(op)
            raise ConditionError(
                f"unknown operator {got}; expected one of: {', '.join(_OPERATOR_ORDER)}",
                field=f"{path}.op",
            )
        value = spec.get("value", True if op == "exists" else _MISSING)
        value_path = f"{path}.value"
        if value is _MISSING:
            raise ConditionError(f"operator {op!r} needs a 'value'", field=value_path)
        _check_json(value, value_path, 0)
        test, if_missing = _make_test(op, value, value_path)
        if op == "regex":
            self.program += _compile_re2(value, value_path).programsize
            if self.program > MAX_PROGRAM:
                raise ConditionError(
                    f"the regexes of a rule are too large once compiled ({self.program} "
                    f"instructions; at most {MAX_PROGRAM} together); shorten counted "
                    "repetitions such as {100}, above all of classes like \\p{L}",
                    field=value_path,
                )
        if len(steps) == 2 and steps[1][1] is None:
            return _shallow_leaf(steps[0][0], steps[1][0], test, if_missing)

        def evaluate_leaf(context: Mapping[str, Any]) -> bool:
            current = _walk(steps, context)
            return if_missing if current is _MISSING else test(current)

        return evaluate_leaf


# What a field lookup answers for a field that is not there (present with null is None).
MISSING: Final = _MISSING


def compile_field(
    text: Any, *, field: str, scopes: Sequence[str] = SCOPES
) -> Callable[[Mapping[str, Any]], Any]:
    """A lookup of ``text`` (``event.a.b``) in a context; MISSING when it is not there.

    The same field syntax and the same walk as a condition's ``field`` (ConditionError
    naming ``field`` otherwise).
    """
    steps = _parse_field(text, field, scopes)

    def lookup(context: Mapping[str, Any]) -> Any:
        return _walk(steps, context)

    return lookup


def _walk(steps: Sequence[tuple[str, int | None]], context: Mapping[str, Any]) -> Any:
    """The value ``steps`` lead to in ``context`` (keys, or list positions where a step
    has one), or MISSING where one is not there; the walk of every field lookup."""
    current: Any = context
    for key, index in steps:
        if isinstance(current, _MAPPINGS):
            current = current.get(key, _MISSING)
            if current is _MISSING:
                return _MISSING
        elif index is not None and isinstance(current, _SEQUENCES) and index < len(current):
            current = current[index]
        else:
            return _MISSING
    return current


def _shallow_leaf(scope: str, key: str, test: Test, if_missing: bool) -> Predicate:
    """The leaf of the most common field shape, ``event.x``: two lookups, no loop."""

    def evaluate_shallow_leaf(context: Mapping[str, Any]) -> bool:
        data = context.get(scope)
        if isinstance(data, _MAPPINGS):
            value = data.get(key, _MISSING)
            if value is not _MISSING:
                return test(value)
        return if_missing

    return evaluate_shallow_leaf


def _refuse_unknown(spec: Mapping[Any, Any], allowed: AbstractSet[str], path: str) -> None:
    for key in spec:
        if key not in allowed:
            expected = ", ".join(repr(name) for name in sorted(allowed))
            raise ConditionError(
                f"unknown key {key!r}; expected only {expected}", field=f"{path}.{key}"
            )


def _parse_field(
    text: Any, path: str, scopes: Sequence[str] = SCOPES
) -> tuple[tuple[str, int | None], ...]:
    """The lookup steps of a field: (key, list index when the segment is all digits)."""
    if not isinstance(text, str):
        got = "nothing" if text is _MISSING else _kind(text)
        raise ConditionError(
            f"'field' must be a string such as 'event.amount' or 'state.core_country'; got {got}",
            field=path,
        )
    scope, *segments = text.split(".")
    if scope not in scopes:
        expected = " or ".join(repr(name) for name in scopes)
        raise ConditionError(
            f"unknown scope {scope!r} in {text!r}; expected {expected}", field=path
        )
    if not segments:
        raise ConditionError(
            f"{text!r} needs a property after the scope, e.g. 'event.amount'", field=path
        )
    for segment in segments:
        if not _SEGMENT.fullmatch(segment):
            raise ConditionError(
                f"bad segment {segment!r} in {text!r}; segments use letters, digits, '_' and '-'",
                field=path,
            )
    # A longer run of digits indexes no list (and int() refuses past 4300 digits).
    return (
        (scope, None),
        *((s, int(s) if s.isdigit() and len(s) <= _SHORT_DIGITS else None) for s in segments),
    )


def _check_json(value: Any, path: str, depth: int) -> None:
    # Bounding the depth here bounds the recursion of _equal at evaluation time.
    if depth > MAX_DEPTH:
        raise ConditionError(f"'value' is nested deeper than {MAX_DEPTH} levels", field=path)
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        raise ConditionError("'value' integers must fit in 64 bits", field=path)
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN or Infinity: stored, it would come back as null.
        raise ConditionError("'value' must be a finite number, not NaN or Infinity", field=path)
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, path, depth + 1)
    elif isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        for item in value.values():
            _check_json(item, path, depth + 1)
    else:
        raise ConditionError(f"'value' must be JSON; got {type(value).__name__}", field=path)


def _make_test(op: str, value: Any, path: str) -> tuple[Test, bool]:
    """The test of a present field's value, and the result when the field is missing."""
    if op in ("eq", "ne", "in", "not_in"):
        if op in ("in", "not_in") and not isinstance(value, list):
            raise ConditionError(f"{op!r} needs a list; got {_kind(value)}", field=path)
        matches = _matcher(value if op in ("in", "not_in") else [value])
        if op in ("eq", "in"):
            return matches, False
        return (lambda actual: not matches(actual)), True
    if op in _ORDERINGS:
        return _ordering(_ORDERINGS[op], value, op, path), False
    if op == "contains":
        return _contains(value), False
    if op == "starts_with":
        if not isinstance(value, str):
            raise ConditionError(f"'starts_with' needs a string; got {_kind(value)}", field=path)
        return (lambda actual: isinstance(actual, str) and actual.startswith(value)), False
    if op == "exists":
        if not isinstance(value, bool):
            raise ConditionError(f"'exists' takes true or false; got {_kind(value)}", field=path)
        wanted: bool = value
        return (lambda actual: wanted), not wanted
    return _regex(value, path), False


def _matcher(candidates: Sequence[Any]) -> Test:
    """Whether a value equals one of ``candidates``, with set lookups for scalars."""
    strings = frozenset(c for c in candidates if isinstance(c, str))
    # NaN equals nothing, and leaving it out keeps set identity checks from saying otherwise.
    numbers = frozenset(c for c in candidates if _is_number(c) and c == c)
    spelled = frozenset(n for c in strings if (n := _as_number(c)) is not None)
    numbers_or_spelled = numbers | spelled
    others = tuple(c for c in candidates if c is None or isinstance(c, (bool, list, Mapping)))

    def matches(actual: Any) -> bool:
        if isinstance(actual, str):
            if actual in strings:
                return True
            # Only number candidates: two strings compare as text, never as numbers.
            return bool(numbers) and _as_number(actual) in numbers
        if _is_number(actual):
            return actual in numbers_or_spelled
        return any(_equal(actual, c) for c in others)

    return matches


def _ordering(compare: Callable[[Any, Any], bool], value: Any, op: str, path: str) -> Test:
    threshold = _as_number(value)
    if threshold is not None:
        return lambda actual: (
            (number := _as_number(actual)) is not None and compare(number, threshold)
        )
    if isinstance(value, str):
        return lambda actual: (
            isinstance(actual, str) and _as_number(actual) is None and compare(actual, value)
        )
    raise ConditionError(
        f"{op!r} needs a number, a numeric string or a string; got {_kind(value)}", field=path
    )


def _contains(needle: Any) -> Test:
    element_matches = _matcher([needle])

    def contains(actual: Any) -> bool:
        if isinstance(actual, str):
            return isinstance(needle, str) and needle in actual
        if isinstance(actual, _SEQUENCES):
            return any(element_matches(item) for item in actual)
        if isinstance(actual, _MAPPINGS):
            return isinstance(needle, str) and needle in actual
        return False

    return contains


def _regex(value: Any, path: str) -> Test:
    if not isinstance(value, str):
        raise ConditionError(f"'regex' needs a string pattern; got {_kind(value)}", field=path)
    if len(value) > MAX_PATTERN:
        raise ConditionError(
            f"the pattern is {len(value)} characters long; at most {MAX_PATTERN} are allowed",
            field=path,
        )
    search = _compile_re2(value, path).search

    def matches(actual: Any) -> bool:
        if isinstance(actual, str):
            if len(actual) > MAX_REGEX_TEXT:
                return False  # see MAX_REGEX_TEXT; a cut text could match '$' where it ends
            # Bytes in and out skip the wrapper's offset bookkeeping (twice as fast). A lone
            # surrogate has no UTF-8; passed through, it must not make a condition raise.
            data = actual.encode("utf-8", "surrogatepass")
            return len(data) <= MAX_REGEX_TEXT and search(data) is not None
        if _is_number(actual):
            try:
                text = json.dumps(actual)
            except ValueError:  # an int beyond Python's digit limit has no text to match
                return False
            return search(text.encode()) is not None
        return False

    return matches


def _compile_re2(pattern: str, path: str) -> re2._Regexp[bytes]:
    options = re2.Options()
    options.max_mem = MAX_REGEX_MEMORY
    options.never_capture = True  # only "does it match" is asked: no groups to track
    options.log_errors = False  # refusals are answered to the caller, not logged to stderr
    try:
        compiled = re2.compile(pattern.encode(), options)
    except UnicodeEncodeError:
        raise ConditionError(
            "the pattern is not valid Unicode (it holds a lone surrogate)", field=path
        ) from None
    except re2.error as exc:
        raise ConditionError(_re2_refusal(exc), field=path) from None
    if compiled.programsize > MAX_PROGRAM:
        raise ConditionError(
            f"the pattern is too large once compiled ({compiled.programsize} instructions; at "
            f"most {MAX_PROGRAM}); shorten counted repetitions such as {{100}}, above all of "
            "classes like \\p{L}",
            field=path,
        )
    return compiled


_RE2_UNSUPPORTED: Final = (
    (re.compile(r"invalid escape sequence: \\[1-9k]"), "backreferences"),
    (re.compile(r"invalid perl operator: \(\?P$"), "backreferences"),  # (?P=name)
    (re.compile(r"invalid perl operator: \(\?<?[=!]"), "lookahead or lookbehind"),
    (re.compile(r"invalid perl operator: \(\?>"), "atomic groups"),
    (re.compile(r"bad repetition operator: [*+?]\+"), "possessive quantifiers"),
)


def _re2_refusal(exc: re2.error) -> str:
    """Why RE2 refused a pattern, in words that say what to change."""
    reason = exc.args[0] if exc.args else exc
    text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    for shape, construct in _RE2_UNSUPPORTED:
        if shape.search(text):
            return (
                f"RE2 does not support {construct}; hookline runs regexes in linear time ({text})"
            )
    if text == "invalid escape sequence: \\Z":
        return "RE2 has no \\Z; use \\z for the end of the text"
    if text == "pattern too large - compile failed":
        return "the pattern is too large once compiled; shorten its counted repetitions"
    return f"the pattern does not compile (RE2 syntax): {text}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_number(value: Any) -> int | float | None:
    """The number a value stands for: a number itself or a numeric string; else None."""
    kind = type(value)
    if kind is int or kind is float:  # exact types first: the hot path skips isinstance
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        if value.isdigit() and value.isascii() and len(value) <= _SHORT_DIGITS:
            return int(value)  # the common quoted count or id, without the regex
        match = _NUMERIC.fullmatch(value)
        if match is None:
            return None
        if match.lastindex is None:  # neither fraction nor exponent
            try:
                return int(value)
            except ValueError:  # past Python's int digit limit: approximate, never raise
                return float(value)
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _equal(a: Any, b: Any) -> bool:
    """Equality of the module docstring; ``b`` comes from a spec, so recursion is bounded."""
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    na, nb = _as_number(a), _as_number(b)
    if na is not None or nb is not None:
        return na is not None and nb is not None and na == nb
    if a is None or b is None:
        return a is b
    if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, _MAPPINGS) and isinstance(b, _MAPPINGS):
        return a.keys() == b.keys() and all(_equal(a[key], b[key]) for key in b)
    return False


def _kind(value: Any) -> str:
    """A short description of a value, for messages."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return type(value).__name__
    return text if len(text) <= 40 else f"{text[:37]}..."
