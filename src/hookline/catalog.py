"""Writes of rules and saved webhooks: serialised, versioned, and indexed in commit order.

Every write runs under the engine's rule lock, from the read it starts from to the index
change that follows its commit. So a write never works from a stale read (PATCH cannot
lose a concurrent change), the rule index changes in the order the store committed, and a
webhook cannot change between a rule reading it and the rule being saved. The store checks
versions and references again inside each transaction, for writers outside this process.

Journeys are meant to follow the same pattern: read, check the precondition, change,
save at the version read, then change what is held in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from hookline.engine import Engine
from hookline.errors import Conflict, HooklineError, NotFound, PreconditionFailed
from hookline.rules import CompiledRule, Rule, SavedWebhook, compile_rule
from hookline.store.base import Store
from hookline.webhooks import compile_webhook

log = logging.getLogger("hookline.catalog")


@dataclass(frozen=True, slots=True)
class Precondition:
    """The versions a write may apply to (from an If-Match); ``None`` means any."""

    versions: frozenset[int] | None = None

    def check(self, kind: str, current: int) -> None:
        """PreconditionFailed unless the resource is at one of the versions asked for."""
        if self.versions is not None and current not in self.versions:
            raise PreconditionFailed(
                f'the {kind} is at version {current} (ETag "{current}"), not the one given; '
                "read it again and retry",
                field="If-Match",
            )


ANY_VERSION = Precondition()


class Catalog:
    """The one way rules and saved webhooks change while hookline runs."""

    def __init__(self, store: Store, engine: Engine) -> None:
        self.store = store
        self.engine = engine

    # --- rules -------------------------------------------------------------------------

    async def create_rule(self, rule: Rule) -> Rule:
        async with self.engine.rules_lock:
            return await self._save_rule(rule, None)

    async def change_rule(
        self, rule_id: str, change: Callable[[Rule], Rule], precondition: Precondition
    ) -> Rule:
        """Apply ``change`` to the rule as it is now, atomically with respect to other writes."""
        async with self.engine.rules_lock:
            current = await self._rule(rule_id)
            precondition.check("rule", current.version)
            return await self._save_rule(change(current), current.version)

    async def delete_rule(
        self,
        rule_id: str,
        precondition: Precondition,
        guard: Callable[[Rule], None] | None = None,
    ) -> None:
        """Delete; ``guard`` may refuse the rule as stored (e.g. another brand's: NotFound)."""
        async with self.engine.rules_lock:
            current = await self._rule(rule_id)
            if guard is not None:
                guard(current)
            precondition.check("rule", current.version)
            if not await self.store.delete_rule(rule_id, expected_version=current.version):
                raise NotFound(f"no rule {rule_id!r}", field="rule_id")
            self.engine.remove_rule(rule_id)

    async def _rule(self, rule_id: str) -> Rule:
        rule = await self.store.get_rule(rule_id)
        if rule is None:
            raise NotFound(f"no rule {rule_id!r}", field="rule_id")
        return rule

    async def check_rule(self, rule: Rule) -> tuple[CompiledRule, int]:
        """Compile ``rule`` as a save would; the saved webhook's version it was compiled with.

        Refuses what cannot run, naming the field and position; writes nothing.
        """
        webhooks = {}
        webhook_version = 0
        if rule.webhook_id is not None:
            saved = await self.store.get_webhook(rule.webhook_id)
            if saved is not None:
                _same_brand(rule, saved)
                webhooks[saved.id] = saved
                webhook_version = saved.version
        return compile_rule(rule, webhooks), webhook_version

    async def _save_rule(self, rule: Rule, expected_version: int | None) -> Rule:
        compiled, webhook_version = await self.check_rule(rule)
        stored = await self.store.save_rule(
            rule, create=expected_version is None, expected_version=expected_version
        )
        self.engine.put_rule(replace(compiled, rule=stored), webhook_version)
        return stored

    # --- saved webhooks ------------------------------------------------------------------

    async def create_webhook(self, webhook: SavedWebhook) -> SavedWebhook:
        compile_webhook(webhook.spec)
        async with self.engine.rules_lock:
            return await self.store.save_webhook(webhook, create=True)

    async def change_webhook(
        self,
        webhook_id: str,
        change: Callable[[SavedWebhook], SavedWebhook],
        precondition: Precondition,
    ) -> SavedWebhook:
        """Apply ``change`` to the webhook as it is now; the rules using it follow at once."""
        async with self.engine.rules_lock:
            current = await self._webhook(webhook_id)
            precondition.check("webhook", current.version)
            webhook = change(current)
            compile_webhook(webhook.spec)
            using = await self.store.rules_using_webhook(webhook_id)
            for rule in using:
                _same_brand(rule, webhook)
            # Compiled before the write, so nothing can fail between its commit and the index.
            users = _compile_users(using, webhook)
            stored = await self.store.save_webhook(
                webhook, create=False, expected_version=current.version
            )
            for rule_id, compiled in users:
                if compiled is None:
                    self.engine.remove_rule(rule_id)
                else:
                    self.engine.put_rule(compiled, stored.version)
            return stored

    async def delete_webhook(
        self,
        webhook_id: str,
        precondition: Precondition,
        guard: Callable[[SavedWebhook], None] | None = None,
    ) -> None:
        async with self.engine.rules_lock:
            current = await self._webhook(webhook_id)
            if guard is not None:
                guard(current)
            precondition.check("webhook", current.version)
            # The store refuses (409, naming them) while any rule uses it.
            if not await self.store.delete_webhook(webhook_id, expected_version=current.version):
                raise NotFound(f"no webhook {webhook_id!r}", field="webhook_id")
            self.engine.index.problems.pop(webhook_id, None)  # a broken one is gone for good

    async def _webhook(self, webhook_id: str) -> SavedWebhook:
        saved = await self.store.get_webhook(webhook_id)
        if saved is None:
            raise NotFound(f"no webhook {webhook_id!r}", field="webhook_id")
        return saved


def _same_brand(rule: Rule, webhook: SavedWebhook) -> None:
    """A webhook of one brand serves rules of that brand only (a rule of none fires for all)."""
    if webhook.ext_brand_id is not None and rule.ext_brand_id != webhook.ext_brand_id:
        rule_brand = "every brand" if rule.ext_brand_id is None else repr(rule.ext_brand_id)
        raise Conflict(
            f"the saved webhook {webhook.id!r} belongs to brand {webhook.ext_brand_id!r} and "
            f"rule {rule.name!r} fires for {rule_brand}: give them the same ext_brand_id",
            field="ext_brand_id",
        )


def _compile_users(
    rules: list[Rule], webhook: SavedWebhook
) -> list[tuple[str, CompiledRule | None]]:
    """The rules using ``webhook``, compiled with it; None for one that no longer compiles."""
    compiled: list[tuple[str, CompiledRule | None]] = []
    for rule in rules:
        try:
            compiled.append((rule.id, compile_rule(rule, {webhook.id: webhook})))
        except HooklineError as exc:
            # As at start-up: a stored rule that no longer compiles is skipped, loudly.
            log.error("rule %s (%s) is skipped: %s", rule.name, rule.id, exc.detail)
            compiled.append((rule.id, None))
    return compiled
