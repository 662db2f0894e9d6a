"""API keys: roles, brand scopes, and what each may do. Only a key's hash is ever stored."""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from hookline.brands import MAX_BRAND_LENGTH, brand_text, check_brand
from hookline.errors import InvalidInput
from hookline.ids import new_id
from hookline.labels import check_label

KEY_PREFIX: Final = "hlk_"
# 32 random bytes: a key is guessed no sooner than a 256-bit secret.
KEY_BYTES: Final = 32
# How much of a key is kept in the clear to tell keys apart in a list (prefix included).
SHOWN_CHARS: Final = 12
MAX_NAME: Final = 200
MAX_BRANDS: Final = 1000
# As an event's ext_brand_id: a brand a key names must be one an event can carry.
MAX_BRAND_CHARS: Final = MAX_BRAND_LENGTH


class Role(StrEnum):
    ADMIN = "admin"
    INGEST = "ingest"
    READ = "read"


class Right(StrEnum):
    """What a route needs."""

    INGEST = "ingest"  # post events, patch state
    READ = "read"  # read rules, webhooks, journeys, deliveries, events, state
    ADMIN = "admin"  # everything else: configuration, keys, replays, test sends


_RIGHTS: Final[dict[Role, frozenset[Right]]] = {
    Role.ADMIN: frozenset(Right),
    Role.INGEST: frozenset({Right.INGEST}),
    Role.READ: frozenset({Right.READ}),
}


def new_key() -> str:
    """A fresh key, shown once: ``hlk_`` + 43 url-safe characters."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    """What is stored: SHA-256 is enough for a 256-bit random secret (no dictionary to try)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


@dataclass(frozen=True)
class ApiKey:
    """A key as stored: never the key itself, only its hash and its first characters."""

    id: str
    name: str
    role: Role
    brands: tuple[str, ...]
    shown: str
    hash: str
    created_at: int
    revoked_at: int | None = None

    def can(self, right: Right) -> bool:
        return self.revoked_at is None and right in _RIGHTS[self.role]

    @property
    def all_brands(self) -> bool:
        """A key with no brand list sees every brand, and data that belongs to none."""
        return not self.brands

    def sees(self, brand: Any) -> bool:
        """Whether data of ``brand`` (None: no brand, or every brand) is this key's to see."""
        return self.all_brands or brand_text(brand) in self.brands

    def sees_all(self, brands: Iterable[Any]) -> bool:
        return all(self.sees(b) for b in brands)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "brands": list(self.brands),
            "key_prefix": self.shown,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


# The principal of a request when hookline runs without keys: it may do everything.
OPEN: Final = ApiKey(
    id="open",
    name="no keys: open access",
    role=Role.ADMIN,
    brands=(),
    shown="",
    hash="",
    created_at=0,
)


def issue(role: Role, brands: tuple[str, ...], name: str, now: int) -> tuple[ApiKey, str]:
    """A new key's record and its text; the text is shown once and never kept."""
    text = new_key()
    record = ApiKey(
        id=new_id("key", now),
        name=name,
        role=role,
        brands=brands,
        shown=text[:SHOWN_CHARS],
        hash=key_hash(text),
        created_at=now,
    )
    return record, text


def check_name(name: str) -> str:
    """``name`` if it may name a key (see :mod:`hookline.labels`); InvalidInput otherwise."""
    if len(name) > MAX_NAME:
        raise InvalidInput(f"a key's name is at most {MAX_NAME} characters", field="name")
    # Printed in `hookline keys list`: a line break in it would print as a row of its own.
    return check_label(name, "name", "a key's name")


def check_brands(brands: Iterable[Any]) -> tuple[str, ...]:
    """Brands as text, each once, in the order given; InvalidInput naming the bad one."""
    out: dict[str, None] = {}
    for i, brand in enumerate(brands):
        checked = check_brand(brand, f"brands[{i}]")
        if checked is None:
            # "No brand" is what an empty list says; a null in it would become the brand "None".
            raise InvalidInput(
                "a brand is a string or an integer; leave brands empty for a key of every brand",
                field=f"brands[{i}]",
            )
        out[str(checked)] = None
    if len(out) > MAX_BRANDS:
        raise InvalidInput(f"a key names at most {MAX_BRANDS} brands", field="brands")
    return tuple(out)


class AuthMode(StrEnum):
    """``HOOKLINE_AUTH``: when a request needs a key."""

    AUTO = "auto"  # keys once one exists; before that, open on loopback, refused elsewhere
    ON = "on"  # always
    OFF = "off"  # never: whoever reaches the port may do everything


@functools.lru_cache(maxsize=64)  # the gate asks for every request, about the listen host
def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches only this machine (127.0.0.0/8, ::1, localhost).

    Any other name may resolve to anything, so it counts as exposed.
    """
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def keys_required(mode: AuthMode, host: str, keys_made: int) -> bool:
    """Whether a request must carry a key, for a server listening on ``host``.

    ``keys_made`` counts revoked keys too: revoking every key leaves hookline closed.
    """
    if mode is AuthMode.OFF:
        return False
    if mode is AuthMode.ON:
        return True
    # AUTO: open only while nobody made a key and nobody else can reach the port.
    return keys_made > 0 or not is_loopback(host)
