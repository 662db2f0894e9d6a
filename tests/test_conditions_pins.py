"""Tests that pin what conditions.py does for its users, found by mutation testing.

Each closes a gap that ``make mutation`` showed: equality of lists and objects, fields three or
more segments deep whose keys are missing, the edges of the limits a saved rule must respect,
and the exact words of the errors a user reads when a rule is refused.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from hookline.conditions import MAX_DEPTH, MAX_PATTERN, compile_conditions
from hookline.errors import ConditionError


def holds(spec: Any, event: Any) -> bool:
    return compile_conditions(spec)({"event": event, "state": {}})


def leaf(op: str, value: Any, field: str = "event.x") -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


def refusal(spec: Any) -> tuple[str, str | None]:
    with pytest.raises(ConditionError) as caught:
        compile_conditions(spec)
    return caught.value.detail, caught.value.field


# -- list and object equality ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "actual", "expected"),
    [
        ([1, "2", None], [1.0, 2, None], True),  # element by element, numbers numerically
        ([1, 2], [2, 1], False),  # order counts
        ([1, 2], [1, 2, 3], False),
        ([1, 2, 3], [1, 2], False),
        ([True], [1], False),  # a bool is never a number, inside a list too
        ([None], [0], False),
        ([["a"]], ["a"], False),  # a list inside a list is not its element
        ([["a"]], [["a"]], True),
        ({"k": 1}, {"k": 1.0}, True),
        ({"k": 1}, {"k": 1, "j": 2}, False),  # the same keys, not a subset
        ({"k": 1}, {"j": 1}, False),
        ({"k": {"n": [1]}}, {"k": {"n": ["1"]}}, True),  # the rules apply all the way down
        ({"k": 1}, ["k"], False),  # an object never equals a list, even of its keys
        (["k"], {"k": 1}, False),
    ],
)
def test_lists_and_objects_compare_element_by_element(
    value: Any, actual: Any, expected: bool
) -> None:
    assert holds(leaf("eq", value), {"x": actual}) is expected
    assert holds(leaf("ne", value), {"x": actual}) is not expected
    assert holds(leaf("in", [value]), {"x": actual}) is expected


# -- missing keys deep down ------------------------------------------------------------------

DEEP = "event.a.b.c"


@pytest.mark.parametrize(
    "event",
    [
        {"a": {"b": {}}},  # the last key is missing
        {"a": {}},  # a middle key is missing
        {},  # the first key is missing
        {"a": {"b": 5}},  # a scalar has no keys
        {"a": {"b": None}},
        {"a": ["x"]},  # a list takes only numeric segments
    ],
)
def test_a_missing_key_three_segments_deep_is_missing(event: dict[str, Any]) -> None:
    assert holds(leaf("exists", False, DEEP), event) is True
    assert holds(leaf("exists", True, DEEP), event) is False
    assert holds(leaf("ne", 1, DEEP), event) is True
    assert holds(leaf("not_in", [1], DEEP), event) is True
    assert holds(leaf("eq", None, DEEP), event) is False


def test_a_null_three_segments_deep_is_present() -> None:
    event = {"a": {"b": {"c": None}}}
    assert holds(leaf("exists", True, DEEP), event) is True
    assert holds(leaf("eq", None, DEEP), event) is True


def test_list_indexes_deep_down_stay_in_range() -> None:
    field = "event.a.1.c"
    assert holds(leaf("eq", 2, field), {"a": [{"c": 1}, {"c": 2}]}) is True
    assert holds(leaf("exists", False, field), {"a": [{"c": 1}]}) is True
    assert holds(leaf("eq", 2, field), {"a": {"1": {"c": 2}}}) is True  # a numeric object key


# -- orderings on text -----------------------------------------------------------------------


def test_a_numeric_string_is_never_ordered_as_text() -> None:
    # "5" < "A" by code point, but "5" is a number and "A" is not: no ordering between them.
    assert holds(leaf("lt", "A"), {"x": "5"}) is False
    assert holds(leaf("lt", "A"), {"x": "5a"}) is True


# -- regex -----------------------------------------------------------------------------------


def test_regex_on_a_number_too_long_to_write_as_text_does_not_match() -> None:
    assert holds(leaf("regex", ".*"), {"x": 10**5000}) is False
    assert holds(leaf("regex", ".*"), {"x": 10**20}) is True


def test_a_pattern_may_be_exactly_the_longest_allowed() -> None:
    # A class keeps the compiled program small: only the length is at its limit here.
    compile_conditions(leaf("regex", "[" + "a" * (MAX_PATTERN - 2) + "]"))
    assert refusal(leaf("regex", "a" * (MAX_PATTERN + 1))) == (
        f"the pattern is {MAX_PATTERN + 1} characters long; at most {MAX_PATTERN} are allowed",
        "conditions.value",
    )


# -- limits of a saved rule ------------------------------------------------------------------


def nested_value(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_a_value_may_nest_exactly_as_deep_as_allowed() -> None:
    compile_conditions(leaf("eq", nested_value(MAX_DEPTH)))
    assert refusal(leaf("eq", nested_value(MAX_DEPTH + 1))) == (
        f"'value' is nested deeper than {MAX_DEPTH} levels",
        "conditions.value",
    )


def test_not_counts_toward_the_nesting_limit() -> None:
    spec: dict[str, Any] = leaf("eq", 1)
    for _ in range(MAX_DEPTH):
        spec = {"not": spec}
    detail, field = refusal(spec)
    assert detail == f"conditions are nested deeper than {MAX_DEPTH} levels; flatten them"
    assert field == "conditions" + ".not" * MAX_DEPTH


def test_integers_from_minus_two_to_the_63_below_two_to_the_64_are_accepted() -> None:
    # What a JSON parser reads exactly as a 64-bit integer, signed or not.
    assert holds(leaf("eq", -(2**63)), {"x": -(2**63)}) is True
    assert holds(leaf("lt", -1000), {"x": -1001}) is True
    assert holds(leaf("eq", 2**64 - 1), {"x": 2**64 - 1}) is True
    for outside in (-(2**63) - 1, 2**64):
        assert refusal(leaf("eq", outside)) == (
            "'value' integers must fit in 64 bits",
            "conditions.value",
        )


# -- what the user reads when a rule is refused ----------------------------------------------


@pytest.mark.parametrize(
    ("spec", "detail"),
    [
        (leaf("starts_with", 5), "'starts_with' needs a string; got 5"),
        (leaf("exists", "yes"), "'exists' takes true or false; got \"yes\""),
        (leaf("regex", 5), "'regex' needs a string pattern; got 5"),
        # Up to 40 characters of the offending value are quoted, then 37 and an ellipsis.
        (leaf("exists", "x" * 38), f"'exists' takes true or false; got \"{'x' * 38}\""),
        (leaf("exists", "x" * 39), f"'exists' takes true or false; got \"{'x' * 36}..."),
    ],
)
def test_a_refused_value_is_quoted_in_the_error(spec: Any, detail: str) -> None:
    assert refusal(spec) == (detail, "conditions.value")


def test_a_condition_that_is_not_json_is_named_by_its_type() -> None:
    # YAML (rules apply) reads 2024-01-02 as a date.
    detail, field = refusal({"all": [datetime.date(2024, 1, 2)]})
    assert detail.endswith("got date")
    assert field == "conditions.all[0]"


def test_an_object_value_is_checked_member_by_member_and_counts_toward_depth() -> None:
    assert refusal(leaf("eq", {"a": [1, {"b": 2**64}]})) == (
        "'value' integers must fit in 64 bits",
        "conditions.value",
    )
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = {"k": deep}
    assert holds(leaf("eq", deep), {"x": deep}) is True
    assert refusal(leaf("eq", {"k": deep}))[0] == (
        f"'value' is nested deeper than {MAX_DEPTH} levels"
    )


@pytest.mark.parametrize(
    ("spec", "detail", "field"),
    [
        (
            5,
            "a condition must be an object, a group ({'all': [...]}, {'any': [...]}, "
            "{'not': {...}}) or a leaf ({'field', 'op', 'value'}); got 5",
            "conditions",
        ),
        (
            {"foo": 1},
            "a condition needs 'all', 'any' or 'not' (a group) or 'field' and 'op' (a leaf)",
            "conditions",
        ),
        (
            {"field": 5, "op": "eq", "value": 1},
            "'field' must be a string such as 'event.amount' or 'state.core_country'; got 5",
            "conditions.field",
        ),
        (
            {"op": "eq", "value": 1},
            "'field' must be a string such as 'event.amount' or 'state.core_country'; got nothing",
            "conditions.field",
        ),
        (leaf("eq", {1, 2}), "'value' must be JSON; got set", "conditions.value"),
    ],
)
def test_a_refused_condition_says_exactly_what(spec: Any, detail: str, field: str) -> None:
    assert refusal(spec) == (detail, field)
