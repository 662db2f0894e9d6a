from __future__ import annotations

from typing import Any

import orjson
import pytest

from hookline.errors import RenderError, TemplateError
from hookline.templates import (
    MISSING,
    Tag,
    Template,
    TemplateMode,
    compile_template,
    lookup,
)

JSON, TEXT, URL, FORM = TemplateMode.JSON, TemplateMode.TEXT, TemplateMode.URL, TemplateMode.FORM


def render(source: str, mode: TemplateMode = TEXT, **scopes: Any) -> str:
    return compile_template(source, mode, field="f").render(scopes)


def render_json(source: str, **scopes: Any) -> Any:
    return orjson.loads(render(source, JSON, **scopes))


def error(source: str, mode: TemplateMode = TEXT) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        compile_template(source, mode, field="body")
    assert info.value.field == "body"
    return info.value


# -- tags -----------------------------------------------------------------------------------


def test_tag_parts_are_parsed() -> None:
    template = compile_template(
        "Hi {{ state.user_first_name | my friend }}!\n{{event.link|smr_encode|json}}",
        TEXT,
        field="f",
    )
    assert template.tags == (
        Tag(
            "state",
            ("user_first_name",),
            "my friend",
            (),
            1,
            4,
            "{{ state.user_first_name | my friend }}",
        ),
        Tag(
            "event", ("link",), None, ("smr_encode", "json"), 2, 1, "{{event.link|smr_encode|json}}"
        ),
    )
    assert template.mode is TEXT
    assert template.field == "f"
    assert not template.is_static


def test_fallback_may_come_after_filters_and_may_be_empty() -> None:
    (tag,) = compile_template("{{event.x|smr_encode|a b}}", TEXT, field="f").tags
    assert (tag.fallback, tag.filters) == ("a b", ("smr_encode",))
    (tag,) = compile_template("{{event.x|}}", TEXT, field="f").tags
    assert tag.fallback == ""


def test_static_template_renders_its_source() -> None:
    template = compile_template('{"a": {"b": 1}}', JSON, field="f")
    assert template.is_static
    assert template.tags == ()
    assert template.render({}) == '{"a": {"b": 1}}'
    assert "json" in repr(template)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{user.name}}", "must start with 'state.' or 'event.'"),
        ("{{}}", "must start with 'state.' or 'event.'"),
        ("{{event}}", "names no property"),
        ("{{event..a}}", "empty path segment"),
        ("{{event.a.}}", "empty path segment"),
        ("{{event.a b}}", "may only use"),
        ("{{event.a$}}", "may only use"),
        ("{{ event . a }}", "must start with"),
        ("{{event.a|x|y}}", "at most one"),
        ("{{event.a", "not closed"),
        ("{{{event.a}}}", "must start with"),
    ],
)
def test_tag_errors(source: str, message: str) -> None:
    err = error("x\n  " + source)
    assert message in err.detail
    assert (err.line, err.column) == (2, 3)


def test_an_unclosed_tag_after_good_ones_points_at_itself() -> None:
    err = error("{{event.a}}\n{{event.b}} and {{event.c")
    assert (err.line, err.column) == (2, 17)


def test_lone_surrogate_in_source_is_refused() -> None:
    err = error("ab\ud800")
    assert (err.line, err.column) == (1, 3)


# -- lookup ---------------------------------------------------------------------------------


def test_lookup_walks_mappings_and_lists() -> None:
    context = {
        "event": {"meta": {"name": "n"}, "items": [{"sku": "a"}, {"sku": "b"}], "d": {"0": 1}}
    }
    assert lookup(context, "event", ("meta", "name")) == "n"
    assert lookup(context, "event", ("items", "1", "sku")) == "b"
    assert lookup(context, "event", ("d", "0")) == 1
    assert lookup(context, "event", ("items", "2")) is MISSING
    assert lookup(context, "event", ("items", "x")) is MISSING
    assert lookup(context, "event", ("meta", "name", "0")) is MISSING  # strings are not indexed
    assert lookup(context, "event", ("nope", "deeper")) is MISSING
    assert lookup(context, "state", ("x",)) is MISSING
    assert lookup({"event": {"t": (1, 2)}}, "event", ("t", "1")) == 2
    assert repr(MISSING) == "MISSING"


def test_nested_paths_render() -> None:
    event = {"meta": {"name": "Ann"}, "items": [{"sku": "A-1"}]}
    assert render("{{event.meta.name}}/{{ event.items.0.sku }}", event=event) == "Ann/A-1"


# -- value to text --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (-1.5, "-1.5"),
        (1e20, "1e+20"),
        ({"a": [1, None]}, '{"a":[1,null]}'),
        ([1, "x"], '[1,"x"]'),
        (None, ""),
        ("", ""),
        (2**70, str(2**70)),
    ],
)
def test_value_to_text(value: Any, text: str) -> None:
    assert render("{{event.v}}", event={"v": value}) == text


@pytest.mark.parametrize("event", [{}, {"v": None}, {"v": ""}])
def test_fallback_replaces_missing_none_and_empty(event: dict[str, Any]) -> None:
    assert render("Hi {{state.x|z}} {{event.v|my friend}}", event=event) == "Hi z my friend"
    assert render("{{event.v}}", event=event) == ""


def test_fallback_does_not_replace_falsy_values() -> None:
    event = {"v": 0, "w": False, "l": []}
    assert render("{{event.v|x}}{{event.w|x}}{{event.l|x}}", event=event) == "0false[]"


def test_filters_in_text_mode() -> None:
    event = {"link": "https://a.b/?q=1 2&x=é", "name": 'say "hi"', "n": 3}
    assert render("{{event.link|smr_encode}}", event=event) == (
        "https%3A%2F%2Fa.b%2F%3Fq%3D1%202%26x%3D%C3%A9"
    )
    assert render("{{event.name|json}}", event=event) == '"say \\"hi\\""'
    assert render("{{event.n|json}}", event=event) == "3"
    assert render("{{event.nope|json}}", event=event) == "null"
    assert render("{{event.nope|7|json}}", event=event) == "7"
    assert render("{{event.nope|a b|json}}", event=event) == '"a b"'
    assert render("{{event.nope|a b|smr_encode}}", event=event) == "a%20b"
    assert render("{{event.name|json|smr_encode}}", event=event) == "%22say%20%5C%22hi%5C%22%22"
    assert render("{{event.name|smr_encode|json}}", event=event) == '"say%20%22hi%22"'


def test_text_mode_inserts_values_as_is() -> None:
    assert render("a }} b {{event.v}} c", event={"v": "\r\n{{x}}"}) == "a }} b \r\n{{x}} c"


def test_unusual_values_are_rendered_or_refused_cleanly() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    class Broken:
        def __str__(self) -> str:
            raise ValueError("no text")

    assert render("{{event.v}}", event={"v": Odd()}) == "odd"
    assert render('{"a": {{event.v}}}', JSON, event={"v": Odd()}) == '{"a": "odd"}'
    with pytest.raises(RenderError) as info:
        render("x{{event.v}}", event={"v": Broken()})
    assert info.value.field == "f"
    assert "{{event.v}}" in info.value.detail


# -- URL and FORM ---------------------------------------------------------------------------


def test_url_mode_percent_encodes_values_once() -> None:
    source = "https://api.example.com/u/{{state.id}}?next={{event.link|smr_encode}}&n={{event.n}}#{{event.f}}"
    event = {"link": "https://x.y/?a=1&b=2", "n": "a b/c?d", "f": "é"}
    assert render(source, URL, state={"id": "u 1"}, event=event) == (
        "https://api.example.com/u/u%201?next=https%3A%2F%2Fx.y%2F%3Fa%3D1%26b%3D2"
        "&n=a%20b%2Fc%3Fd#%C3%A9"
    )


def test_url_scheme_is_case_insensitive() -> None:
    assert render("HTTP://h/{{event.a}}", URL, event={"a": "?"}) == "HTTP://h/%3F"


@pytest.mark.parametrize(
    ("source", "message", "column"),
    [
        ("ftp://example.com/", "must start with http:// or https://", 1),
        ("{{event.url}}", "must start with http:// or https://", 1),
        ("example.com/{{event.a}}", "must start with http:// or https://", 1),
        ("https://{{event.host}}/x", "not in its scheme or host", 9),
        ("https://api.{{event.env}}.com/x", "not in its scheme or host", 13),
        ("https://example.com:{{event.port}}/x", "not in its scheme or host", 21),
        ("https://{{event.user}}@example.com/", "not in its scheme or host", 9),
        ("http://example.com{{event.path}}", "not in its scheme or host", 19),
        ("https:///path", "has no host", 9),
        ("https://", "has no host", 9),
        ("https://example.com/a b", "whitespace or control", 22),
        ("https://example.com/a\tb", "whitespace or control", 22),
        ("https://example.com/{{event.a}}\n", "whitespace or control", 32),
        ("https://example.com/\x7f", "whitespace or control", 21),
    ],
)
def test_url_errors(source: str, message: str, column: int) -> None:
    err = error(source, URL)
    assert message in err.detail
    assert (err.line, err.column) == (1, column)


def test_form_mode_uses_quote_plus_except_after_smr_encode() -> None:
    source = "name={{event.name}}&link={{event.link|smr_encode}}&n={{event.n}}"
    event = {"name": "Ann & Bob=1", "link": "a b", "n": 3}
    assert render(source, FORM, event=event) == "name=Ann+%26+Bob%3D1&link=a%20b&n=3"


# -- JSON: rendering ------------------------------------------------------------------------

SMARTICO_EXAMPLE = """{"saw_template_id": "{{event.saw_template_id}}",
 "minigame_spins_count": "{{event.minigame_spins_count}}",
 "smartico_user_id": "{{state.user_id}}",
 "user_ext_id": "{{state.user_ext_id}}",
 "brand": "{{state.core_sm_brand_id}}"}"""


def test_the_originals_example_body() -> None:
    event = {"saw_template_id": 12, "minigame_spins_count": 3}
    state = {"user_id": 77, "user_ext_id": "u-1", "core_sm_brand_id": 5}
    text = render(SMARTICO_EXAMPLE, JSON, event=event, state=state)
    assert orjson.loads(text) == {
        "saw_template_id": "12",
        "minigame_spins_count": "3",
        "smartico_user_id": "77",
        "user_ext_id": "u-1",
        "brand": "5",
    }
    assert text.startswith('{"saw_template_id": "12",\n "minigame')  # literals kept as written


def test_whole_value_tags_render_typed() -> None:
    source = (
        '{"n": {{event.n}}, "ok": {{event.ok}}, "meta": {{event.meta}}, "gone": {{event.nope}},'
        ' "d": {{event.nope|7}}, "name": "{{state.name|my friend}}"}'
    )
    event = {"n": 5, "ok": True, "meta": {"a": [1, 2.5, None]}}
    assert render_json(source, event=event, state={}) == {
        "n": 5,
        "ok": True,
        "meta": {"a": [1, 2.5, None]},
        "gone": None,
        "d": 7,
        "name": "my friend",
    }


def test_hostile_strings_stay_valid_json() -> None:
    level = 'Lvl "5" \\ new\nline'
    source = '{"level": "{{state.ach_level_current}}", "raw": {{state.ach_level_current}}}'
    text = render(source, JSON, state={"ach_level_current": level})
    assert orjson.loads(text) == {"level": level, "raw": level}
    for nasty in ['"}', "\\", "\x00\x1f\x7f", "}}{{", "😀\u2028", "</script>"]:
        assert render_json('["a{{event.v}}b"]', event={"v": nasty}) == [f"a{nasty}b"]


def test_a_megabyte_string_value() -> None:
    big = 'x"\\' * 350_000
    assert render_json('{"a": "{{event.v}}", "b": {{event.v}}}', event={"v": big}) == {
        "a": big,
        "b": big,
    }


def test_tags_in_keys_and_whole_document() -> None:
    source = '{"id_{{event.id}}": "{{event.v}}-{{event.w}}", "{{event.k}}": 1}'
    event = {"id": 'a"b', "v": 1, "w": [1], "k": "k"}
    assert render_json(source, event=event) == {'id_a"b': "1-[1]", "k": 1}
    assert render_json("{{event.meta}}", event={"meta": {"x": [1]}}) == {"x": [1]}
    assert render_json("  {{event.nope}}\n") is None


def test_array_items_and_nesting() -> None:
    source = '[{{event.a}}, 1, "{{event.a}}", [{{event.b}}], {"c": {"d": {{event.a}}}}]'
    assert render_json(source, event={"a": 2, "b": "x"}) == [2, 1, "2", ["x"], {"c": {"d": 2}}]
    assert render('{"a":{"b":{{event.a}}}}', JSON, event={"a": 1}) == '{"a":{"b":1}}'


def test_whitespace_of_literals_is_kept() -> None:
    source = '{\n\t"a" :  {{event.a}} ,\r\n "b":"{{event.b}}"  }\n'
    assert render(source, JSON, event={"a": 1, "b": "x"}) == '{\n\t"a" :  1 ,\r\n "b":"x"  }\n'


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        ("{{event.nope|7}}", 7),
        ("{{event.empty|true}}", True),
        ('{{event.none|[1, {"a": null}]}}', [1, {"a": None}]),
        ('{{event.nope|"quoted"}}', "quoted"),
        ("{{event.nope|my friend}}", "my friend"),
        ("{{event.nope|}}", ""),
        ("{{event.empty}}", ""),
        ("{{event.none}}", None),
        ("{{event.nope}}", None),
        ("{{event.big}}", str(2**70)),
        ("{{event.n|json}}", 3),
        ("{{event.s|smr_encode}}", "a%20b"),
        ("{{event.s|smr_encode|json}}", "a%20b"),
        ("{{event.s|json|smr_encode}}", "%22a%20b%22"),
        ("{{event.nope|1 2|smr_encode}}", "1%202"),
    ],
)
def test_value_position_fallbacks_and_filters(tag: str, value: Any) -> None:
    event = {"empty": "", "none": None, "big": 2**70, "n": 3, "s": "a b"}
    assert orjson.loads(render('{"v": ' + tag + "}", JSON, event=event)) == {"v": value}


def test_a_json_fallback_is_inserted_as_written() -> None:
    source = '{"v": {{event.nope| 123456789012345678901234567890 }}}'
    assert render(source, JSON) == '{"v": 123456789012345678901234567890}'


def test_filters_inside_json_strings() -> None:
    event = {"s": 'a "b"', "n": 3}
    source = (
        '["{{event.s|json}}", "{{event.s|smr_encode}}", "{{event.n|json}}", "{{event.nope|json}}"]'
    )
    assert render_json(source, event=event) == ['"a \\"b\\""', "a%20%22b%22", "3", "null"]


def test_lone_surrogates_in_values_are_replaced() -> None:
    assert render_json('["{{event.v}}", {{event.v}}]', event={"v": "a\ud800"}) == ["a?", "a?"]


# -- JSON: errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message", "line", "column"),
    [
        ("", "the JSON document is empty", 1, 1),
        ("  \n ", "the JSON document is empty", 2, 2),
        ('{"a": 1\n "b": 2}', "expected ',' or '}' after an object member", 2, 2),
        ("[1\n 2]", "expected ',' or ']' after an array item", 2, 2),
        ('{"a" 1}', "expected ':' after an object key", 1, 6),
        ("{\n  {{event.k}}: 1}", "a tag cannot be an object key", 2, 3),
        ("{1: 2}", "expected an object key", 1, 2),
        ('{"a": 1,}', "expected an object key", 1, 9),
        ("[1,\n]", "trailing commas are not allowed", 2, 1),
        ('{"a": 1{{event.a}}}', "must stand alone", 1, 8),
        ("[{{event.a}}{{event.b}}]", "must stand alone", 1, 13),
        ('["x"{{event.a}}]', "must stand alone", 1, 5),
        ("[{{event.a}}1]", "expected ',' or ']'", 1, 13),
        ('{"a": 1} x', "unexpected text after the JSON document", 1, 10),
        ('{"a": 1}}', "unexpected text after the JSON document", 1, 9),
        ("{{event.a}} {{event.b}}", "must stand alone", 1, 13),
        ('{"a": "abc}', "unterminated string", 1, 7),
        ('{"a":\n "x{{event.a}}', "unterminated string", 2, 2),
        ('{"a": "x\\q"}', "invalid escape", 1, 9),
        ('{"a": "\\u12"}', "invalid escape", 1, 8),
        ('"\\{{event.a}}"', "invalid escape", 1, 2),
        ('"\\ud800"', "high surrogate", 1, 2),
        ('"\\udc00"', "low surrogate", 1, 2),
        ('"\\ud800\\u0041"', "high surrogate", 1, 2),
        ('{"a": "line\nbreak"}', "control character", 1, 12),
        ('["\t"]', "control character", 1, 3),
        ('{"a": 1', "'{' is never closed", 1, 1),
        ("[\n  [1, 2]", "'[' is never closed", 1, 1),
        ('{"a": ', "expected a JSON value", 1, 7),
        ("[01]", "invalid number", 1, 2),
        ("[1.]", "invalid number", 1, 2),
        ("[-]", "invalid number", 1, 2),
        ("[.5]", "expected a JSON value", 1, 2),
        ("[1e999]", "too large", 1, 2),
        ("[tru]", "expected a JSON value", 1, 2),
        ("[NaN]", "expected a JSON value", 1, 2),
        ("\ufeff{}", "expected a JSON value", 1, 1),
        ("[" * 300 + "]" * 300, "nests deeper", 1, 257),
        ('{"a": {{event.a}}\n', "'{' is never closed", 1, 1),
        ('{"x": 1,\n "a": {{event.a|x|y}}}', "at most one", 2, 7),
    ],
)
def test_json_errors(source: str, message: str, line: int, column: int) -> None:
    err = error(source, JSON)
    assert message in err.detail, err.detail
    assert (err.line, err.column) == (line, column)
    assert f"(line {line}, column {column})" in str(err)


def test_json_accepts_what_json_allows() -> None:
    for source in [
        '"a{b}c"',
        "[-0.5e+3, 0, 1E2, true, false, null]",
        '"\\ud83d\\ude00\\n\\/"',
        "{}",
        "[ ]",
    ]:
        template = compile_template(source, JSON, field="f")
        assert orjson.loads(template.render({})) == orjson.loads(source)
    assert compile_template("[" * 256 + "]" * 256, JSON, field="f").is_static


def test_template_type() -> None:
    assert isinstance(compile_template("x", TEXT, field="f"), Template)
    assert TemplateMode("json") is JSON
    assert JSON == "json"


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ('"{{event.y|smr_encod}}"', "did you mean the filter 'smr_encode'?"),
        ('"{{event.y|jsn}}"', "did you mean the filter 'json'?"),
        ('"{{state.x|upper}}"', "'upper' is used as fallback text, not as a filter"),
        ('{"a": {{ event.y | url_encode }}}', "did you mean the filter 'smr_encode'?"),
    ],
)
def test_a_fallback_that_looks_like_a_filter_is_valid_but_warned(source: str, says: str) -> None:
    template = compile_template(source, TemplateMode.JSON, field="body")
    (warning,) = template.warnings
    assert says in warning and "line 1, column" in warning
    # Still the original's syntax: the text is the fallback for an empty value.
    fallback = template.tags[0].fallback
    assert fallback is not None and fallback in template.render({"event": {}, "state": {}})


@pytest.mark.parametrize(
    "source",
    [
        '"{{state.first|my friend}}"',
        '"{{state.first|friend}}"',
        '"{{state.first|Upper}}"',
        '"{{event.link|smr_encode}}"',
        "{{event.meta|json}}",
        '"{{state.n|0}}"',
    ],
)
def test_ordinary_fallbacks_and_real_filters_carry_no_warning(source: str) -> None:
    assert compile_template(source, TemplateMode.JSON, field="body").warnings == ()
