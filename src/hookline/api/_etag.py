"""Optimistic concurrency at the edge: answers carry an ETag, writes may send If-Match.

A versioned resource (rules, saved webhooks) answers its ``version`` in the body and as a
strong ETag (``"3"``); a journey, whose ``version`` names its definition, answers its
``revision``. A PUT, PATCH, DELETE or rotation with ``If-Match`` applies only if the
resource is still at one of the versions given, else 412 precondition_failed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

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


R = TypeVar("R")
Change = Callable[[str, Callable[[R], R], Precondition], Awaitable[R]]


async def write(
    change: Change[R],
    resource_id: str,
    if_match: str | None,
    owned: Callable[[R], None],
    edit: Callable[[R], R],
) -> R:
    """The shape of every PUT, PATCH and rotation: ``edit`` the resource as it is now.

    ``change`` is the catalog's (it holds the write lock from its read to its save);
    ``owned`` refuses a resource the key may not touch, judged on it as stored, inside
    that lock; the If-Match is checked there too, before ``edit`` runs.
    """
    when = precondition(if_match)

    def guarded(current: R) -> R:
        owned(current)
        return edit(current)

    return await change(resource_id, guarded, when)
