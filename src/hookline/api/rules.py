"""/api/v1/rules: automation rules, compiled and indexed as soon as they are saved."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from hookline.api._json import JSON, JSONRoute
from hookline.api.deps import RuntimeDep
from hookline.api.models import Activity, RuleIn, RulePatch
from hookline.errors import InvalidInput, NotFound
from hookline.events import now_ms
from hookline.ids import new_id
from hookline.rules import Rule, compile_rule
from hookline.runtime import Runtime
from hookline.webhooks import WebhookSpec

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


async def _check_and_save(runtime: Runtime, rule: Rule, *, create: bool) -> Rule:
    webhooks = {}
    if rule.webhook_id is not None:
        saved = await runtime.store.get_webhook(rule.webhook_id)
        if saved is not None:
            webhooks[saved.id] = saved
    compiled = compile_rule(rule, webhooks)  # refuse what cannot run, with field and position
    async with runtime.engine.rules_lock:
        await runtime.store.save_rule(rule, create=create)
        version = webhooks[rule.webhook_id].updated_at if rule.webhook_id else 0
        runtime.engine.put_rule(compiled, version)
    return rule


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
    )


async def _get(runtime: Runtime, rule_id: str) -> Rule:
    rule = await runtime.store.get_rule(rule_id)
    if rule is None:
        raise NotFound(f"no rule {rule_id!r}", field="rule_id")
    return rule


@router.post("", status_code=201, summary="Create a rule")
async def create_rule(body: RuleIn, runtime: RuntimeDep) -> JSON:
    now = now_ms()
    rule = await _check_and_save(runtime, _from_input(body, new_id("rule"), now, now), create=True)
    return JSON(rule.as_dict(), status_code=201)


@router.get("", summary="List rules")
async def list_rules(runtime: RuntimeDep, event_type: str | None = None) -> JSON:
    rules = await runtime.store.list_rules()
    if event_type is not None:
        rules = [r for r in rules if r.event_type == event_type]
    return JSON({"data": [r.as_dict() for r in rules]})


@router.get("/{rule_id}", summary="Get a rule")
async def get_rule(rule_id: str, runtime: RuntimeDep) -> JSON:
    return JSON((await _get(runtime, rule_id)).as_dict())


@router.put("/{rule_id}", summary="Replace a rule")
async def replace_rule(rule_id: str, body: RuleIn, runtime: RuntimeDep) -> JSON:
    current = await _get(runtime, rule_id)
    rule = _from_input(body, rule_id, current.created_at, max(now_ms(), current.updated_at + 1))
    return JSON((await _check_and_save(runtime, rule, create=False)).as_dict())


@router.patch("/{rule_id}", summary="Change some fields of a rule (e.g. enabled)")
async def patch_rule(rule_id: str, body: RulePatch, runtime: RuntimeDep) -> JSON:
    current = await _get(runtime, rule_id)
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
    data = {**current.__dict__, **changes, "updated_at": max(now_ms(), current.updated_at + 1)}
    return JSON((await _check_and_save(runtime, Rule(**data), create=False)).as_dict())


@router.delete("/{rule_id}", status_code=204, summary="Delete a rule")
async def delete_rule(rule_id: str, runtime: RuntimeDep) -> Response:
    async with runtime.engine.rules_lock:
        if not await runtime.store.delete_rule(rule_id):
            raise NotFound(f"no rule {rule_id!r}", field="rule_id")
        runtime.engine.remove_rule(rule_id)
    return Response(status_code=204)
