"""Writes of rules and saved webhooks: serialised, versioned, and indexed in commit order.

Every write runs under the engine's rule lock, from the read it starts from to the index
change that follows its commit. So a write never works from a stale read (PATCH cannot
lose a concurrent change), the rule index changes in the order the store committed, and a
webhook cannot change between a rule reading it and the rule being saved. The store checks
versions and references again inside each transaction, for writers outside this process.

Journeys are meant to follow the same pattern: read, check the precondition, change,
save at the version read, then change what is held in memory.

Signing secrets live here too: every rule and saved webhook gets one when created, keeps it
across changes, and replaces it only by a rotation. After each commit the key ring (what
the dispatcher signs with) learns the new secrets, in the same order as the index.
A URL whose host is a literal address the SSRF guard blocks is refused when saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from hookline.engine import Engine
from hookline.errors import Conflict, HooklineError, NotFound, PreconditionFailed
from hookline.events import later_than
from hookline.netguard import NetworkPolicy, check_literal_url
from hookline.rules import CompiledRule, Rule, SavedWebhook, compile_rule
from hookline.signing import SecretRing, Signing
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

    def __init__(
        self,
        store: Store,
        engine: Engine,
        keyring: SecretRing | None = None,
        policy: NetworkPolicy | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.keyring = keyring if keyring is not None else SecretRing()
        self.policy = policy if policy is not None else NetworkPolicy()

    async def load_keys(self) -> None:
        """Fill the key ring from the store (at start, before the dispatcher sends)."""
        async with self.engine.rules_lock:
            self.keyring.load(await self.store.list_signing())

    # --- rules -------------------------------------------------------------------------

    async def create_rule(self, rule: Rule) -> Rule:
        async with self.engine.rules_lock:
            return await self._save_rule(replace(rule, signing=Signing.new()), None)

    async def change_rule(
        self, rule_id: str, change: Callable[[Rule], Rule], precondition: Precondition
    ) -> Rule:
        """Apply ``change`` to the rule as it is now, atomically with respect to other writes.

        The rule keeps its signing secrets unless ``change`` sets others (a rotation).
        """
        async with self.engine.rules_lock:
            current = await self._rule(rule_id)
            precondition.check("rule", current.version)
            changed = change(current)
            if changed.signing is None:
                changed = replace(changed, signing=current.signing or Signing.new())
            # Counts made under another frequency or accumulate mean something else: a new
            # epoch starts them over (lazily, user by user; see counters.Counter.under).
            restart = current.problem is not None or current.limits.restarts(changed.limits)
            epoch = current.counting_epoch + 1 if restart else current.counting_epoch
            changed = replace(changed, counting_epoch=epoch)
            return await self._save_rule(changed, current.version)

    async def rotate_rule_secret(self, rule_id: str, precondition: Precondition) -> Rule:
        """A new signing secret for the rule's inline webhook; the old one signs for 24 h more."""

        def rotate(current: Rule) -> Rule:
            if current.webhook_id is not None:
                raise Conflict(
                    f"this rule calls the saved webhook {current.webhook_id}, which signs with "
                    f"its own secret: rotate it at /api/v1/webhooks/{current.webhook_id}"
                    "/rotate-secret",
                    field="rule_id",
                )
            return replace(
                current,
                signing=self._rotated(current.signing),
                updated_at=later_than(current.updated_at),
            )

        return await self.change_rule(rule_id, rotate, precondition)

    def _rotated(self, signing: Signing | None) -> Signing:
        if signing is None:
            return Signing.new()
        return signing.rotated(self.keyring.clock())

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
            self.keyring.remove(rule_id)

    async def _rule(self, rule_id: str) -> Rule:
        rule = await self.store.get_rule(rule_id)
        if rule is None:
            raise NotFound(f"no rule {rule_id!r}", field="rule_id")
        return rule

    async def check_rule(self, rule: Rule) -> tuple[CompiledRule, int]:
        """Compile ``rule`` as a save would; the saved webhook's version it was compiled with.

        Refuses what cannot run, naming the field and position, and an inline URL whose host
        is a literal address the SSRF guard blocks; writes nothing.
        """
        if rule.webhook is not None:
            check_literal_url(rule.webhook.url, self.policy, field="activity.url")
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
        self.keyring.put(stored.id, stored.signing)
        return stored

    # --- saved webhooks ------------------------------------------------------------------

    def check_webhook(self, webhook: SavedWebhook) -> None:
        """Refuse a webhook that cannot run or whose URL names a blocked address."""
        compile_webhook(webhook.spec)
        check_literal_url(webhook.spec.url, self.policy, field="url")

    async def create_webhook(self, webhook: SavedWebhook) -> SavedWebhook:
        webhook = replace(webhook, signing=Signing.new())
        self.check_webhook(webhook)
        async with self.engine.rules_lock:
            stored = await self.store.save_webhook(webhook, create=True)
            self.keyring.put(stored.id, stored.signing)
            return stored

    async def change_webhook(
        self,
        webhook_id: str,
        change: Callable[[SavedWebhook], SavedWebhook],
        precondition: Precondition,
    ) -> SavedWebhook:
        """Apply ``change`` to the webhook as it is now; the rules using it follow at once.

        It keeps its signing secrets unless ``change`` sets others (a rotation).
        """
        async with self.engine.rules_lock:
            current = await self._webhook(webhook_id)
            precondition.check("webhook", current.version)
            webhook = change(current)
            if webhook.signing is None:
                webhook = replace(webhook, signing=current.signing or Signing.new())
            self.check_webhook(webhook)
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
            self.keyring.put(stored.id, stored.signing)
            return stored

    async def rotate_webhook_secret(
        self, webhook_id: str, precondition: Precondition
    ) -> SavedWebhook:
        """A new signing secret for a saved webhook; the old one signs for 24 h more."""

        def rotate(current: SavedWebhook) -> SavedWebhook:
            return replace(
                current,
                signing=self._rotated(current.signing),
                updated_at=later_than(current.updated_at),
            )

        return await self.change_webhook(webhook_id, rotate, precondition)

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
            self.keyring.remove(webhook_id)

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
