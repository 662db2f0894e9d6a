"""Tests of the condition compiler: each operator, each error path, and properties against a
reference interpreter that walks the spec on every call."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookline.conditions import OPERATORS, always_true, compile_conditions
from hookline.errors import ConditionError

BRIEF_EXAMPLE = {
    "all": [
        {"field": "event.minigame_spins_count", "op": "gte", "value": 1},
        {
            "any": [
                {"field": "state.ach_level_current", "op": "in", "value": ["gold", "vip"]},
                {"field": "state.core_country", "op": "eq", "value": "DE"},
            ]
        },
    ]
}


def ctx(event: Any = None, state: Any = None) -> dict[str, Any]:
    return {"event": {} if event is None else event, "state": {} if state is None else state}


def check(op: str, value: Any, actual: Any) -> bool:
    """Evaluate one leaf on ``event.x`` holding ``actual``."""
    return compile_conditions({"field": "event.x", "op": op, "value": value})(ctx({"x": actual}))


# --- the example of the brief -------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "state", "expected"),
    [
        ({"minigame_spins_count": 1}, {"ach_level_current": "gold"}, True),
        ({"minigame_spins_count": "3"}, {"core_country": "DE"}, True),
        ({"minigame_spins_count": 0}, {"ach_level_current": "vip"}, False),
        ({"minigame_spins_count": 2}, {"ach_level_current": "silver", "core_country": "FR"}, False),
        ({}, {"ach_level_current": "gold"}, False),
        ({"minigame_spins_count": 5}, {}, False),
    ],
)
def test_brief_example(event: dict[str, Any], state: dict[str, Any], expected: bool) -> None:
    assert compile_conditions(BRIEF_EXAMPLE)(ctx(event, state)) is expected


# --- operators ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("eq", 1, 1.0, True),
        ("eq", "3", 3, True),
        ("eq", 3, "3", True),
        ("eq", 3, "3.0", True),
        ("eq", 100, "1e2", True),
        ("eq", "3", "3.0", False),  # two strings compare as text
        ("eq", "007", "7", False),
        ("eq", "007", 7, True),
        ("eq", True, 1, False),
        ("eq", 1, True, False),
        ("eq", True, "true", False),
        ("eq", True, True, True),
        ("eq", None, None, True),
        ("eq", None, 0, False),
        ("eq", "DE", "DE", True),
        ("eq", "DE", "de", False),
        ("eq", [1, "a"], ["1", "a"], True),
        ("eq", [1], [True], False),
        ("eq", {"a": 1}, {"a": 1.0}, True),
        ("eq", {"a": 1}, {"a": 1, "b": 2}, False),
        ("eq", 3, "٣", False),  # only ASCII digits spell numbers
        ("eq", 2, "²", False),
        ("eq", 2**63 - 1, "9223372036854775807", True),
        ("eq", 2**63 - 1, "9223372036854775806", False),
        ("eq", 1.5, "15e-1", True),
        ("eq", 1, " 1", False),
        ("eq", 1, "+1", False),
        ("eq", "nan", "nan", True),
        ("eq", 1, "nan", False),
        ("eq", 1, float("nan"), False),
        ("ne", 1, 2, True),
        ("ne", "3", 3, False),
        ("ne", True, 1, True),
        ("gt", 1, 2, True),
        ("gt", 1, 1, False),
        ("gt", "1", "10", True),  # numeric strings compare as numbers
        ("gt", 9, "10", True),
        ("gt", "b", "a", False),
        ("gt", "a", "b", True),
        ("gt", "a", 5, False),
        ("gt", 5, "abc", False),
        ("gt", "abc", "10", False),
        ("gt", 0, True, False),
        ("gt", 0, None, False),
        ("gt", 0, [1], False),
        ("gte", 1, 1.0, True),
        ("gte", 2, 1, False),
        ("lt", 2, 1, True),
        ("lt", 2.5, "2", True),
        ("lt", "b", "a", True),
        ("lte", 1, 1, True),
        ("lte", 1, 2, False),
        ("in", ["gold", "vip"], "vip", True),
        ("in", ["gold", "vip"], "silver", False),
        ("in", [1, 2], "2", True),
        ("in", ["2"], 2.0, True),
        ("in", ["2"], "2.0", False),
        ("in", [True], 1, False),
        ("in", [None], None, True),
        ("in", [[1]], [1], True),
        ("in", [], "x", False),
        ("not_in", ["gold"], "vip", True),
        ("not_in", ["gold"], "gold", False),
        ("not_in", [3], "3", False),
        ("contains", "ol", "gold", True),
        ("contains", "x", "gold", False),
        ("contains", 1, "a1", False),
        ("contains", 1, ["1", 2], True),
        ("contains", "2", [1, 2], True),
        ("contains", True, [1], False),
        ("contains", "k", {"k": 0}, True),
        ("contains", "v", {"k": "v"}, False),
        ("contains", 1, 1, False),
        ("starts_with", "go", "gold", True),
        ("starts_with", "ol", "gold", False),
        ("starts_with", "1", 12, False),
        ("exists", True, None, True),
        ("exists", False, 0, False),
        ("regex", r"^g.l", "gold", True),
        ("regex", r"^\d+$", "12a", False),
        ("regex", r"^12$", 12, True),
        ("regex", r"\.5$", 1.5, True),
        ("regex", "true", True, False),
        ("regex", "a", ["a"], False),
    ],
)
def test_operator(op: str, value: Any, actual: Any, expected: bool) -> None:
    assert check(op, value, actual) is expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", 1, False),
        ("ne", 1, True),
        ("gt", 1, False),
        ("gte", 1, False),
        ("lt", 1, False),
        ("lte", 1, False),
        ("in", [1], False),
        ("not_in", [1], True),
        ("contains", "a", False),
        ("starts_with", "a", False),
        ("exists", True, False),
        ("exists", False, True),
        ("regex", ".*", False),
    ],
)
def test_missing_field(op: str, value: Any, expected: bool) -> None:
    predicate = compile_conditions({"field": "event.x", "op": op, "value": value})
    assert predicate(ctx({"y": 1})) is expected
    assert predicate({}) is expected  # no scope at all


def test_exists_defaults_to_true() -> None:
    predicate = compile_conditions({"field": "state.x", "op": "exists"})
    assert predicate(ctx(state={"x": None})) is True
    assert predicate(ctx(state={})) is False


def test_operators_are_exactly_the_documented_ones() -> None:
    comparisons = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in"}
    assert comparisons | {"contains", "starts_with", "exists", "regex"} == OPERATORS


# --- field lookup ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "event", "expected"),
    [
        ("event.meta.name", {"meta": {"name": "Ann"}}, True),
        ("event.items.1.name", {"items": [{}, {"name": "Ann"}]}, True),
        ("event.items.2.name", {"items": [{}, {"name": "Ann"}]}, False),
        ("event.items.0", {"items": {"0": "Ann"}}, True),  # numeric key of an object
        ("event.meta.name", {"meta": "Ann"}, False),  # a scalar has no properties
        ("event.items.x", {"items": ["Ann"]}, False),  # a list takes only numeric segments
        ("event.with-dash_1", {"with-dash_1": "Ann"}, True),
    ],
)
def test_field_lookup(field: str, event: dict[str, Any], expected: bool) -> None:
    predicate = compile_conditions({"field": field, "op": "eq", "value": "Ann"})
    assert predicate(ctx(event)) is expected


def test_scope_that_is_not_an_object() -> None:
    predicate = compile_conditions({"field": "event.x", "op": "ne", "value": 1})
    assert predicate({"event": "text", "state": None}) is True


# --- groups ---------------------------------------------------------------------------------

YES = {"field": "event.x", "op": "eq", "value": 1}
NO = {"field": "event.x", "op": "eq", "value": 2}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, True),
        ({}, True),
        ({"all": []}, True),
        ({"any": []}, False),
        ({"all": [YES]}, True),
        ({"all": [YES, NO]}, False),
        ({"all": [YES, YES, YES]}, True),
        ({"any": [NO]}, False),
        ({"any": [NO, YES]}, True),
        ({"any": [NO, NO, NO]}, False),
        ({"not": YES}, False),
        ({"not": {"any": []}}, True),
        ({"all": [{"not": NO}, {"any": [NO, {"all": [YES]}]}]}, True),
    ],
)
def test_groups(spec: Any, expected: bool) -> None:
    assert compile_conditions(spec)(ctx({"x": 1})) is expected


def test_no_conditions_is_always_true() -> None:
    assert compile_conditions(None) is always_true
    assert compile_conditions({}) is always_true
    assert always_true({}) is True


def test_deepest_allowed_nesting_compiles() -> None:
    spec: dict[str, Any] = YES
    for _ in range(31):
        spec = {"not": spec}
    assert compile_conditions(spec)(ctx({"x": 1})) is False  # 31 negations


def test_most_leaves_allowed_compile() -> None:
    assert compile_conditions({"all": [YES] * 1000})(ctx({"x": 1})) is True


# --- errors ---------------------------------------------------------------------------------


def nest(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = YES
    for _ in range(depth - 1):
        spec = {"all": [spec]}
    return spec


@pytest.mark.parametrize(
    ("spec", "field", "detail"),
    [
        ([YES], "conditions", "must be an object"),
        ("x", "conditions", "must be an object"),
        ({"all": [YES, 3]}, "conditions.all[1]", "must be an object"),
        ({"foo": 1}, "conditions", "needs 'all', 'any' or 'not'"),
        ({"all": [{}]}, "conditions.all[0]", "needs 'all', 'any' or 'not'"),
        ({"all": [], "any": []}, "conditions", "exactly one of 'all', 'any', 'not'; got all, any"),
        ({"all": [], "foo": 1}, "conditions.foo", "unknown key 'foo'; expected only 'all'"),
        ({"not": YES, "field": "event.x"}, "conditions.field", "unknown key 'field'"),
        ({**YES, "values": 1}, "conditions.values", "expected only 'field', 'op', 'value'"),
        ({"all": {"x": 1}}, "conditions.all", "'all' takes a list of conditions; got an object"),
        ({"any": None}, "conditions.any", "'any' takes a list of conditions; got null"),
        ({"not": [YES]}, "conditions.not", "must be an object"),
        ({"op": "eq", "value": 1}, "conditions.field", "got nothing"),
        ({"field": 3, "op": "eq", "value": 1}, "conditions.field", "must be a string"),
        ({"field": "user.x", "op": "eq", "value": 1}, "conditions.field", "unknown scope 'user'"),
        ({"field": "event", "op": "eq", "value": 1}, "conditions.field", "needs a property"),
        ({"field": "event..x", "op": "eq", "value": 1}, "conditions.field", "bad segment ''"),
        ({"field": "state.a b", "op": "eq", "value": 1}, "conditions.field", "bad segment 'a b'"),
        ({"field": "state.é", "op": "eq", "value": 1}, "conditions.field", "bad segment"),
        (
            {"all": [YES, {"field": "event.x", "op": "gtx", "value": 1}]},
            "conditions.all[1].op",
            "unknown operator 'gtx'; expected one of: eq, ne, gt, gte, lt, lte, in, not_in, "
            "contains, starts_with, exists, regex",
        ),
        ({"field": "event.x", "value": 1}, "conditions.op", "unknown operator nothing"),
        ({"field": "event.x", "op": ["eq"], "value": 1}, "conditions.op", "unknown operator"),
        ({"field": "event.x", "op": "eq"}, "conditions.value", "'eq' needs a 'value'"),
        (
            {"any": [YES, {"field": "event.x", "op": "in", "value": "gold"}]},
            "conditions.any[1].value",
            "'in' needs a list; got \"gold\"",
        ),
        ({"field": "event.x", "op": "not_in", "value": 1}, "conditions.value", "needs a list"),
        (
            {"field": "event.x", "op": "gt", "value": True},
            "conditions.value",
            "'gt' needs a number",
        ),
        ({"field": "event.x", "op": "lte", "value": None}, "conditions.value", "got null"),
        ({"field": "event.x", "op": "lt", "value": [1]}, "conditions.value", "got a list"),
        ({"field": "event.x", "op": "starts_with", "value": 1}, "conditions.value", "a string"),
        ({"field": "event.x", "op": "regex", "value": 1}, "conditions.value", "string pattern"),
        (
            {"field": "event.x", "op": "regex", "value": "a("},
            "conditions.value",
            "the pattern does not compile (RE2 syntax): missing ): a(",
        ),
        ({"field": "event.x", "op": "regex", "value": "a" * 1001}, "conditions.value", "1000"),
        (
            {"field": "event.x", "op": "regex", "value": r"(a)\1"},
            "conditions.value",
            "RE2 does not support backreferences; hookline runs regexes in linear time",
        ),
        (
            {"field": "event.x", "op": "regex", "value": "(?P<n>a)(?P=n)"},
            "conditions.value",
            "RE2 does not support backreferences",
        ),
        (
            {"field": "event.x", "op": "regex", "value": "a(?=b)"},
            "conditions.value",
            "RE2 does not support lookahead or lookbehind",
        ),
        (
            {"field": "event.x", "op": "regex", "value": "(?<!a)b"},
            "conditions.value",
            "RE2 does not support lookahead or lookbehind",
        ),
        ({"field": "event.x", "op": "regex", "value": "a++"}, "conditions.value", "possessive"),
        ({"field": "event.x", "op": "regex", "value": r"a\Z"}, "conditions.value", r"use \z"),
        # 19 characters, but over 100,000 instructions once the Unicode class is expanded.
        (
            {"field": "event.x", "op": "regex", "value": r"\p{L}{100}"},
            "conditions.value",
            "too large once compiled",
        ),
        ({"field": "event.x", "op": "exists", "value": "yes"}, "conditions.value", "true or false"),
        ({"field": "event.x", "op": "eq", "value": {1, 2}}, "conditions.value", "must be JSON"),
        ({"field": "event.x", "op": "eq", "value": {1: "a"}}, "conditions.value", "must be JSON"),
        ({"field": "event.x", "op": "eq", "value": 10**20}, "conditions.value", "64 bits"),
        ({"field": "event.x", "op": "in", "value": [1, -(2**63) - 1]}, "conditions.value", "64"),
        (nest(33), "conditions" + ".all[0]" * 32, "nested deeper than 32 levels"),
        ({"all": [YES] * 1001}, "conditions.all[1000]", "at most 1000 conditions"),
    ],
)
def test_error(spec: Any, field: str, detail: str) -> None:
    with pytest.raises(ConditionError) as caught:
        compile_conditions(spec)
    assert caught.value.field == field
    assert detail in caught.value.detail
    assert caught.value.code == "invalid_condition"


def test_catastrophic_backtracking_pattern_runs_in_linear_time() -> None:
    # Under a backtracking engine (Python's re) this search takes tens of seconds on 31
    # characters and does not end on 16,001 within the test timeout; RE2 answers at once.
    predicate = compile_conditions({"field": "event.x", "op": "regex", "value": "^(a+)+$"})
    assert predicate(ctx({"x": "a" * 30 + "!"})) is False
    assert predicate(ctx({"x": "a" * 16_000 + "!"})) is False
    assert predicate(ctx({"x": "a" * 16_000})) is True


def test_regex_keeps_search_semantics_on_text_and_numbers() -> None:
    assert check("regex", "ol", "gold") is True  # a search, not a full match
    assert check("regex", "^ol", "gold") is False
    assert check("regex", r"e\+20$", 1e20) is True  # numbers via their JSON text
    assert check("regex", "^caf.$", "café") is True  # '.' is one character, not one byte
    # A lone surrogate (no UTF-8 for it) must not make the predicate raise; like re, '.' takes it.
    assert check("regex", "^a.c$", "a\ud800c") is True


def test_error_paths_start_at_the_given_field() -> None:
    with pytest.raises(ConditionError) as caught:
        compile_conditions({"not": {"field": "event.x", "op": "?"}}, field="steps[2].conditions")
    assert caught.value.field == "steps[2].conditions.not.op"


def test_nesting_32_deep_is_allowed_33_is_not() -> None:
    compile_conditions(nest(32))
    with pytest.raises(ConditionError):
        compile_conditions(nest(33))


def test_value_nested_too_deep() -> None:
    value: Any = 1
    for _ in range(40):
        value = [value]
    with pytest.raises(ConditionError) as caught:
        compile_conditions({"field": "event.x", "op": "eq", "value": value})
    assert caught.value.field == "conditions.value"


def test_leaf_count_spans_groups() -> None:
    with pytest.raises(ConditionError) as caught:
        compile_conditions({"any": [{"all": [YES] * 600}, {"all": [YES] * 401}]})
    assert caught.value.field == "conditions.any[1].all[400]"


# --- properties: compiled evaluation equals a reference interpreter -------------------------


def ref_number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?", value):
        return float(value) if any(c in value for c in ".eE") else int(value)
    return None


def ref_equal(a: Any, b: Any) -> bool:
    if type(a) is str and type(b) is str:
        return a == b
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if ref_number(a) is not None and ref_number(b) is not None:
        return ref_number(a) == ref_number(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(ref_equal, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(ref_equal(a[k], b[k]) for k in a)
    return a is None and b is None


def ref_lookup(context: Any, field: str) -> tuple[bool, Any]:
    current = context
    for segment in field.split("."):
        if isinstance(current, dict) and segment in current:
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            return False, None
    return True, current


def ref_leaf(op: str, expected: Any, actual: Any) -> bool:
    if op == "eq":
        return ref_equal(actual, expected)
    if op == "ne":
        return not ref_equal(actual, expected)
    if op == "in":
        return any(ref_equal(actual, item) for item in expected)
    if op == "not_in":
        return not any(ref_equal(actual, item) for item in expected)
    if op in ("gt", "gte", "lt", "lte"):
        a: Any = ref_number(actual)
        b: Any = ref_number(expected)
        if a is None or b is None:
            if a is not None or b is not None or type(actual) is not str:
                return False
            a, b = actual, expected
        return bool({"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op])
    if op == "contains":
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        if isinstance(actual, list):
            return any(ref_equal(item, expected) for item in actual)
        if isinstance(actual, dict):
            return expected in actual if isinstance(expected, str) else False
        return False
    if op == "starts_with":
        return isinstance(actual, str) and actual.startswith(expected)
    if op == "exists":
        return bool(expected)
    assert op == "regex"
    if type(actual) in (int, float):
        actual = json.dumps(actual)
    return isinstance(actual, str) and re.search(expected, actual) is not None


def ref_eval(spec: Any, context: Any) -> bool:
    if not spec:
        return True
    if "all" in spec:
        return all(ref_eval(child, context) for child in spec["all"])
    if "any" in spec:
        return any(ref_eval(child, context) for child in spec["any"])
    if "not" in spec:
        return not ref_eval(spec["not"], context)
    op = spec["op"]
    found, actual = ref_lookup(context, spec["field"])
    if not found:
        return op in ("ne", "not_in") or (op == "exists" and spec.get("value") is False)
    return ref_leaf(op, spec.get("value", True), actual)


NUMERIC_TEXT = st.sampled_from(["0", "1", "-1", "3", "3.0", "007", "7", "1e2", "100", "2.5"])
# A small pool, rich in near-misses (1 / 1.0 / "1" / True, "3" / "3.0"), so that leaves match
# often enough for the comparison with the reference to mean something.
SCALARS = st.sampled_from(
    [None, True, False, 0, 1, 1.0, 3, 7, 2.5, "1", "3", "3.0", "007", "1e2", "", "a", "ab", "gold"]
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "0"]), inner)
    ),
    max_leaves=6,
)
FIELDS = st.sampled_from(
    ["event.a", "event.b", "event.n.a", "event.l.0", "event.l.1", "state.a", "state.l.0"]
)
PATTERNS = st.sampled_from(["^a", "b$", "^[0-9]+$", r"\.", "o", "^$", "1|2"])
ORDERABLE = st.one_of(
    st.sampled_from([0, 1, 2.5, 3, 7]), NUMERIC_TEXT, st.sampled_from(["a", "gold"])
)
MOSTLY_SCALARS = st.one_of(SCALARS, VALUES)


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(sorted(OPERATORS)))
    value = {
        "in": st.lists(MOSTLY_SCALARS, max_size=4),
        "not_in": st.lists(MOSTLY_SCALARS, max_size=4),
        "gt": ORDERABLE,
        "gte": ORDERABLE,
        "lt": ORDERABLE,
        "lte": ORDERABLE,
        "starts_with": st.sampled_from(["", "a", "g", "1"]),
        "regex": PATTERNS,
        "exists": st.booleans(),
    }.get(op, MOSTLY_SCALARS)
    leaf = {"field": draw(FIELDS), "op": op, "value": draw(value)}
    if op == "exists" and draw(st.booleans()):
        del leaf["value"]
    return leaf


SPECS = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(inner, max_size=3)),
        st.builds(lambda c: {"any": c}, st.lists(inner, max_size=3)),
        st.builds(lambda c: {"not": c}, inner),
    ),
    max_leaves=8,
)
# "a" and "l" always present so that most leaves see a value; "b" and "n" only sometimes.
SCOPE_DATA = st.fixed_dictionaries(
    {"a": SCALARS, "l": st.one_of(st.lists(SCALARS, min_size=1, max_size=3), VALUES)},
    optional={"b": VALUES, "n": st.one_of(st.fixed_dictionaries({"a": SCALARS}), VALUES)},
)
CONTEXTS = st.fixed_dictionaries({"event": SCOPE_DATA, "state": SCOPE_DATA})

JSON = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), NUMERIC_TEXT
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(spec=SPECS, context=CONTEXTS)
def test_compiled_matches_reference(spec: dict[str, Any], context: dict[str, Any]) -> None:
    assert compile_conditions(spec)(context) is ref_eval(spec, context)


@PROPERTY
@given(context=CONTEXTS, data=st.data())
def test_leaf_on_values_seen_in_the_context_matches_reference(
    context: dict[str, Any], data: st.DataObject
) -> None:
    # Random specs rarely hit the data exactly; here the value is taken from the context, so
    # equal, numerically equal and merely similar values all get exercised.
    seen = [value for scope in context.values() for value in scope.values()]
    value = data.draw(st.sampled_from(seen))
    op = data.draw(st.sampled_from(["eq", "ne", "in", "not_in", "contains", "gt", "lte"]))
    if op in ("in", "not_in"):
        value = [value, *data.draw(st.lists(SCALARS, max_size=2))]
    elif op in ("gt", "lte") and ref_number(value) is None and not isinstance(value, str):
        op = "eq"
    fields = [f"{name}.{key}" for name, scope in context.items() for key in scope]
    spec = {"field": data.draw(st.sampled_from(fields)), "op": op, "value": value}
    assert compile_conditions(spec)(context) is ref_eval(spec, context)


@PROPERTY
@given(spec=SPECS, context=st.one_of(JSON.filter(lambda v: isinstance(v, dict)), CONTEXTS))
def test_evaluation_never_raises(spec: dict[str, Any], context: dict[str, Any]) -> None:
    assert isinstance(compile_conditions(spec)(context), bool)


@PROPERTY
@given(spec=SPECS, event=JSON, state=JSON)
def test_evaluation_never_raises_on_any_scope_data(
    spec: dict[str, Any], event: Any, state: Any
) -> None:
    assert isinstance(compile_conditions(spec)({"event": event, "state": state}), bool)


SPEC_KEYS = st.sampled_from(["all", "any", "not", "field", "op", "value", "x"])
ROUGH_SPECS = st.recursive(
    st.one_of(JSON, FIELDS, st.sampled_from([*OPERATORS, "gtx", "event.", "a(", "[", "user.a"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(SPEC_KEYS, inner, max_size=4)
    ),
    max_leaves=16,
)
# A valid leaf with one key overwritten by arbitrary JSON, nested in a group.
BROKEN_LEAVES = st.builds(
    lambda leaf, key, value, group: {group: [{**leaf, key: value}]},
    leaves(),
    SPEC_KEYS,
    JSON,
    st.sampled_from(["all", "any"]),
)


@PROPERTY
@given(spec=st.one_of(ROUGH_SPECS, JSON, BROKEN_LEAVES))
def test_compile_raises_only_condition_error(spec: Any) -> None:
    error: ConditionError | None = None
    try:
        predicate = compile_conditions(spec)
    except ConditionError as exc:
        error = exc
    if error is None:
        assert isinstance(predicate({"event": {}, "state": {}}), bool)
    else:
        assert error.field is not None
        assert error.field.startswith("conditions")
        assert error.detail


def test_nan_and_infinity_in_data_do_not_raise() -> None:
    for op, value in [("gt", 1), ("eq", 1), ("in", [1, "1"]), ("regex", "n"), ("contains", 1)]:
        for actual in (math.nan, math.inf, [math.nan], 10**5000, "9" * 5000):
            check(op, value, actual)
