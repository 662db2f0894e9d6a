"""Identifiers that carry their kind and sort by creation time (`evt_01J...`)."""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import Final

# Crockford base32: no I, L, O, U, so ids survive being read aloud or retyped.
_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

KINDS: Final = frozenset({"evt", "rule", "wh", "dlv", "att", "echo", "key", "jrn", "jri", "jcc"})


# Two base32 digits per table entry: lookups, not divisions; the time part is shared by
# the ids made in the same millisecond.
_PAIRS: Final = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
_SHIFTS: Final = (70, 60, 50, 40, 30, 20, 10, 0)


def _encode_random(value: int) -> str:
    """The 16 base32 digits of an 80-bit value."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


@functools.lru_cache(maxsize=4)
def _ms_prefix(ms: int) -> str:
    """The 10 base32 digits of a 48-bit millisecond time (ids made together share it)."""
    return "".join([_PAIRS[(ms >> shift) & 1023] for shift in (40, 30, 20, 10, 0)])


_RANDOM_BITS: Final = 80
_last_ms = 0
_last_rand = 0
_lock = threading.Lock()


def new_id(kind: str, now_ms: int | None = None) -> str:
    """A ULID-style id: 48-bit milliseconds then 80 random bits, prefixed by its kind.

    Monotonic within a process: ids made in the same millisecond (or while the clock
    steps back) count up from the previous one, so sorting by id is sorting by creation.
    """
    global _last_ms, _last_rand
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
            if rand >> _RANDOM_BITS:  # 2**80 ids in one millisecond: borrow the next one
                ms, rand = ms + 1, 0
        else:
            # Leave headroom so a burst in this millisecond cannot overflow the counter.
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last_ms, _last_rand = ms, rand
    return f"{kind}_{_ms_prefix(ms)}{_encode_random(rand)}"


def has_kind(value: str, kind: str) -> bool:
    """Whether ``value`` looks like an id of ``kind``."""
    return value.startswith(kind + "_") and len(value) == len(kind) + 27
