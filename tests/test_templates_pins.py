"""Tests that pin what templates.py does for its users, found by mutation testing.

Each closes a gap that ``make mutation`` showed: the whole-value fallback, the exact words and
positions of the errors a user reads when a template is refused, the JSON and URL edges the
checker must accept, and how values that are not plain JSON are written.
"""

from __future__ import annotations

import datetime
from types import MappingProxyType
from typing import Any

import orjson
import pytest

from hookline.errors import TemplateError
from hookline.templates import MISSING, TemplateMode, compile_template, lookup

JSON, TEXT, URL, FORM = TemplateMode.JSON, TemplateMode.TEXT, TemplateMode.URL, TemplateMode.FORM


def render(source: str, mode: TemplateMode, **scopes: Any) -> str:
    return compile_template(source, mode, field="f").render(scopes)


def refusal(source: str, mode: TemplateMode) -> tuple[str, int, int]:
    with pytest.raises(TemplateError) as info:
        compile_template(source, mode, field="body")
    return info.value.detail, info.value.line or 0, info.value.column or 0


# -- the whole-value fallback ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("present", "expected"),
    [(3, 3), (0, 0), (False, False), ("x", "x"), ([], []), ({"a": 1}, {"a": 1})],
)
def test_whole_value_tag_uses_field_not_fallback_when_present(present: Any, expected: Any) -> None:
    text = render('{"v": {{event.v|7}}}', JSON, event={"v": present})
    assert orjson.loads(text) == {"v": expected}


def test_whole_value_fallback_still_covers_missing_null_and_empty() -> None:
    source = "[{{event.gone|7}}, {{event.none|7}}, {{event.empty|7}}]"
    assert orjson.loads(render(source, JSON, event={"none": None, "empty": ""})) == [7, 7, 7]


# -- lookup ----------------------------------------------------------------------------------


def test_lookup_tells_a_missing_key_from_a_null_value_at_any_depth() -> None:
    context = {"event": {"a": {"b": {"c": None}}}}
    assert lookup(context, "event", ("a", "b", "c")) is None
    assert lookup(context, "event", ("a", "b", "d")) is MISSING
    assert lookup(context, "event", ("a", "x")) is MISSING


def test_lookup_walks_any_mapping_not_only_dicts() -> None:
    context = {"state": MappingProxyType({"tier": MappingProxyType({"name": "gold"})})}
    assert lookup(context, "state", ("tier", "name")) == "gold"
    assert render("{{state.tier.name}}", TEXT, **context) == "gold"


# -- values that are not plain JSON ----------------------------------------------------------


def test_a_value_json_cannot_express_renders_as_its_python_text() -> None:
    day = datetime.date(2024, 1, 2)
    assert render("on {{event.day}}", TEXT, event={"day": day}) == "on 2024-01-02"


def test_a_list_holding_an_integer_beyond_64_bits_renders_its_digits() -> None:
    assert render("{{event.v}}", TEXT, event={"v": [2**70]}) == f"[{2**70}]"


@pytest.mark.parametrize(
    ("source", "mode", "expected"),
    [
        ("https://h/u/{{event.v}}", URL, "https://h/u/a%3Fb"),
        ("n={{event.v}}", FORM, "n=a%3Fb"),
        ("https://h/u/{{event.v|smr_encode}}", URL, "https://h/u/a%3Fb"),
    ],
)
def test_a_lone_surrogate_in_an_encoded_value_is_replaced_not_a_failure(
    source: str, mode: TemplateMode, expected: str
) -> None:
    assert render(source, mode, event={"v": "a\ud800b"}) == expected


# -- what the checker accepts ----------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        '{"a": "{"}',  # a brace that opens no tag is text, even right before the quote
        '{"a": "\\ud83d\\ude00"}',  # a surrogate pair right before the closing quote
        '["\\udbff\\udfff", "\\ud800\\udc00"]',  # the ends of both surrogate ranges
        '"\\ue000"',  # the first code point after the low surrogates is a plain character
    ],
)
def test_json_strings_the_checker_accepts(source: str) -> None:
    assert orjson.loads(render(source, JSON)) == orjson.loads(source)


def test_a_url_tag_may_hold_spaces_in_its_fallback() -> None:
    template = compile_template("https://h/q?x={{event.a | no value}}", URL, field="url")
    assert template.render({}) == "https://h/q?x=no%20value"


# -- what the user reads when a template is refused ------------------------------------------

TAG_60 = "{{user." + "a" * 51 + "}}"
TAG_61 = "{{user." + "a" * 52 + "}}"


@pytest.mark.parametrize(
    ("source", "mode", "detail", "line", "column"),
    [
        ("ab\ud800", TEXT, "the template contains an unpaired surrogate character", 1, 3),
        ("x {{event.a", TEXT, "a tag opened with '{{' is not closed with '}}'", 1, 3),
        ("\n{{x}}", TEXT, "a tag must start with 'state.' or 'event.', not 'x': {{x}}", 2, 1),
        ("a\nb\n  {{x}}", TEXT, "a tag must start with 'state.' or 'event.', not 'x': {{x}}", 3, 3),
        # A tag of up to 60 characters is quoted whole, a longer one cut to 57 and an ellipsis.
        (TAG_60, TEXT, f"a tag must start with 'state.' or 'event.', not 'user': {TAG_60}", 1, 1),
        (
            TAG_61,
            TEXT,
            f"a tag must start with 'state.' or 'event.', not 'user': {TAG_61[:57]}...",
            1,
            1,
        ),
        ("ftp://h/", URL, "a URL must start with http:// or https://", 1, 1),
        ("https://", URL, "the URL has no host", 1, 9),
        (" ", JSON, "the JSON document is empty", 1, 2),
        ("[1] 2", JSON, "unexpected text after the JSON document", 1, 5),
        (
            "[1{{event.a}}]",
            JSON,
            "a tag must stand alone as a JSON value or sit inside a string",
            1,
            3,
        ),
        ('{"a": ', JSON, "expected a JSON value", 1, 7),
        ("X", JSON, "expected a JSON value", 1, 1),
        ("[tru]", JSON, "expected a JSON value", 1, 2),
        ("[1,\n]", JSON, "expected a JSON value (trailing commas are not allowed)", 2, 1),
        ("[01]", JSON, "invalid number", 1, 2),
        ("[1e999]", JSON, "number is too large for JSON parsers", 1, 2),
        (
            "{ {{event.k}}: 1}",
            JSON,
            'a tag cannot be an object key; put it inside quotes ("{{...}}")',
            1,
            3,
        ),
        ("{1: 2}", JSON, "expected an object key (a string in double quotes)", 1, 2),
        ('{"a" 1}', JSON, "expected ':' after an object key", 1, 6),
        ('["abc]', JSON, "unterminated string", 1, 2),
        (
            '["a\tb"]',
            JSON,
            "a control character in a string must be escaped (e.g. \\n, \\u0000)",
            1,
            4,
        ),
        ('["\\X"]', JSON, "invalid escape '\\\\X' in a string", 1, 3),
        ('["\\udfff"]', JSON, "a \\u escape of a low surrogate must follow a high one", 1, 3),
        (
            '["\\udbff"]',
            JSON,
            "a \\u escape of a high surrogate must be followed by a low one",
            1,
            3,
        ),
    ],
)
def test_a_refused_template_says_exactly_what_and_where(
    source: str, mode: TemplateMode, detail: str, line: int, column: int
) -> None:
    assert refusal(source, mode) == (f"{detail} (line {line}, column {column})", line, column)


def test_a_template_shows_its_mode_and_the_start_of_its_source() -> None:
    template = compile_template("x" * 100, TEXT, field="f")
    assert repr(template) == f"Template(mode='text', source='{'x' * 60}')"
