"""Optimistic concurrency at the edge: answers carry an ETag, writes may send If-Match.

A versioned resource (rules, saved webhooks, later journeys) answers its ``version`` in
the body and as a strong ETag (``"3"``). A PUT, PATCH or DELETE with ``If-Match`` applies
only if the resource is still at one of the versions given, else 412 precondition_failed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Header

from hookline.api._json import JSON
from hookline.catalog import ANY_VERSION, Precondition
from hookline.errors import BadRequest

IfMatch = Annotated[
    str | None,
    Header(
        description='Apply only to this version: the ETag of an earlier answer, e.g. "3"; '
        "a stale one is answered 412 precondition_failed.",
    ),
]

# Ours are strong tags of a version number; a bare number is taken too. A weak tag is
# well-formed but never matches: If-Match compares strongly (RFC 9110, 13.1.1).
_TAG = re.compile(r'(?P<weak>W/)?"(?P<quoted>[0-9]{1,18})"|(?P<bare>[0-9]{1,18})')


def etag(version: int) -> str:
    return f'"{version}"'


def precondition(if_match: str | None) -> Precondition:
    """What an If-Match header asks for; 400 naming the header if it is not one."""
    if if_match is None or if_match.strip() == "*":
        return ANY_VERSION
    versions: set[int] = set()
    for item in if_match.split(","):
        match = _TAG.fullmatch(item.strip())
        if match is None:
            raise BadRequest(
                f'If-Match must list ETags such as "3" (or be *), not {if_match!r}',
                field="If-Match",
            )
        if not match["weak"]:
            versions.add(int(match["quoted"] or match["bare"]))
    return Precondition(frozenset(versions))


def versioned(body: dict[str, Any], version: int, status_code: int = 200) -> JSON:
    """The answer for one versioned resource, with its ETag."""
    return JSON(body, status_code=status_code, headers={"ETag": etag(version)})
