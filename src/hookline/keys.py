"""API keys: roles, brand scopes, and what each may do. Only a key's hash is ever stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

KEY_PREFIX: Final = "hlk_"
# 32 random bytes: a key is guessed no sooner than a 256-bit secret.
KEY_BYTES: Final = 32
# How much of a key is kept in the clear to tell keys apart in a list (prefix included).
SHOWN_CHARS: Final = 12


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


def brand_text(brand: Any) -> str | None:
    """Brands compare as text: an event's ``ext_brand_id`` may be 5 or "5"."""
    return None if brand is None else str(brand)


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
