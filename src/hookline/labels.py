"""Labels: the names people give to rules, saved webhooks, journeys and API keys.

A label is printed where people read it: in the command line's tables (``hookline rules
list``, ``hookline keys list``), in ``apply`` reports and in log lines. So it is one line of
text that prints as it is written: letters of any script, digits, emoji, punctuation and
spaces, but none of

- the control characters (C0, DEL and C1: U+0000-U+001F, U+007F-U+009F): a line break
  printed in a table is a forged row, in a log a forged line, and ESC starts a sequence
  that rewrites the terminal;
- U+2028 and U+2029, the line and paragraph separators, line breaks to some readers;
- the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), which show
  text in another order than it is stored (a name that reads as another one);
- lone surrogates, which are not Unicode text and cannot be stored as UTF-8.

Labels stored by an older hookline may hold them: they still load and work (a name decides
nothing), and :func:`printable` shows them escaped.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from hookline.errors import InvalidInput

_NOT_IN_LABEL: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
# unicodedata has no names for the control characters: those people meet, by their role.
_CONTROL_NAMES: Final = {
    "\x00": "NUL",
    "\t": "tab",
    "\n": "line break",
    "\r": "carriage return, a line break",
    "\x1b": "escape",
    "\x7f": "delete",
    "\x85": "next line",
}


def describe(char: str) -> str:
    """One character named for a message: ``U+000A (line break)``."""
    if "\ud800" <= char <= "\udfff":
        name = "lone surrogate"
    else:
        name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "control character").lower()
    return f"U+{ord(char):04X} ({name})"


def check_label(text: str, field: str, what: str = "a name") -> str:
    """``text`` if it may be a label; InvalidInput naming ``field``, the character and where.

    ``what`` starts the message: "a rule's name".
    """
    bad = _NOT_IN_LABEL.search(text)
    if bad is not None:
        raise InvalidInput(
            f"{what} cannot hold {describe(bad.group())} at index {bad.start()}; a name is "
            "one line of text that prints as written",
            field=field,
        )
    return text


def printable(text: str) -> str:
    """``text`` to print: as it is, or quoted and escaped as ``repr`` writes it when it holds
    a character a label may not (one stored by an older hookline)."""
    return text if _NOT_IN_LABEL.search(text) is None else repr(text)
