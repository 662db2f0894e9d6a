"""Identifiers that carry their kind and sort by creation time (`evt_01J...`)."""

from __future__ import annotations

import os
import time
from typing import Final

# Crockford base32: no I, L, O, U, so ids survive being read aloud or retyped.
_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

KINDS: Final = frozenset({"evt", "rule", "wh", "dlv", "att", "echo"})


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(kind: str, now_ms: int | None = None) -> str:
    """A ULID-style id: 48-bit milliseconds then 80 random bits, prefixed by its kind."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{kind}_{_encode(ms, 10)}{_encode(rand, 16)}"


def has_kind(value: str, kind: str) -> bool:
    """Whether ``value`` looks like an id of ``kind``."""
    return value.startswith(kind + "_") and len(value) == len(kind) + 27
