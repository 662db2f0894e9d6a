"""Automation rules ("if this happens, call that API") and their index by event type."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hookline.conditions import Predicate, compile_conditions
from hookline.errors import HooklineError, InvalidInput
from hookline.signing import Signing
from hookline.webhooks import CompiledWebhook, WebhookSpec, compile_webhook

log = logging.getLogger("hookline.rules")


@dataclass(frozen=True)
class SavedWebhook:
    """A named webhook that many rules (and journey steps) can reference."""

    id: str
    name: str
    spec: WebhookSpec
    created_at: int
    updated_at: int
    # Set by the store in the write's transaction: 1 when created, one more on every change
    # (0 before it is stored). Times can tie; versions order the changes of one webhook.
    version: int = 0
    # Generated when created (by the catalog), kept across changes, replaced by a rotation.
    signing: Signing | None = None

    def as_dict(self) -> dict[str, Any]:
        """The answer: secret headers masked; the signing secret shown (see show_secrets)."""
        return {
            "id": self.id,
            "name": self.name,
            **self.spec.shown(),
            "signing_secret": self.signing.secret if self.signing is not None else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
        }


@dataclass(frozen=True)
class Rule:
    """A rule as stored: its activity is an inline webhook or a reference to a saved one."""

    id: str
    name: str
    enabled: bool
    event_type: str
    conditions: Mapping[str, Any] | None
    webhook: WebhookSpec | None
    webhook_id: str | None
    created_at: int
    updated_at: int
    description: str = ""
    # As for SavedWebhook: assigned by the store, one more on every change; orders changes.
    version: int = 0
    # The inline webhook's secrets: generated when the rule is created, they sign only while
    # its webhook is inline (a saved webhook signs with its own).
    signing: Signing | None = None

    def as_dict(self) -> dict[str, Any]:
        """The answer: secret headers masked; an inline webhook's signing secret shown."""
        activity: dict[str, Any] = {"type": "webhook"}
        if self.webhook_id is not None:
            activity["webhook_id"] = self.webhook_id
        if self.webhook is not None:
            activity.update(self.webhook.shown())
            if self.signing is not None:
                activity["signing_secret"] = self.signing.secret
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "enabled": self.enabled,
            "trigger": {"event_type": self.event_type},
            "conditions": self.conditions,
            "activity": activity,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready for the hot path: one predicate, one compiled webhook."""

    rule: Rule
    predicate: Predicate
    webhook: CompiledWebhook


def compile_rule(rule: Rule, webhooks: Mapping[str, SavedWebhook]) -> CompiledRule:
    """Compile conditions and the webhook; errors name the field that is wrong."""
    predicate = compile_conditions(rule.conditions, field="conditions")
    if rule.webhook_id is not None:
        saved = webhooks.get(rule.webhook_id)
        if saved is None:
            raise InvalidInput(
                f"no saved webhook {rule.webhook_id!r}; create it at /api/v1/webhooks first",
                field="activity.webhook_id",
            )
        spec = saved.spec
    elif rule.webhook is not None:
        spec = rule.webhook
    else:
        raise InvalidInput("the activity needs a url or a webhook_id", field="activity")
    return CompiledRule(rule, predicate, compile_webhook(spec, field="activity"))


@dataclass
class RuleIndex:
    """Enabled rules by event type, so an event only ever looks at its own rules."""

    by_type: dict[str, tuple[CompiledRule, ...]] = field(default_factory=dict)
    _cache: dict[str, tuple[int, int, CompiledRule]] = field(default_factory=dict, repr=False)

    def match(self, event_type: str) -> tuple[CompiledRule, ...]:
        return self.by_type.get(event_type, ())

    def rebuild(self, rules: Iterable[Rule], webhooks: Mapping[str, SavedWebhook]) -> None:
        """Recompile only rules (or their saved webhooks) that changed since the last build."""
        grouped: dict[str, list[CompiledRule]] = {}
        cache: dict[str, tuple[int, int, CompiledRule]] = {}
        for rule in rules:
            if not rule.enabled:
                continue
            saved = webhooks.get(rule.webhook_id) if rule.webhook_id is not None else None
            wh_version = saved.version if saved is not None else 0
            hit = self._cache.get(rule.id)
            if hit is not None and hit[0] == rule.version and hit[1] == wh_version:
                compiled = hit[2]
            else:
                try:
                    compiled = compile_rule(rule, webhooks)
                except HooklineError as exc:
                    # Saved rules were valid when saved; one that no longer is (a newer
                    # hookline is stricter) is skipped, loudly, rather than stopping all.
                    log.error("rule %s (%s) is skipped: %s", rule.name, rule.id, exc.detail)
                    continue
            cache[rule.id] = (rule.version, wh_version, compiled)
            grouped.setdefault(rule.event_type, []).append(compiled)
        self._cache = cache
        self.by_type = {k: tuple(v) for k, v in grouped.items()}

    def put(self, compiled: CompiledRule, webhook_version: int = 0) -> None:
        """Add or replace one rule, touching only its event types' entries.

        A change older than the one indexed (by the rule's version, then by the version of
        the saved webhook it was compiled with) is ignored, so the index only moves forward.
        """
        rule = compiled.rule
        hit = self._cache.get(rule.id)
        if hit is not None and (hit[0], hit[1]) > (rule.version, webhook_version):
            return
        current = self.by_type.get(rule.event_type, ())
        position = next((i for i, c in enumerate(current) if c.rule.id == rule.id), None)
        self.remove(rule.id)
        self._cache[rule.id] = (rule.version, webhook_version, compiled)
        if rule.enabled:
            # A changed rule keeps its place among its event type's rules.
            kept = list(self.by_type.get(rule.event_type, ()))
            kept.insert(len(kept) if position is None else position, compiled)
            self.by_type[rule.event_type] = tuple(kept)

    def remove(self, rule_id: str) -> None:
        hit = self._cache.pop(rule_id, None)
        if hit is None:
            return
        event_type = hit[2].rule.event_type
        kept = tuple(c for c in self.by_type.get(event_type, ()) if c.rule.id != rule_id)
        if kept:
            self.by_type[event_type] = kept
        else:
            self.by_type.pop(event_type, None)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_type.values())
