"""/api/v1/rules: automation rules, compiled and indexed as soon as they are saved.

Answers carry the rule's ``version`` and an ETag; writes take If-Match (see _etag).
Secret header values are shown as ``***``; an inline webhook's ``signing_secret`` is shown
to admins (see :func:`hookline.redaction.show_secrets`). A body may carry the fields only
answers set (``id``, ``version``, ...) as read: see :mod:`hookline.readonly`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Query, Response

from hookline.api._etag import IfMatch, precondition, versioned, write
from hookline.api._json import JSON, JSONRoute
from hookline.api.auth import KeyDep
from hookline.api.brands import may_own, only_visible, require_visible
from hookline.api.deps import RuntimeDep
from hookline.api.models import (
    AccumulateIn,
    Activity,
    FrequencyIn,
    RuleIn,
    RuleList,
    RuleOut,
    RulePatch,
    RuleSaved,
    RuleValidation,
)
from hookline.brands import brand_text
from hookline.counters import Limits, parse_accumulate, parse_frequency, parse_limits
from hookline.errors import InvalidInput, NotFound
from hookline.events import later_than, now_ms
from hookline.ids import new_id
from hookline.keys import ApiKey, Right
from hookline.readonly import RULE
from hookline.redaction import MASK, SIGNING_SECRET, secret_names, show_secrets
from hookline.rules import Rule
from hookline.runtime import Runtime
from hookline.webhooks import WebhookSpec, compile_webhook

router = APIRouter(prefix="/api/v1/rules", tags=["rules"], route_class=JSONRoute)


def activity_spec(activity: Activity) -> tuple[WebhookSpec | None, str | None]:
    """An inline webhook spec or a saved webhook's id, never both."""
    inline = activity.model_dump(exclude={"type", "webhook_id"}, exclude_none=True)
    if activity.webhook_id is not None:
        if inline:
            raise InvalidInput(
                "give either webhook_id or an inline webhook (url, body, ...), not both",
                field="activity.webhook_id",
            )
        return None, activity.webhook_id
    if "url" not in inline:
        raise InvalidInput("the activity needs a url or a webhook_id", field="activity.url")
    return WebhookSpec.from_dict(inline), None


def _written(part: FrequencyIn | AccumulateIn | None) -> dict[str, Any] | None:
    return None if part is None else part.model_dump(exclude_none=True)


def limits_of(body: RuleIn) -> Limits:
    """The rule's limits, checked (InvalidInput naming the field, e.g. ``frequency.max``)."""
    return parse_limits(body.once_per_user, _written(body.frequency), _written(body.accumulate))


def shown(rule: Rule, *, admin: bool) -> dict[str, Any]:
    """A rule as answers show it; the signing secret only when ``admin`` reads it."""
    answer: dict[str, Any] = show_secrets(rule.as_dict(), admin=admin)
    return answer


def _saved(rule: Rule, status_code: int = 200) -> JSON:
    """A save's answer: the rule, and ``warnings`` about its inline webhook's templates."""
    return versioned(
        {**shown(rule, admin=True), "warnings": _warnings(rule)}, rule.version, status_code
    )


def _warnings(rule: Rule) -> list[dict[str, str]]:
    # A saved webhook's own save already warned about it; saves are rare, so compile again.
    if rule.webhook is None:
        return []
    return compile_webhook(rule.webhook, field="activity").warnings


def _from_input(body: RuleIn, rule_id: str, created_at: int, now: int) -> Rule:
    spec, webhook_id = activity_spec(body.activity)
    return Rule(
        id=rule_id,
        name=body.name,
        description=body.description,
        enabled=body.enabled,
        event_type=body.trigger.event_type,
        conditions=body.conditions,
        webhook=spec,
        webhook_id=webhook_id,
        created_at=created_at,
        updated_at=now,
        ext_brand_id=brand_text(body.ext_brand_id),
        limits=limits_of(body),
    )


def _unchanged(body: RuleIn | RulePatch, current: Rule) -> None:
    """Refuse a body whose read-only fields (an answer's, sent back) differ from ``current``."""
    stored = current.as_dict()
    if current.signing is not None:
        # Kept while the rule calls a saved webhook, so an activity read when it was inline
        # may come back with it.
        stored["activity"][SIGNING_SECRET] = current.signing.secret
    RULE.check(body.read_only_sent(), stored, current.id)


def _kept_secrets(rule: Rule, current: Rule | None) -> Rule:
    """``rule`` with the secret headers a read showed as ``***`` kept from ``current``."""
    if rule.webhook is None:
        return rule
    stored = current.webhook if current is not None else None
    return replace(rule, webhook=rule.webhook.keeping_secrets(stored, "activity.headers"))


def _owned(key: ApiKey, rule_id: str) -> Callable[[Rule], None]:
    """The check of the rule as stored, in the write's lock: another brand's is not there."""

    def check(current: Rule) -> None:
        require_visible(key, current.ext_brand_id, f"no rule {rule_id!r}", "rule_id")

    return check


async def _may_save(key: ApiKey, runtime: Runtime, rule: Rule) -> None:
    """Forbidden unless ``key`` may own the rule's brand; its saved webhook must be visible."""
    may_own(key, rule.ext_brand_id)
    await _may_use(key, runtime, rule.webhook_id)


async def _may_use(key: ApiKey, runtime: Runtime, webhook_id: str | None) -> None:
    """A saved webhook another brand's key cannot see is, for it, one that does not exist."""
    if webhook_id is None or key.all_brands:
        return
    saved = await runtime.store.get_webhook(webhook_id)
    if saved is not None and not key.sees(saved.ext_brand_id):
        raise InvalidInput(
            f"no saved webhook {webhook_id!r}; create it at /api/v1/webhooks first",
            field="activity.webhook_id",
        )


@router.post("", status_code=201, summary="Create a rule", response_model=RuleSaved)
async def create_rule(body: RuleIn, runtime: RuntimeDep, key: KeyDep) -> JSON:
    await RULE.check_new(body.read_only_sent(), runtime.store.get_rule, key.sees)
    now = now_ms()
    rule = _kept_secrets(_from_input(body, new_id("rule"), now, now), None)
    await _may_save(key, runtime, rule)
    rule = await runtime.catalog.create_rule(rule)
    return _saved(rule, status_code=201)


@router.get("", summary="List rules", response_model=RuleList)
async def list_rules(runtime: RuntimeDep, key: KeyDep, event_type: str | None = None) -> JSON:
    rules = only_visible(key, await runtime.store.list_rules(), lambda r: r.ext_brand_id)
    if event_type is not None:
        rules = [r for r in rules if r.event_type == event_type]
    return JSON({"data": [shown(r, admin=key.can(Right.ADMIN)) for r in rules]})


@router.get("/{rule_id}", summary="Get a rule", response_model=RuleOut)
async def get_rule(rule_id: str, runtime: RuntimeDep, key: KeyDep) -> JSON:
    rule = await runtime.store.get_rule(rule_id)
    if rule is None:
        raise NotFound(f"no rule {rule_id!r}", field="rule_id")
    _owned(key, rule_id)(rule)
    return versioned(shown(rule, admin=key.can(Right.ADMIN)), rule.version)


@router.put("/{rule_id}", summary="Replace a rule", response_model=RuleSaved)
async def replace_rule(
    rule_id: str, body: RuleIn, runtime: RuntimeDep, key: KeyDep, if_match: IfMatch = None
) -> JSON:
    new = _from_input(body, rule_id, 0, 0)
    await _may_save(key, runtime, new)

    def edit(current: Rule) -> Rule:
        _unchanged(body, current)
        return replace(
            _kept_secrets(new, current),
            created_at=current.created_at,
            updated_at=later_than(current.updated_at),
        )

    rule = await write(runtime.catalog.change_rule, rule_id, if_match, _owned(key, rule_id), edit)
    return _saved(rule)


@router.patch(
    "/{rule_id}",
    summary="Change some fields of a rule (e.g. enabled)",
    response_model=RuleSaved,
)
async def patch_rule(
    rule_id: str, body: RulePatch, runtime: RuntimeDep, key: KeyDep, if_match: IfMatch = None
) -> JSON:
    precondition(if_match)  # a malformed If-Match is answered before anything else
    changes: dict[str, Any] = {}
    fields = body.model_fields_set
    if "name" in fields and body.name is not None:
        changes["name"] = body.name
    if "description" in fields and body.description is not None:
        changes["description"] = body.description
    if "enabled" in fields and body.enabled is not None:
        changes["enabled"] = body.enabled
    if "trigger" in fields and body.trigger is not None:
        changes["event_type"] = body.trigger.event_type
    if "conditions" in fields:
        changes["conditions"] = body.conditions
    if "activity" in fields and body.activity is not None:
        changes["webhook"], changes["webhook_id"] = activity_spec(body.activity)
    if "ext_brand_id" in fields:
        changes["ext_brand_id"] = brand_text(body.ext_brand_id)
        may_own(key, changes["ext_brand_id"])
    limits: dict[str, Any] = {}
    if "once_per_user" in fields and body.once_per_user is not None:
        limits["once_per_user"] = body.once_per_user
    if "frequency" in fields:  # null removes it
        limits["frequency"] = parse_frequency(_written(body.frequency))
    if "accumulate" in fields:
        limits["accumulate"] = parse_accumulate(_written(body.accumulate))
    await _may_use(key, runtime, changes.get("webhook_id"))

    def edit(current: Rule) -> Rule:
        _unchanged(body, current)
        # Only the fields given change, on the rule as it is now (not as first read).
        changed = replace(current, **changes, updated_at=later_than(current.updated_at))
        changed = _kept_secrets(changed, current)
        return replace(changed, limits=replace(current.limits, **limits)) if limits else changed

    rule = await write(runtime.catalog.change_rule, rule_id, if_match, _owned(key, rule_id), edit)
    return _saved(rule)


@router.delete("/{rule_id}", status_code=204, summary="Delete a rule")
async def delete_rule(
    rule_id: str, runtime: RuntimeDep, key: KeyDep, if_match: IfMatch = None
) -> Response:
    await runtime.catalog.delete_rule(rule_id, precondition(if_match), _owned(key, rule_id))
    return Response(status_code=204)


@router.post(
    "/{rule_id}/rotate-secret",
    summary="New signing secret for the inline webhook; the old one signs for 24 h more",
    response_model=RuleOut,
)
async def rotate_secret(
    rule_id: str, runtime: RuntimeDep, key: KeyDep, if_match: IfMatch = None
) -> JSON:
    """Both secrets sign every request for 24 hours (two signatures, space-separated), so
    the receiver can switch to the new one without refusing a delivery; then only the new.
    At most 5 replaced secrets sign at once: a sixth rotation within 24 hours is a 409.
    """
    catalog = runtime.catalog
    owned = _owned(key, rule_id)  # another brand's rule is not there for this key
    rule = await write(catalog.change_rule, rule_id, if_match, owned, catalog.rotate_rule_secret)
    return versioned(shown(rule, admin=True), rule.version)


# A secret header value that differs from the stored rule's (see validate_rule).
CHANGED_SECRET = f"{MASK} (changed)"


@router.post(
    "/validate",
    summary="Check a rule exactly as a save would, without saving it",
    response_model=RuleValidation,
)
async def validate_rule(
    body: RuleIn,
    runtime: RuntimeDep,
    key: KeyDep,
    compare_to: str | None = Query(
        default=None,
        description="A stored rule's id: secret header values that differ from its own "
        f"are shown as {CHANGED_SECRET!r} instead of {MASK!r}.",
    ),
) -> JSON:
    """The rule as it would be stored (defaults filled, numbers normalised), or the error.

    ``hookline rules apply`` checks every rule of a file here before it writes any, and
    compares this answer with the stored rule to report what would change. Secret header
    values are masked on both sides, so ``compare_to`` lets the server say which differ.
    """
    current = await runtime.store.get_rule(compare_to) if compare_to is not None else None
    if current is not None and not key.sees(current.ext_brand_id):
        current = None  # another brand's rule is, for this key, not there
    if current is not None:
        _unchanged(body, current)  # as a PUT to it would
    else:
        await RULE.check_new(body.read_only_sent(), runtime.store.get_rule, key.sees)
    # As a save would: a *** sent back keeps compare_to's value, and without one is refused.
    rule = _kept_secrets(_from_input(body, "rule_validate", 0, 0), current)
    await _may_save(key, runtime, rule)
    await runtime.catalog.check_rule(rule)
    stored = RULE.strip(shown(rule, admin=True))  # a validated rule has no id, version, ...
    if compare_to is not None and rule.webhook is not None:
        before = current.webhook.headers if current and current.webhook else {}
        secret = secret_names(rule.webhook.secret_headers)
        headers = stored["activity"]["headers"]
        for name, value in rule.webhook.headers.items():
            if name.lower() in secret and before.get(name) != value:
                headers[name] = CHANGED_SECRET
    return JSON({"valid": True, "rule": stored, "warnings": _warnings(rule)})
