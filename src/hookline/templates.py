"""Tag syntax and context-aware rendering of webhook templates (pure, no I/O).

Tags follow the Smartico syntax: ``{{state.path}}`` and ``{{event.path}}``, with an optional
fallback text and filters after ``|`` (``{{state.first_name|my friend}}``,
``{{event.link|smr_encode}}``). A template is compiled once into a render plan: the literal
text plus one small function per tag, chosen by the mode and, in JSON, by where the tag stands
(inside a string, or as a whole value). Rendering is then lookups and a join, and a JSON
template renders valid JSON whatever the data holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, Final, NoReturn
from urllib.parse import quote, quote_plus

import orjson

from hookline.errors import RenderError, TemplateError, closest


class TemplateMode(StrEnum):
    """How tag values are written into the text around them."""

    JSON = "json"  # a JSON document (application/json or +json)
    FORM = "form"  # application/x-www-form-urlencoded: values quote_plus-encoded
    TEXT = "text"  # plain text, header and query values: inserted as is (the caller encodes)
    URL = "url"  # a URL: values percent-encoded with quote(safe="")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[object] = _Missing()
SCOPES: Final = frozenset({"state", "event"})
# Journey steps see more: the event that last moved the instance, and the journey itself.
JOURNEY_SCOPES: Final = frozenset({"state", "event", "last_event", "journey"})
FILTERS: Final = frozenset({"smr_encode", "json"})

# Filters of other template languages: after '|' hookline reads them as fallback text.
_FOREIGN_FILTERS: Final = frozenset(
    {
        "upper", "lower", "capitalize", "title", "trim", "strip", "default", "escape", "e",
        "url_encode", "urlencode", "url_escape", "escape_uri", "uri_escape", "tojson",
        "to_json", "base64", "base64_encode", "date", "round", "abs", "length", "size",
        "first", "last", "raw", "safe", "string", "int", "float",
    }
)  # fmt: skip
_FILTER_LIKE: Final = re.compile(r"[a-z][a-z0-9_]*")

Renderer = Callable[[Mapping[str, Any]], str]
Fail = Callable[[str, int], NoReturn]

_SEGMENT: Final = re.compile(r"[A-Za-z0-9_\-]+")
_URL_FORBIDDEN: Final = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_URL_HOST_END: Final = re.compile(r"[/?#]")
_URL_TAG_IN_HOST: Final = (
    "tags may appear in the path and query of a URL, not in its scheme or host"
)
_JSON_WS: Final = re.compile(r"[ \t\n\r]*")
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_JSON_STRING_RUN: Final = re.compile(r'[^"\\{\x00-\x1f]*')
_JSON_HEX4: Final = re.compile(r"[0-9A-Fa-f]{4}")
_JSON_LOW_SURROGATE: Final = re.compile(r"\\u[dD][c-fC-F][0-9A-Fa-f]{2}")
_JSON_NUMBER_TAIL: Final = frozenset(".eE0123456789")
# orjson refuses documents nested deeper than 1024; a capped template plus a value that orjson
# itself could dump (254 levels) always stays below that.
_MAX_JSON_DEPTH: Final = 256


@dataclass(frozen=True, slots=True)
class Tag:
    """One ``{{scope.path|fallback|filter}}`` tag, with where it starts in the source (1-based)."""

    scope: str
    path: tuple[str, ...]
    fallback: str | None
    filters: tuple[str, ...]
    line: int
    column: int
    source: str


class _Slot(Enum):
    """Where a tag stands, which decides how its value is written."""

    TEXT = "text"
    URL = "url"
    FORM = "form"
    JSON_STRING = "json_string"
    JSON_VALUE = "json_value"


class Template:
    """A compiled template: rendering it is lookups and a join."""

    __slots__ = ("_parts", "_slots", "field", "mode", "source", "tags")

    def __init__(
        self,
        source: str,
        mode: TemplateMode,
        field: str,
        parts: list[str],
        slots: tuple[tuple[int, Renderer, Tag], ...],
    ) -> None:
        self.source = source
        self.mode = mode
        self.field = field
        self.tags: tuple[Tag, ...] = tuple(tag for _, _, tag in slots)
        self._parts = parts
        self._slots = slots

    @property
    def warnings(self) -> tuple[str, ...]:
        """What looks wrong but renders: a fallback text that looks like a filter's name.

        Worked out from the tags when asked (on a save or a preview), never when rendering.
        """
        return tuple(warning for tag in self.tags if (warning := fallback_warning(tag)))

    @property
    def is_static(self) -> bool:
        """True when the template has no tags (it always renders its source)."""
        return not self._slots

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with ``context = {"state": {...}, "event": {...}}``."""
        if not self._slots:
            return self.source
        parts = self._parts.copy()
        for index, render_tag, tag in self._slots:
            try:
                parts[index] = render_tag(context)
            except (TypeError, ValueError, AttributeError, LookupError) as exc:
                # Only odd, non-JSON context values get here; report the tag, not a traceback.
                detail = f"{tag.source} could not be rendered: {exc}"
                raise RenderError(detail, field=self.field) from exc
        return "".join(parts)

    def __repr__(self) -> str:
        return f"Template(mode={self.mode.value!r}, source={self.source[:60]!r})"


def lookup(context: Mapping[str, Any], scope: str, path: tuple[str, ...]) -> Any:
    """The value at ``scope.path`` in context, or MISSING; digit segments index lists."""
    node: Any = context.get(scope, MISSING)
    for key in path:
        if type(node) is dict or isinstance(node, Mapping):  # the exact check is the fast one
            node = node.get(key, MISSING)
        elif isinstance(node, (list, tuple)) and key.isascii() and key.isdigit() and len(key) < 19:
            index = int(key)
            node = node[index] if index < len(node) else MISSING
        else:
            return MISSING
    return node


def compile_template(
    source: str, mode: TemplateMode, *, field: str, scopes: frozenset[str] = SCOPES
) -> Template:
    """Parse and check a template once; TemplateError (with line and column) if it is invalid.

    ``scopes`` are the names a tag may start with (rules: ``state`` and ``event``); they are
    only checked here, so rendering costs the same whatever they are.
    """

    def fail(detail: str, index: int) -> NoReturn:
        line, column = _position(source, index)
        raise TemplateError(detail, field=field, line=line, column=column)

    try:
        source.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Requests are sent as UTF-8; a lone surrogate would fail every delivery later.
        fail("the template contains an unpaired surrogate character", exc.start)
    segments = _scan(source, fail, scopes)
    if mode is TemplateMode.JSON:
        slots = _JsonChecker(source, segments, fail).check()
    else:
        if mode is TemplateMode.URL:
            _check_url(source, segments, fail)
        slot = _Slot(mode.value)  # outside JSON, the mode alone decides
        slots = {start: slot for start, _, tag in segments if tag is not None}
    parts: list[str] = []
    plan: list[tuple[int, Renderer, Tag]] = []
    for start, end, tag in segments:
        if tag is None:
            parts.append(source[start:end])
        else:
            plan.append((len(parts), _renderer(tag, slots[start]), tag))
            parts.append("")
    return Template(source, mode, field, parts, tuple(plan))


def _scan(source: str, fail: Fail, scopes: frozenset[str]) -> list[tuple[int, int, Tag | None]]:
    """Split the source into literal runs and tags: (start, end, tag or None)."""
    segments: list[tuple[int, int, Tag | None]] = []
    pos = 0
    while (start := source.find("{{", pos)) >= 0:
        close = source.find("}}", start + 2)
        if close < 0:
            fail("a tag opened with '{{' is not closed with '}}'", start)
        if start > pos:
            segments.append((pos, start, None))
        pos = close + 2
        segments.append((start, pos, _parse_tag(source, start, pos, fail, scopes)))
    if pos < len(source):
        segments.append((pos, len(source), None))
    return segments


def _parse_tag(source: str, start: int, end: int, fail: Fail, scopes: frozenset[str]) -> Tag:
    text = source[start:end]
    shown = text if len(text) <= 60 else text[:57] + "..."
    path_text, *options = text[2:-2].split("|")
    scope, *path = path_text.strip().split(".")
    if scope not in scopes:
        fail(f"a tag must start with {_scope_list(scopes)}, not {scope!r}: {shown}", start)
    if not path:
        fail(f"{shown} names no property; write {{{{{scope}.name}}}}", start)
    for segment in path:
        if not segment:
            fail(f"empty path segment in {shown}", start)
        if not _SEGMENT.fullmatch(segment):
            fail(f"path segment {segment!r} in {shown} may only use A-Z a-z 0-9 _ -", start)
    fallback: str | None = None
    filters: list[str] = []
    for option in options:
        option = option.strip()
        if option in FILTERS:
            filters.append(option)
        elif fallback is not None:
            fail(f"{shown} has two fallback texts; a tag takes at most one", start)
        else:
            fallback = option
    return Tag(scope, tuple(path), fallback, tuple(filters), *_position(source, start), text)


def _scope_list(scopes: frozenset[str]) -> str:
    """``'state.' or 'event.'`` (rules), longer for journeys; for messages."""
    names = [f"'{name}.'" for name in ("state", "event") if name in scopes]
    names += [f"'{name}.'" for name in sorted(scopes - {"state", "event"})]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def fallback_warning(tag: Tag) -> str | None:
    """A warning when the tag's fallback text looks like a misspelt or foreign filter.

    The original's fallback syntax allows any text, so ``{{event.y|smr_encod}}`` is valid:
    it renders the text "smr_encod" for an empty value. Valid, but rarely what was meant.
    """
    text = tag.fallback
    if text is None or not _FILTER_LIKE.fullmatch(text):
        return None
    where = f"{tag.source} (line {tag.line}, column {tag.column})"
    meant = closest(text, FILTERS)
    if meant is not None:
        return f"{where}: {text!r} is used as fallback text; did you mean the filter {meant!r}?"
    if text in _FOREIGN_FILTERS:
        filters = " and ".join(sorted(FILTERS))
        return (
            f"{where}: {text!r} is used as fallback text, not as a filter; "
            f"the filters are {filters}"
        )
    return None


def _position(source: str, index: int) -> tuple[int, int]:
    """1-based line and column of index."""
    return source.count("\n", 0, index) + 1, index - source.rfind("\n", 0, index)


def _check_url(source: str, segments: list[tuple[int, int, Tag | None]], fail: Fail) -> None:
    """A literal http(s) scheme and host; tags only in the path, query and fragment."""
    head = source[:8].lower()
    host_start = 7 if head.startswith("http://") else 8 if head.startswith("https://") else -1
    if host_start < 0:
        fail("a URL must start with http:// or https://", 0)
    host_end: int | None = None
    for start, end, tag in segments:
        if tag is not None:
            if host_end is None:
                fail(_URL_TAG_IN_HOST, start)
            continue
        if bad := _URL_FORBIDDEN.search(source, start, end):
            fail(f"a URL cannot contain whitespace or control characters ({bad[0]!r})", bad.start())
        if host_end is None and (
            found := _URL_HOST_END.search(source, max(start, host_start), end)
        ):
            host_end = found.start()
    if (len(source) if host_end is None else host_end) == host_start:
        fail("the URL has no host", host_start)


class _JsonChecker:
    """A JSON grammar check in which a tag is a token; records where each tag stands."""

    def __init__(self, source: str, segments: list[tuple[int, int, Tag | None]], fail: Fail):
        self.src = source
        self.tag_end = {start: end for start, end, tag in segments if tag is not None}
        self.fail = fail
        self.slots: dict[int, _Slot] = {}

    def check(self) -> dict[int, _Slot]:
        src, n, fail = self.src, len(self.src), self.fail
        i = self._ws(0)
        if i == n:
            fail("the JSON document is empty", i)
        stack: list[int] = []  # positions of the open '{' and '['
        expect_value = True
        while True:
            i = self._ws(i)
            if expect_value:
                i, opened = self._value(i, stack)
                if opened == "{":
                    i = self._key(self._ws(i))
                # An opened container wants a value (after a key for objects); else it is done.
                expect_value = bool(opened)
                continue
            if not stack:
                if i < n:
                    self._after_value_error(i, "unexpected text after the JSON document")
                return self.slots
            opener = src[stack[-1]]
            closer, what = ("}", "an object member") if opener == "{" else ("]", "an array item")
            if i == n:
                fail(f"'{opener}' is never closed", stack[-1])
            if src[i] == ",":
                i += 1
                if opener == "{":
                    i = self._key(self._ws(i))
                expect_value = True
            elif src[i] == closer:
                stack.pop()
                i += 1
            else:
                self._after_value_error(i, f"expected ',' or '{closer}' after {what}")

    def _ws(self, i: int) -> int:
        match = _JSON_WS.match(self.src, i)
        return match.end() if match else i

    def _after_value_error(self, i: int, detail: str) -> NoReturn:
        if i in self.tag_end:
            detail = "a tag must stand alone as a JSON value or sit inside a string"
        self.fail(detail, i)

    def _value(self, i: int, stack: list[int]) -> tuple[int, str]:
        """Check one value at i: (index after it, '{' or '[' if it opened a container, else '')."""
        src, fail = self.src, self.fail
        if i == len(src):
            fail("expected a JSON value", i)
        char = src[i]
        if i in self.tag_end:
            self.slots[i] = _Slot.JSON_VALUE
            return self.tag_end[i], ""
        if char == '"':
            return self._string(i), ""
        if char in "{[":
            if len(stack) >= _MAX_JSON_DEPTH:
                fail(f"the JSON document nests deeper than {_MAX_JSON_DEPTH} levels", i)
            closed = self._ws(i + 1)
            if closed < len(src) and src[closed] == ("}" if char == "{" else "]"):
                return closed + 1, ""  # an empty container is a complete value
            stack.append(i)
            return i + 1, char
        if char in "-0123456789":
            number = _JSON_NUMBER.match(src, i)
            if not number or src[number.end() : number.end() + 1] in _JSON_NUMBER_TAIL:
                fail("invalid number", i)
            if math.isinf(float(number[0])):
                fail("number is too large for JSON parsers", i)
            return number.end(), ""
        for word in ("true", "false", "null"):
            if src.startswith(word, i):
                return i + len(word), ""
        hint = " (trailing commas are not allowed)" if char in "]}" else ""
        fail(f"expected a JSON value{hint}", i)

    def _key(self, i: int) -> int:
        """Check an object key and its ':' at i; return the index after the ':'."""
        src, fail = self.src, self.fail
        if i in self.tag_end:
            fail('a tag cannot be an object key; put it inside quotes ("{{...}}")', i)
        if i == len(src) or src[i] != '"':
            fail("expected an object key (a string in double quotes)", i)
        i = self._ws(self._string(i))
        if i == len(src) or src[i] != ":":
            fail("expected ':' after an object key", i)
        return i + 1

    def _string(self, opening: int) -> int:
        """Check a string starting at its quote; tags inside are string fragments."""
        src, fail, n = self.src, self.fail, len(self.src)
        i = opening + 1
        while True:
            run = _JSON_STRING_RUN.match(src, i)
            i = run.end() if run else i
            if i >= n:
                fail("unterminated string", opening)
            char = src[i]
            if char == '"':
                return i + 1
            if char == "{":
                if i in self.tag_end:
                    self.slots[i] = _Slot.JSON_STRING
                    i = self.tag_end[i]
                else:
                    i += 1
            elif char == "\\":
                i = self._escape(i)
            else:
                fail("a control character in a string must be escaped (e.g. \\n, \\u0000)", i)

    def _escape(self, i: int) -> int:
        """Check the escape at i (a backslash); return the index after it."""
        src = self.src
        char = src[i + 1 : i + 2]
        if char and char in '"\\/bfnrt':
            return i + 2
        if char != "u" or not _JSON_HEX4.match(src, i + 2):
            self.fail(f"invalid escape {src[i : i + 2]!r} in a string", i)
        code = int(src[i + 2 : i + 6], 16)
        if 0xDC00 <= code <= 0xDFFF:
            self.fail("a \\u escape of a low surrogate must follow a high one", i)
        if 0xD800 <= code <= 0xDBFF:
            # JSON parsers (orjson among them) refuse a high surrogate without its low pair.
            if not _JSON_LOW_SURROGATE.match(src, i + 6):
                self.fail("a \\u escape of a high surrogate must be followed by a low one", i)
            return i + 12
        return i + 6


def _renderer(tag: Tag, slot: _Slot) -> Renderer:
    """The function that writes one tag's value for its mode and position."""
    scope, path, fallback, filters = tag.scope, tag.path, tag.fallback, tag.filters
    fallback_literal = _fallback_literal(fallback) if fallback is not None else "null"

    def text_of(context: Mapping[str, Any]) -> str:
        value = lookup(context, scope, path)
        if fallback is not None and _is_empty(value):
            return fallback
        return _text_of(value)

    def literal_of(context: Mapping[str, Any]) -> str:
        value = lookup(context, scope, path)
        if fallback is not None and _is_empty(value):
            return fallback_literal
        return _literal(value)

    produce: Renderer = literal_of if slot is _Slot.JSON_VALUE else text_of
    if filters:
        # The json filter starts from the typed value; smr_encode and later filters from text.
        first = literal_of if filters[0] == "json" else _then(text_of, _url_encode)
        produce = _chain(first, tuple(_TEXT_FILTERS[name] for name in filters[1:]))

    last = filters[-1] if filters else None
    finish: Callable[[str], str] | None = None
    if slot is _Slot.URL and last != "smr_encode":
        finish = _url_encode  # never encode twice what smr_encode already encoded
    elif slot is _Slot.FORM and last != "smr_encode":
        finish = _form_encode
    elif slot is _Slot.JSON_STRING:
        finish = _json_escape
    elif slot is _Slot.JSON_VALUE and last not in (None, "json"):
        finish = _json_string  # the text of a filter other than json is a string value
    return produce if finish is None else _then(produce, finish)


def _chain(first: Renderer, rest: tuple[Callable[[str], str], ...]) -> Renderer:
    def render(context: Mapping[str, Any]) -> str:
        text = first(context)
        for apply in rest:
            text = apply(text)
        return text

    return render


def _then(produce: Renderer, finish: Callable[[str], str]) -> Renderer:
    def render(context: Mapping[str, Any]) -> str:
        return finish(produce(context))

    return render


def _is_empty(value: Any) -> bool:
    return value is MISSING or value is None or (isinstance(value, str) and not value)


def _text_of(value: Any) -> str:
    """A value as text: strings as is, JSON text for numbers, booleans, lists and objects."""
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)  # same digits as JSON, without the encoder round trip
    if value is None or value is MISSING:
        return ""
    if isinstance(value, str) or not isinstance(value, (int, float, Mapping, list, tuple)):
        return str(value)
    try:
        return orjson.dumps(value).decode()  # bools too: "true" / "false"
    except orjson.JSONEncodeError:
        return str(value)  # e.g. an int beyond 64 bits: its digits are still right


def _literal(value: Any) -> str:
    """A value as a typed JSON literal; what orjson cannot write becomes its text, as a string."""
    if value is MISSING:
        return "null"
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return _json_string(str(value))


def _fallback_literal(fallback: str) -> str:
    """A fallback that is JSON (``7``, ``true``, ``[]``) is that literal, else a string."""
    try:
        orjson.loads(fallback)
    except orjson.JSONDecodeError:
        return _json_string(fallback)
    return fallback  # as written: orjson would turn a huge integer into a float


def _json_string(text: str) -> str:
    try:
        return orjson.dumps(text).decode()
    except orjson.JSONEncodeError:
        # Lone surrogates cannot be UTF-8; replace them rather than fail the delivery.
        return orjson.dumps(text.encode("utf-8", "replace").decode()).decode()


def _json_escape(text: str) -> str:
    try:
        return orjson.dumps(text)[1:-1].decode()
    except orjson.JSONEncodeError:
        return _json_string(text)[1:-1]


def _url_encode(text: str) -> str:
    return quote(text, safe="", errors="replace")


def _form_encode(text: str) -> str:
    return quote_plus(text, safe="", errors="replace")


_TEXT_FILTERS: Final[Mapping[str, Callable[[str], str]]] = {
    "smr_encode": _url_encode,
    "json": _json_string,
}
