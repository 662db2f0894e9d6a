"""Automation rules ("if this happens, call that API") and their index by event type."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hookline.conditions import Predicate, compile_conditions
from hookline.counters import NO_LIMITS, Limits
from hookline.errors import Conflict, HooklineError, InvalidInput
from hookline.labels import printable
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
    # Why the stored webhook cannot be read (its spec is then a placeholder); None when fine.
    problem: str | None = None
    # The brand it belongs to, as text (keys.brand_text); None: every brand.
    ext_brand_id: str | None = None

    # Generated when created (by the catalog), kept across changes, replaced by a rotation.
    signing: Signing | None = None

    def as_dict(self) -> dict[str, Any]:
        """The answer: secret headers masked; the signing secret shown (see show_secrets)."""
        data = {
            "id": self.id,
            "name": self.name,
            **self.spec.shown(),
            "signing_secret": self.signing.secret if self.signing is not None else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
        }
        if self.ext_brand_id is not None:  # absent: every brand (answers keep their shape)
            data["ext_brand_id"] = self.ext_brand_id
        if self.problem is not None:
            data["problem"] = self.problem
        return data


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
    # Why the stored rule cannot be read (conditions and webhook are then None); None when fine.
    problem: str | None = None
    # Only events of this brand (as text, keys.brand_text) fire it; None: every brand.
    ext_brand_id: str | None = None
    # The inline webhook's secrets: generated when the rule is created, they sign only while
    # its webhook is inline (a saved webhook signs with its own).
    signing: Signing | None = None
    # Once per user, frequency and accumulation (hookline.counters); the default counts nothing.
    limits: Limits = NO_LIMITS
    # One more each time a change of frequency or accumulate starts the counts over (set by
    # the catalog); a user's counter made under another epoch keeps only "already fired".
    counting_epoch: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The answer: secret headers masked; an inline webhook's signing secret shown."""
        activity: dict[str, Any] = {"type": "webhook"}
        if self.webhook_id is not None:
            activity["webhook_id"] = self.webhook_id
        if self.webhook is not None:
            activity.update(self.webhook.shown())
            if self.signing is not None:
                activity["signing_secret"] = self.signing.secret
        data = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "enabled": self.enabled,
            "trigger": {"event_type": self.event_type},
            "conditions": self.conditions,
            **self.limits.as_dict(),
            "activity": activity,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
        }
        if self.ext_brand_id is not None:  # absent: every brand (answers keep their shape)
            data["ext_brand_id"] = self.ext_brand_id
        if self.problem is not None:
            data["problem"] = self.problem
        return data


@dataclass(frozen=True, slots=True)
class Problem:
    """A stored rule or saved webhook that cannot be loaded: skipped and reported, not fatal."""

    kind: str  # "rule" or "webhook"
    id: str
    detail: str


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready for the hot path: one predicate, one compiled webhook."""

    rule: Rule
    predicate: Predicate
    webhook: CompiledWebhook
    # The rule's limits when it counts per user; None (the fast path) when it does not.
    limits: Limits | None = None


def compile_rule(rule: Rule, webhooks: Mapping[str, SavedWebhook]) -> CompiledRule:
    """Compile conditions and the webhook; errors name the field that is wrong."""
    if rule.problem is not None:
        # What cannot be read cannot be changed field by field: only replaced or deleted.
        raise Conflict(f"{rule.problem}; replace the rule (PUT) or delete it", field="rule_id")
    predicate = compile_conditions(rule.conditions, field="conditions")
    if rule.webhook_id is not None:
        saved = webhooks.get(rule.webhook_id)
        if saved is None:
            raise InvalidInput(
                f"no saved webhook {rule.webhook_id!r}; create it at /api/v1/webhooks first",
                field="activity.webhook_id",
            )
        if saved.problem is not None:
            raise Conflict(
                f"the saved webhook {saved.id!r} cannot be used: {saved.problem}",
                field="activity.webhook_id",
            )
        spec = saved.spec
    elif rule.webhook is not None:
        spec = rule.webhook
    else:
        raise InvalidInput("the activity needs a url or a webhook_id", field="activity")
    limits = rule.limits if rule.limits.counting else None
    return CompiledRule(rule, predicate, compile_webhook(spec, field="activity"), limits)


@dataclass
class RuleIndex:
    """Enabled rules by event type, so an event only ever looks at its own rules.

    Rules of one brand sit among the others; only an event type that has any (in
    ``branded``) pays for checking brands, so brandless set-ups match as fast as before.
    """

    by_type: dict[str, tuple[CompiledRule, ...]] = field(default_factory=dict)
    branded: frozenset[str] = frozenset()
    # Event types with a rule that counts per user: only their events need its counters.
    counting: frozenset[str] = frozenset()
    # Stored rules and saved webhooks that could not be loaded, by id, for /healthz.
    problems: dict[str, Problem] = field(default_factory=dict)
    _cache: dict[str, tuple[int, int, CompiledRule]] = field(default_factory=dict, repr=False)

    def match(self, event_type: str, ext_brand_id: Any = None) -> tuple[CompiledRule, ...]:
        """The enabled rules of ``event_type`` that fire for an event of ``ext_brand_id``."""
        rules = self.by_type.get(event_type, ())
        if event_type not in self.branded:
            return rules
        brand = None if ext_brand_id is None else str(ext_brand_id)  # as keys.brand_text
        return tuple(
            c for c in rules if c.rule.ext_brand_id is None or c.rule.ext_brand_id == brand
        )

    def _mark(self, event_type: str) -> None:
        """Note whether ``event_type`` has any rule of one brand, and any that counts."""
        rules = self.by_type.get(event_type, ())
        if any(c.rule.ext_brand_id is not None for c in rules):
            self.branded = self.branded | {event_type}
        else:
            self.branded = self.branded - {event_type}
        if any(c.limits is not None for c in rules):
            self.counting = self.counting | {event_type}
        else:
            self.counting = self.counting - {event_type}

    def rebuild(self, rules: Iterable[Rule], webhooks: Mapping[str, SavedWebhook]) -> None:
        """Recompile only rules (or their saved webhooks) that changed since the last build.

        Nothing stored may stop hookline: a rule or webhook that cannot be loaded is logged,
        skipped and kept in ``problems``.
        """
        grouped: dict[str, list[CompiledRule]] = {}
        cache: dict[str, tuple[int, int, CompiledRule]] = {}
        problems: dict[str, Problem] = {}
        for webhook in webhooks.values():
            if webhook.problem is not None:
                log.error(
                    "webhook %s (%s) is skipped: %s",
                    printable(webhook.name),
                    webhook.id,
                    webhook.problem,
                )
                problems[webhook.id] = Problem("webhook", webhook.id, webhook.problem)
        for rule in rules:
            if rule.problem is not None:
                log.error(
                    "rule %s (%s) is skipped: %s", printable(rule.name), rule.id, rule.problem
                )
                problems[rule.id] = Problem("rule", rule.id, rule.problem)
                continue
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
                except Exception as exc:
                    # Saved rules were valid when saved; one that no longer is (a newer
                    # hookline is stricter, or the row was changed by hand) is skipped,
                    # loudly, rather than stopping all.
                    detail = (
                        exc.detail
                        if isinstance(exc, HooklineError)
                        else f"{exc.__class__.__name__}: {exc}"
                    )
                    log.error("rule %s (%s) is skipped: %s", printable(rule.name), rule.id, detail)
                    problems[rule.id] = Problem("rule", rule.id, detail)
                    continue
            cache[rule.id] = (rule.version, wh_version, compiled)
            grouped.setdefault(rule.event_type, []).append(compiled)
        self._cache = cache
        self.by_type = {k: tuple(v) for k, v in grouped.items()}
        self.branded = frozenset(
            k for k, v in grouped.items() if any(c.rule.ext_brand_id is not None for c in v)
        )
        self.counting = frozenset(
            k for k, v in grouped.items() if any(c.limits is not None for c in v)
        )
        self.problems = problems

    def put(self, compiled: CompiledRule, webhook_version: int = 0) -> None:
        """Add or replace one rule, touching only its event types' entries.

        A change older than the one indexed (by the rule's version, then by the version of
        the saved webhook it was compiled with) is ignored, so the index only moves forward.
        """
        rule = compiled.rule
        hit = self._cache.get(rule.id)
        if hit is not None and (hit[0], hit[1]) > (rule.version, webhook_version):
            return
        self.problems.pop(rule.id, None)  # saved again, and it compiled
        current = self.by_type.get(rule.event_type, ())
        position = next((i for i, c in enumerate(current) if c.rule.id == rule.id), None)
        self.remove(rule.id)
        self._cache[rule.id] = (rule.version, webhook_version, compiled)
        if rule.enabled:
            # A changed rule keeps its place among its event type's rules.
            kept = list(self.by_type.get(rule.event_type, ()))
            kept.insert(len(kept) if position is None else position, compiled)
            self.by_type[rule.event_type] = tuple(kept)
            self._mark(rule.event_type)

    def remove(self, rule_id: str) -> None:
        self.problems.pop(rule_id, None)
        hit = self._cache.pop(rule_id, None)
        if hit is None:
            return
        event_type = hit[2].rule.event_type
        kept = tuple(c for c in self.by_type.get(event_type, ()) if c.rule.id != rule_id)
        if kept:
            self.by_type[event_type] = kept
        else:
            self.by_type.pop(event_type, None)
        self._mark(event_type)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_type.values())
