"""Standard Webhooks signatures: ``webhook-signature: v1,<base64 HMAC-SHA256>``.

The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"``; a receiver verifies it
with any Standard Webhooks library and the endpoint's ``whsec_`` secret. During a rotation
several secrets sign the same request and their signatures are sent space-separated.

A :class:`Signing` is what a webhook (saved, or inline in a rule) keeps: its current secret
and the secrets it replaced, each until its overlap ends. A :class:`SecretRing` holds the key
bytes of every webhook in memory, so signing at send time reads no database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from hookline.errors import Conflict, InvalidInput
from hookline.times import iso_ms

SECRET_PREFIX: Final = "whsec_"
# 24 bytes, as the public libraries generate; within the spec's 24 to 64.
SECRET_BYTES: Final = 24
MIN_SECRET_BYTES: Final = 24
MAX_SECRET_BYTES: Final = 64
# After a rotation the previous secret keeps signing for this long (milliseconds).
ROTATION_OVERLAP_MS: Final = 24 * 3600 * 1000
# How many replaced secrets may still be signing (as Svix allows): each adds a signature to
# webhook-signature, and receivers cap a header's size. A rotation beyond it is refused,
# not made by dropping the oldest: a receiver may not have switched from that one yet.
MAX_PREVIOUS_SECRETS: Final = 5


def new_secret() -> str:
    """A fresh high-entropy signing secret, ``whsec_`` + base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str, *, field: str = "secret") -> bytes:
    """The key bytes of a ``whsec_`` secret; refuses one that is malformed or too short."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidInput(f"a signing secret starts with {SECRET_PREFIX!r}", field=field)
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("a signing secret is whsec_ followed by base64", field=field) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidInput(
            f"a signing secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, "
            f"this one {len(key)}",
            field=field,
        )
    return key


def sign(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes | None) -> str:
    """The ``webhook-signature`` header value: one ``v1,<sig>`` per key, space-separated."""
    content = b"%s.%d.%s" % (msg_id.encode("utf-8"), timestamp, body or b"")
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode("ascii")
        for key in keys
    )


@dataclass(frozen=True, slots=True)
class Signing:
    """A webhook's signing secrets: the current one, and those it replaced.

    ``previous`` holds ``(secret, until_ms)`` pairs: a replaced secret keeps signing until
    its overlap ends, so receivers can switch to the new one without losing a delivery.
    """

    secret: str
    previous: tuple[tuple[str, int], ...] = ()

    @classmethod
    def new(cls) -> Signing:
        return cls(new_secret())

    def rotated(self, now: int, overlap_ms: int = ROTATION_OVERLAP_MS) -> Signing:
        """A new current secret; the old one signs too until ``now + overlap_ms``.

        Refused (:class:`Conflict`) while :data:`MAX_PREVIOUS_SECRETS` replaced ones sign.
        """
        kept = tuple((s, until) for s, until in self.previous if until > now)
        if len(kept) >= MAX_PREVIOUS_SECRETS:
            raise Conflict(
                f"a signing secret can be rotated at most {MAX_PREVIOUS_SECRETS} times within "
                f"{overlap_ms / 3_600_000:g} hours: each replaced secret keeps signing that "
                "long, and each adds a signature to every request; the next rotation is "
                f"possible at {iso_ms(min(until for _, until in kept))}, when the oldest stops"
            )
        return Signing(new_secret(), (*kept, (self.secret, now + overlap_ms)))

    def secrets_at(self, now: int) -> tuple[str, ...]:
        """The secrets that sign a request sent at ``now``, the current one first."""
        return (self.secret, *(s for s, until in self.previous if until > now))

    def as_json(self) -> dict[str, Any]:
        return {"secret": self.secret, "previous": [list(p) for p in self.previous]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signing:
        previous = tuple((str(s), int(until)) for s, until in data.get("previous") or ())
        return cls(str(data["secret"]), previous)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SecretRing:
    """The signing keys of every webhook, by the id of what owns it (``wh_``/``rule_``).

    The catalog puts a webhook's :class:`Signing` after every write that commits; the
    dispatcher asks for the keys at send time. ``clock`` decides which replaced secrets
    still sign (injectable, so tests can pass the end of an overlap without waiting).
    """

    def __init__(self, clock: Callable[[], int] = _now_ms) -> None:
        self.clock = clock
        # Key bytes decoded once per write, not once per delivery.
        self._keys: dict[str, tuple[bytes, tuple[tuple[bytes, int], ...]]] = {}

    def load(self, signings: Mapping[str, Signing]) -> None:
        self._keys = {}
        for owner, signing in signings.items():
            self.put(owner, signing)

    def put(self, owner: str, signing: Signing | None) -> None:
        if signing is None:
            self._keys.pop(owner, None)
            return
        self._keys[owner] = (
            secret_key(signing.secret),
            tuple((secret_key(s), until) for s, until in signing.previous),
        )

    def remove(self, owner: str) -> None:
        self._keys.pop(owner, None)

    def keys(self, owner: str | None) -> tuple[bytes, ...] | None:
        """The keys that sign for ``owner`` now (current first); None if it has none."""
        found = self._keys.get(owner) if owner is not None else None
        if found is None:
            return None
        current, previous = found
        if not previous:
            return (current,)
        now = self.clock()
        return (current, *(k for k, until in previous if until > now))

    def __contains__(self, owner: object) -> bool:
        return owner in self._keys
