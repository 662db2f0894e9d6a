"""Standard Webhooks signatures: ``webhook-signature: v1,<base64 HMAC-SHA256>``.

The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"``; a receiver verifies it
with any Standard Webhooks library and the endpoint's ``whsec_`` secret. During a rotation
several secrets sign the same request and their signatures are sent space-separated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Final

from hookline.errors import InvalidInput

SECRET_PREFIX: Final = "whsec_"
# 24 bytes, as the public libraries generate; within the spec's 24 to 64.
SECRET_BYTES: Final = 24
MIN_SECRET_BYTES: Final = 24
MAX_SECRET_BYTES: Final = 64
# After a rotation the previous secret keeps signing for this long (milliseconds).
ROTATION_OVERLAP_MS: Final = 24 * 3600 * 1000


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
