"""Property tests: whatever the data holds, rendered output stays valid and round-trips."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from hypothesis import given
from hypothesis import strategies as st

from hookline.errors import TemplateError
from hookline.templates import TemplateMode, compile_template

NASTY = ['"', "\\", "\\u", "}}", "{{", "{", "}", "\x00", "\n", "\r", "\x1f", "\x7f", "\u2028", "😀"]
texts = st.one_of(st.text(), st.sampled_from(NASTY), st.lists(st.sampled_from(NASTY)).map("".join))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what JSON libraries hold exactly
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
spaces = st.sampled_from(["", " ", "\n  ", "\t"])


def text_of(value: Any) -> str:
    """The documented text of a value, written independently of the module."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode()


def json_literal_text(text: str) -> str:
    """Literal text inside a JSON string; '{' escaped so the literal never opens a tag."""
    return orjson.dumps(text).decode()[1:-1].replace("{", "\\u007b")


@dataclass
class Placed:
    index: int
    kind: str  # "string", "value", "item" or "key"
    value: Any
    prefix: str
    suffix: str


@st.composite
def json_templates(draw: st.DrawFn) -> tuple[str, dict[str, Any], list[Placed]]:
    """A JSON template with tags in every position, and the context they read."""
    context: dict[str, Any] = {"state": {}, "event": {}}
    members: list[str] = []
    placed: list[Placed] = []
    for index in range(draw(st.integers(min_value=1, max_value=6))):
        scope = draw(st.sampled_from(["state", "event"]))
        value = draw(json_values)
        if draw(st.booleans()):  # reach it through a nested object and a list index
            context[scope][f"n{index}"] = {"inner": [value]}
            path = f"n{index}.inner.0"
        else:
            context[scope][f"v{index}"] = value
            path = f"v{index}"
        tag = "{{" + draw(spaces) + f"{scope}.{path}" + draw(spaces) + "}}"
        kind = draw(st.sampled_from(["string", "value", "item", "key"]))
        prefix, suffix = draw(texts), draw(texts)
        if kind == "key":
            prefix = f"k{index}:"  # keeps keys distinct whatever the values are
        placed.append(Placed(index, kind, value, prefix, suffix))
        inside = json_literal_text(prefix) + tag + json_literal_text(suffix)
        gap = draw(spaces)
        if kind == "string":
            members.append(f'"m{index}":{gap}"{inside}"')
        elif kind == "value":
            members.append(f'"m{index}":{gap}{tag}{gap}')
        elif kind == "item":
            members.append(f'"m{index}": [1,{gap}{tag},{gap}{{"x": {tag}}}]')
        else:
            members.append(f'"{inside}":{gap}{index}')
    source = "{" + draw(spaces) + ("," + draw(spaces)).join(members) + draw(spaces) + "}"
    return source, context, placed


@given(json_templates())
def test_rendered_json_parses_and_round_trips(
    case: tuple[str, dict[str, Any], list[Placed]],
) -> None:
    source, context, placed = case
    document = orjson.loads(
        compile_template(source, TemplateMode.JSON, field="body").render(context)
    )
    for p in placed:
        if p.kind == "string":
            assert document[f"m{p.index}"] == p.prefix + text_of(p.value) + p.suffix
        elif p.kind == "value":
            assert document[f"m{p.index}"] == p.value
        elif p.kind == "item":
            assert document[f"m{p.index}"] == [1, p.value, {"x": p.value}]
        else:
            (key,) = (k for k, v in document.items() if v == p.index and k.startswith(p.prefix))
            assert key == p.prefix + text_of(p.value) + p.suffix


@given(json_values)
def test_a_whole_document_tag_round_trips(value: Any) -> None:
    template = compile_template("{{event.v}}", TemplateMode.JSON, field="body")
    assert orjson.loads(template.render({"event": {"v": value}})) == value


UNRESERVED = r"(?:[A-Za-z0-9_.~-]|%[0-9A-F]{2})*"
URL_SHAPE = re.compile(
    rf"https://example\.com/p/(?P<a>{UNRESERVED})\?q=(?P<b>{UNRESERVED})&r=(?P<c>{UNRESERVED})"
)


@given(json_values, json_values, json_values)
def test_url_tag_parts_are_percent_encoded(a: Any, b: Any, c: Any) -> None:
    source = "https://example.com/p/{{event.a}}?q={{state.b}}&r={{event.c|smr_encode}}"
    template = compile_template(source, TemplateMode.URL, field="url")
    url = template.render({"event": {"a": a, "c": c}, "state": {"b": b}})
    match = URL_SHAPE.fullmatch(url)
    assert match, url
    assert [unquote(match[name]) for name in "abc"] == [text_of(a), text_of(b), text_of(c)]


@given(st.text(), st.sampled_from(TemplateMode))
def test_compile_raises_only_template_errors(source: str, mode: TemplateMode) -> None:
    try:
        template = compile_template(source, mode, field="f")
    except TemplateError as exc:
        err = exc
    else:
        template.render({})
        return
    assert err.line is not None
    assert err.column is not None
    assert 1 <= err.line <= source.count("\n") + 1


JSONISH = st.lists(
    st.sampled_from(
        [
            "{",
            "}",
            "[",
            "]",
            '"',
            ":",
            ",",
            " ",
            "\n",
            "\\",
            "u",
            "0",
            "1",
            "-",
            ".",
            "e",
            "true",
            "null",
            "\\u00e9",
            '\\"',
            "\\ud83d\\ude00",
            "x",
            "\t",
            "{{event.a}}",
            "{{state.b|x}}",
            "{{event.c|json}}",
            "{{event.a|smr_encode}}",
        ]
    ),
    max_size=30,
).map("".join)


@given(JSONISH, json_values, json_values)
def test_whatever_compiles_as_json_renders_json(source: str, a: Any, b: Any) -> None:
    try:
        template = compile_template(source, TemplateMode.JSON, field="body")
    except TemplateError:
        return
    orjson.loads(template.render({"event": {"a": a, "c": b}, "state": {"b": b}}))


@given(JSONISH.filter(lambda s: "{{" not in s))
def test_without_tags_the_checker_agrees_with_orjson(source: str) -> None:
    try:
        orjson.loads(source)
        parses = True
    except orjson.JSONDecodeError:
        parses = False
    try:
        compile_template(source, TemplateMode.JSON, field="body")
        compiles = True
    except TemplateError:
        compiles = False
    assert compiles == parses, source
