"""Read-only fields: what the answers of a resource carry and its requests never set.

A client reads a rule, saved webhook or journey, changes one thing and sends the answer back
whole (``PUT``) or a part of it (``PATCH``). The fields hookline sets (``id``, times,
versions, the signing secret) come back with it. Each is read-only, as JSON Schema's
``readOnly`` means it: sent as stored, it is ignored; sent with another value, the write is
refused (422 naming the field), since a write cannot change it. ``null`` counts as left out,
and a signing secret may come back as ``***`` (how it is shown to keys that are not admins),
as secret header values do (:func:`hookline.redaction.keep_masked`).

A create (``POST``) ignores them, so an exported resource can be created elsewhere (it gets
its own id, times, version and secret), except an ``id`` of a resource that exists here:
that is refused (409), as a copy made by mistake of the one meant to be changed.

This module is the one list of them: the API's request models set them aside
(:mod:`hookline.api.models`), the routes check them against the resource as stored, and
``hookline rules apply`` / ``journeys apply`` leave them out of what a file sends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from hookline.errors import Conflict, InvalidInput
from hookline.redaction import MASK, SIGNING_SECRET
from hookline.times import short_value
from hookline.values import same

# A save's answer reports on what was saved (template warnings): never stored, so sent back
# it is ignored whatever it holds.
REPORTS: Final = frozenset({"warnings"})
# Fields that move on every write: one that differs was read before another write.
_MOVING: Final = frozenset({"version", "revision", "updated_at"})
# Named first when several differ: another resource's id, then a read made before a write.
_FIRST: Final = ("id", "version", "revision")


class Branded(Protocol):
    """A stored resource, as far as a create's ``id`` check needs it."""

    @property
    def ext_brand_id(self) -> str | int | None: ...


@dataclass(frozen=True)
class ReadOnly:
    """The read-only fields of one kind of resource."""

    noun: str  # "rule": how messages name one
    plural: str  # "rules": its API path is /api/v1/<plural>
    fields: tuple[str, ...]  # at the top of the resource
    nested: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # inside an object

    @property
    def path(self) -> str:
        return f"/api/v1/{self.plural}"

    def strip(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """``resource`` without its read-only fields, nested ones too (not changed in place)."""
        kept = {k: v for k, v in resource.items() if k not in self.fields}
        for key, names in self.nested.items():
            inner = kept.get(key)
            if isinstance(inner, Mapping):
                kept[key] = {k: v for k, v in inner.items() if k not in names}
        return kept

    def check(self, sent: Mapping[str, Any], stored: Mapping[str, Any], resource_id: str) -> None:
        """Refuse a write whose read-only fields differ from the resource as stored.

        ``sent`` maps dotted names (``activity.signing_secret``) to the values the request
        gave; ``stored`` is the resource as an admin reads it. InvalidInput names the field.
        """
        for name in sorted(sent, key=_precedence):
            value, leaf = sent[name], name.rpartition(".")[2]
            if value is None or leaf in REPORTS:
                continue
            before = _at(stored, name)
            if same(value, before) or (leaf == SIGNING_SECRET and value == MASK):
                continue
            raise InvalidInput(self._refusal(name, value, before, resource_id), field=name)

    async def check_new(
        self,
        sent: Mapping[str, Any],
        find: Callable[[str], Awaitable[Branded | None]],
        sees: Callable[[str | int | None], bool],
    ) -> None:
        """A create ignores read-only fields, but refuses (409) the ``id`` of one stored here.

        POSTing what a read answered would otherwise make a second resource where the client
        meant to change the first. Another brand's resource, which ``sees`` denies, is for
        this key not there: the create goes on, as for any id this server does not know.
        """
        resource_id = sent.get("id")
        if not isinstance(resource_id, str):
            return
        found = await find(resource_id)
        if found is not None and sees(found.ext_brand_id):
            raise Conflict(
                f"{self.noun} {resource_id!r} exists: change it with PUT or PATCH "
                f"{self.path}/{resource_id}, or leave id out to create a copy",
                field="id",
            )

    def _refusal(self, name: str, sent: Any, stored: Any, resource_id: str) -> str:
        leaf = name.rpartition(".")[2]
        if leaf == SIGNING_SECRET:  # neither value is ever quoted
            return (
                f"{name} cannot be changed this way: send it as read (or {MASK}), or leave it "
                f"out; to change it, rotate it with POST {self.path}/{resource_id}/rotate-secret"
            )
        was = f"{short_value(stored)}, not {short_value(sent)}"
        if leaf == "id":
            return (
                f"id cannot be changed: this {self.noun} is {was}; send it as read or leave it "
                f"out (to copy a {self.noun}, POST it to {self.path} without id)"
            )
        if leaf in _MOVING:
            return (
                f"{name} is set by hookline and cannot be changed this way: it is {was}. If "
                f"the {self.noun} was read at {short_value(sent)}, it has changed since: read "
                f"it again and make the change on that, or leave {name} out to write anyway"
            )
        return (
            f"{name} is set by hookline and cannot be changed this way: it is {was}; send it "
            "as read or leave it out"
        )


def _precedence(name: str) -> int:
    return _FIRST.index(name) if name in _FIRST else len(_FIRST)


def _at(resource: Mapping[str, Any], name: str) -> Any:
    """The value at a dotted ``name`` of ``resource``; None where there is none."""
    value: Any = resource
    for part in name.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def describe(name: str) -> str:
    """How a request schema documents a read-only field (OpenAPI, JSON Schema readOnly)."""
    if name in REPORTS:
        return "Read-only: what a save answered; sent back, it is ignored."
    if name == SIGNING_SECRET:
        return (
            f"Read-only: sent back as read (or {MASK}) it is ignored, changed it is refused "
            "(422); rotate-secret changes it."
        )
    return "Read-only: sent back as read it is ignored, changed it is refused (422)."


_STORED: Final = ("id", "created_at", "updated_at", "version", "problem")

RULE: Final = ReadOnly(
    "rule", "rules", (*_STORED, *REPORTS), nested={"activity": (SIGNING_SECRET,)}
)
WEBHOOK: Final = ReadOnly("webhook", "webhooks", (*_STORED, SIGNING_SECRET, *REPORTS))
# A journey's version names its definition; its revision is the ETag.
JOURNEY: Final = ReadOnly("journey", "journeys", (*_STORED, "revision", SIGNING_SECRET))
