"""Writes of rules, saved webhooks and journeys: serialised, versioned, indexed in commit order.

Every write runs under the engine's rule lock, from the read it starts from to the index
change that follows its commit. So a write never works from a stale read (PATCH cannot
lose a concurrent change), the rule index changes in the order the store committed, and a
webhook cannot change between a rule reading it and the rule being saved. The store checks
versions and references again inside each transaction, for writers outside this process.

Journeys follow the same pattern: read, check the precondition, change, save at the
revision read, then change the journey index. A saved webhook's change recompiles the
journey versions that call it (refused, naming the journey, if one would no longer
compile), and a saved webhook is not deleted while a journey's definition, or an older
version with users inside, names it.

Signing secrets live here too: every rule and saved webhook gets one when created, keeps it
across changes, and replaces it only by a rotation. After each commit the key ring (what
the dispatcher signs with) learns the new secrets, in the same order as the index.
A URL whose host is a literal address the SSRF guard blocks is refused when saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hookline.brands import check_webhook_use
from hookline.engine import Engine
from hookline.errors import Conflict, HooklineError, NotFound, PreconditionFailed, StoreError
from hookline.events import later_than
from hookline.journeys import (
    CompiledJourney,
    Journey,
    JourneyStatus,
    check_journey_name,
    compile_journey,
    saved_webhooks_used,
    successor,
)
from hookline.labels import printable
from hookline.netguard import NetworkPolicy, check_literal_url
from hookline.redaction import check_url_credentials
from hookline.rules import CompiledRule, Rule, SavedWebhook, compile_rule
from hookline.signing import SecretRing, Signing
from hookline.store.base import Store
from hookline.store.journey_sql import JourneyStore
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

# Which brands' saved webhooks a writer may name: a key's ``sees``.
Sees = Callable[[Any], bool]


def _every_brand(brand: Any) -> bool:
    return True


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

    def rotate_rule_secret(self, current: Rule) -> Rule:
        """The rule with a new secret for its inline webhook; the old one signs for 24 h more.

        A change for :meth:`change_rule`.
        """
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

    def check_url(self, url: str, field: str) -> None:
        """What a save judges of a webhook URL beyond its syntax: no credentials in it, and
        no literal address the SSRF guard blocks (a name is judged when sent)."""
        check_url_credentials(url, field)
        check_literal_url(url, self.policy, field=field)

    async def check_rule(self, rule: Rule) -> tuple[CompiledRule, int]:
        """Compile ``rule`` as a save would; the saved webhook's version it was compiled with.

        Refuses what cannot run, naming the field and position, and an inline URL whose host
        is a literal address the SSRF guard blocks; writes nothing.
        """
        if rule.webhook is not None:
            self.check_url(rule.webhook.url, "activity.url")
        webhooks = {}
        webhook_version = 0
        if rule.webhook_id is not None:
            saved = await self.store.get_webhook(rule.webhook_id)
            if saved is not None:
                check_webhook_use("rule", rule.name, rule.ext_brand_id, saved)
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
        self.check_url(webhook.spec.url, "url")

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
                check_webhook_use("rule", rule.name, rule.ext_brand_id, webhook)
            for journey in self.engine.journeys.current.values():
                if webhook_id in journey.webhook_ids:
                    check_webhook_use(
                        "journey", journey.journey.name, journey.journey.ext_brand_id, webhook
                    )
            # Compiled before the write, so nothing can fail between its commit and the index.
            users = _compile_users(using, webhook)
            journeys = await self._recompile_journeys(webhook)
            stored = await self.store.save_webhook(
                webhook, create=False, expected_version=current.version
            )
            for rule_id, compiled in users:
                if compiled is None:
                    self.engine.remove_rule(rule_id)
                else:
                    self.engine.put_rule(compiled, stored.version)
            # Later steps of users already inside call the webhook as it is now, as rules do.
            self.engine.journeys.refresh(journeys)
            self.keyring.put(stored.id, stored.signing)
            return stored

    def rotate_webhook_secret(self, current: SavedWebhook) -> SavedWebhook:
        """The webhook with a new signing secret; the old one signs for 24 h more.

        A change for :meth:`change_webhook`.
        """
        return replace(
            current,
            signing=self._rotated(current.signing),
            updated_at=later_than(current.updated_at),
        )

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
            if self.engine.journey_store is not None:
                names = await self.engine.journey_store.journeys_using_webhook(webhook_id)
                if names:
                    raise Conflict(
                        f"journeys still use this webhook: {', '.join(names)}; change or "
                        "delete them first (an older version is in use until its users leave)",
                        field="webhook_id",
                    )
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

    async def _recompile_journeys(self, webhook: SavedWebhook) -> list[CompiledJourney]:
        """The indexed journey versions calling ``webhook``, compiled with its new form."""
        using = self.engine.journeys.using(webhook.id)
        if not using:
            return []
        webhooks = {w.id: w for w in await self.store.list_webhooks()}
        webhooks[webhook.id] = webhook
        compiled: list[CompiledJourney] = []
        for journey in using:
            try:
                compiled.append(compile_journey(journey.journey, webhooks))
            except HooklineError as exc:
                raise Conflict(
                    f"journey {journey.journey.name!r} (version {journey.version}) calls this "
                    f"webhook and would no longer compile: {exc.field or 'it'}: {exc.detail}",
                    field="webhook_id",
                ) from None
        return compiled

    # --- journeys --------------------------------------------------------------------------

    @property
    def journeys(self) -> JourneyStore:
        if self.engine.journey_store is None:
            raise StoreError("journeys are not available on this store")
        return self.engine.journey_store

    async def create_journey(self, journey: Journey, sees: Sees = _every_brand) -> Journey:
        """Save a new journey with a new signing secret; ``sees`` as in :meth:`check_journey`."""
        async with self.engine.rules_lock:
            saved = await self._save_journey(replace(journey, signing=Signing.new()), None, sees)
        await self._leave_if_stopped(saved, None)
        return saved

    async def change_journey(
        self,
        journey_id: str,
        change: Callable[[Journey], Journey],
        precondition: Precondition,
        sees: Sees = _every_brand,
    ) -> Journey:
        """Apply ``change`` to the journey as it is now (see :func:`journeys.successor`).

        The journey keeps its signing secrets unless ``change`` sets others (a rotation).
        """
        async with self.engine.rules_lock:
            current = await self._journey(journey_id)
            precondition.check("journey", current.revision)
            changed = change(current)
            await self._check_brand_move(current, changed)
            if changed.signing is None:
                changed = replace(changed, signing=current.signing or Signing.new())
            saved = await self._save_journey(successor(current, changed), current, sees)
        await self._leave_if_stopped(saved, current)
        return saved

    async def _check_brand_move(self, current: Journey, changed: Journey) -> None:
        """A journey moves to another brand only with nobody inside: users of the old brand
        would walk on in the new brand's journey, counted in its stats and sent to its
        webhooks."""
        if changed.ext_brand_id == current.ext_brand_id:
            return
        inside = await self.journeys.count_inside(current.id)
        if inside:
            raise Conflict(
                f"{inside} user(s) are inside journey {current.id}; a journey moves to another "
                "brand only with nobody inside: stop it (they leave), or let them finish, first",
                field="ext_brand_id",
            )

    def rotate_journey_secret(self, current: Journey) -> Journey:
        """The journey with a new secret for its inline webhook blocks; the old one signs for
        24 h more. Blocks that call a saved webhook sign with that webhook's secret.

        A change for :meth:`change_journey`.
        """
        return replace(
            current,
            signing=self._rotated(current.signing),
            updated_at=later_than(current.updated_at),
        )

    async def delete_journey(
        self,
        journey_id: str,
        precondition: Precondition,
        guard: Callable[[Journey], None] | None = None,
    ) -> None:
        """Everyone inside leaves (campaign_finished), then the journey and its rows go."""
        async with self.engine.rules_lock:
            current = await self._journey(journey_id)
            if guard is not None:
                guard(current)
            precondition.check("journey", current.revision)
        await self.engine.stop_journey(journey_id)
        async with self.engine.rules_lock:
            # At the revision checked: a write meanwhile is answered 409, not overwritten.
            if not await self.journeys.delete_journey(journey_id, current.revision):
                raise NotFound(f"no journey {journey_id!r}", field="journey_id")
            self.engine.journeys.remove(journey_id)
            self.keyring.remove(journey_id)

    async def check_journey(
        self, journey: Journey, sees: Sees = _every_brand, current: Journey | None = None
    ) -> CompiledJourney:
        """Compile ``journey`` as a save would (its saved webhooks as they are now).

        The saved webhooks it may name are those of a brand ``sees`` admits (a writer's key:
        another brand's webhook is, for it, one that does not exist). Blocks left as they
        were keep the webhooks they call, so a brand's admin can pause a journey that an
        admin of every brand pointed at a webhook of no brand.
        """
        check_journey_name(journey.name)
        kept: frozenset[str] = frozenset()
        same_blocks = current is not None and current.definition.get(
            "blocks"
        ) == journey.definition.get("blocks")
        if same_blocks:
            assert current is not None
            kept = saved_webhooks_used(current.definition)
        webhooks = {
            w.id: w
            for w in await self.store.list_webhooks()
            if w.id in kept or sees(w.ext_brand_id)
        }
        compiled = compile_journey(journey, webhooks)
        if not same_blocks:
            # An inline block is a webhook like a rule's: a literal blocked URL is refused
            # when saved. Blocks left as they were are not judged again, so a journey saved
            # before a range was closed can still be paused or stopped.
            for block in compiled.blocks.values():
                if block.webhook is not None and block.webhook_id is None:
                    field = f"blocks.{block.name}.activity.url"
                    self.check_url(block.webhook.spec.url, field)
        return compiled

    async def _journey(self, journey_id: str) -> Journey:
        journey = await self.journeys.get_journey(journey_id)
        if journey is None:
            raise NotFound(f"no journey {journey_id!r}", field="journey_id")
        return journey

    async def _save_journey(self, journey: Journey, current: Journey | None, sees: Sees) -> Journey:
        if current is None or current.name != journey.name:
            await self._check_journey_name(journey)
        compiled = await self.check_journey(journey, sees, current)
        saved = await self.journeys.save_journey(
            journey,
            create=current is None,
            expected_revision=None if current is None else current.revision,
        )
        if saved.status is JourneyStatus.DRAFT:
            self.engine.journeys.remove(saved.id)
        else:
            self.engine.journeys.put(replace(compiled, journey=saved))
        self.keyring.put(saved.id, saved.signing)
        return saved

    async def _check_journey_name(self, journey: Journey) -> None:
        """A name is how people and ``journeys apply`` tell journeys apart: one that differs
        from another only by case ("Welcome", "welcome") would be a second journey by mistake."""
        folded = journey.name.casefold()
        for other in await self.journeys.list_journeys():
            if other.id != journey.id and other.name.casefold() == folded:
                raise Conflict(
                    f"a journey named {other.name!r} already exists ({other.id}); names differ "
                    "by more than case",
                    field="name",
                )

    async def _leave_if_stopped(self, saved: Journey, current: Journey | None) -> None:
        """Users leave a journey that has just been stopped or archived."""
        leaving = (JourneyStatus.STOPPED, JourneyStatus.ARCHIVED)
        if saved.status in leaving and (current is None or current.status not in leaving):
            await self.engine.stop_journey(saved.id)


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
            log.error("rule %s (%s) is skipped: %s", printable(rule.name), rule.id, exc.detail)
            compiled.append((rule.id, None))
    return compiled
