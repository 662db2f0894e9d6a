"""Linear is not enough: a regex RE2 accepts still took seconds on a 1 MiB field.

``(?i)a.{200}z`` blows up RE2's DFA, which then falls back to a cost of the text's length
times the program's size: 6 s of a blocked event loop for one condition of one event.
"""

from __future__ import annotations

import pytest

from hookline.conditions import MAX_PROGRAM, MAX_REGEX_TEXT, compile_conditions
from hookline.errors import ConditionError


def _regex(pattern: str) -> dict[str, str]:
    return {"field": "event.s", "op": "regex", "value": pattern}


def test_a_string_longer_than_the_regex_limit_never_matches() -> None:
    # Counting work is no timing: the search is not even started on a text that is too long.
    matches = compile_conditions(_regex("a"))
    assert matches({"event": {"s": "a" * MAX_REGEX_TEXT}, "state": {}})
    assert not matches({"event": {"s": "a" * (MAX_REGEX_TEXT + 1)}, "state": {}})
    # The limit is in UTF-8 bytes, what RE2 searches.
    assert not matches({"event": {"s": "é" * (MAX_REGEX_TEXT // 2 + 1)}, "state": {}})


def test_the_regexes_of_one_rule_share_one_program_budget() -> None:
    one = r"(?i)a.{100}z"  # about 800 instructions: alone it is accepted
    compile_conditions(_regex(one))
    with pytest.raises(ConditionError) as caught:
        compile_conditions({"all": [_regex(one), _regex(one)]})
    assert caught.value.field == "conditions.all[1].value"
    assert str(MAX_PROGRAM) in caught.value.detail
