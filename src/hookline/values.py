"""The JSON values hookline accepts: the limits every free-form input shares.

Event payloads, state patches, condition values, bodies given as JSON and sample data are
free-form JSON. hookline keeps them exactly and sends them as they are, so it accepts only
what it can keep and send exactly:

- numbers are finite: no ``NaN`` or ``Infinity`` (JSON has neither; JSON encoders write them
  as ``null``, which would silently change the value);
- integers fit in 64 bits, from -2**63 to 2**64 - 1 (what orjson reads and writes exactly; a
  larger one would turn into an approximate float);
- strings and keys are valid Unicode: no lone surrogates (``"\\ud800"``), which cannot be sent
  as UTF-8;
- objects and arrays nest at most :data:`MAX_DEPTH` levels, the outermost counting as one.

Errors name the field, as a path from the field given by the caller (``[3].payload.n``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from hookline.errors import InvalidInput

MAX_DEPTH: Final = 64
MIN_INT: Final = -(2**63)
MAX_INT: Final = 2**64 - 1
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def check_depth(value: Any, field: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse objects and arrays nested deeper than ``max_depth`` (the hot path's check).

    Only the nesting is checked: use it on values whose numbers and strings are already known
    to be good, such as what :func:`hookline.api._json.parse_json` returns.
    """
    if (type(value) is dict or type(value) is list) and _too_deep(value, max_depth - 1):
        raise InvalidInput(_deep_message(max_depth), field=field)


def _too_deep(container: dict[str, Any] | list[Any], room: int) -> bool:
    """Whether ``container`` holds containers more than ``room`` levels below it."""
    for item in container.values() if isinstance(container, dict) else container:
        kind = type(item)
        if (kind is dict or kind is list) and (room == 0 or _too_deep(item, room - 1)):
            return True
    return False


def check_json(value: Any, field: str, max_depth: int | None = MAX_DEPTH) -> None:
    """Refuse what is not a JSON value hookline keeps exactly; the error names its path.

    Checks everything :func:`check_depth` does, and numbers, strings, keys and types too, for
    values from any source (Python's JSON parser, YAML, code). ``max_depth=None`` checks
    everything but the nesting.
    """
    # An explicit stack: the value may nest deeper than Python's recursion limit allows.
    stack: list[tuple[Any, str, int]] = [(value, field, 1)]
    while stack:
        item, path, depth = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, int):
            if not MIN_INT <= item <= MAX_INT:
                raise InvalidInput(
                    "integers must fit in 64 bits (-2**63 to 2**64-1); send a larger number "
                    "as a string",
                    field=path,
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput(
                    "NaN and Infinity are not JSON numbers; send a finite number or null",
                    field=path,
                )
        elif isinstance(item, Mapping | list | tuple):
            if max_depth is not None and depth > max_depth:
                raise InvalidInput(_deep_message(max_depth), field=field)
            children: list[tuple[Any, str, int]] = []
            if isinstance(item, Mapping):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise InvalidInput(
                            f"object keys must be strings, got {key!r}", field=path or field
                        )
                    where = f"{path}.{key}" if path else key
                    _check_text(key, where)
                    children.append((child, where, depth + 1))
            else:
                children = [(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item)]
            stack.extend(reversed(children))  # the first problem in document order is reported
        else:
            raise InvalidInput(f"{type(item).__name__} is not a JSON value", field=path or field)


def _check_text(text: str, path: str) -> None:
    if not text.isascii() and _SURROGATE.search(text):
        raise InvalidInput(
            "the text holds a lone surrogate (such as \\ud800), which is not valid Unicode",
            # The path may end in the bad key itself: written escaped, the answer stays UTF-8.
            field=path.encode("utf-8", "backslashreplace").decode(),
        )


def _deep_message(max_depth: int) -> str:
    return f"objects and arrays nest deeper than {max_depth} levels; flatten the data"


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values: numbers numerically (``0`` is ``0.0``), but never a bool a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(type(a) is type(b) and a == b)
