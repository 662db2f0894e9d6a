from __future__ import annotations

import pytest

from hookline.errors import InvalidInput
from hookline.rules import Rule, RuleIndex, SavedWebhook, compile_rule
from hookline.webhooks import WebhookSpec


def _rule(i: int, event_type: str, *, enabled: bool = True, updated: int = 1) -> Rule:
    return Rule(
        id=f"rule_{i}",
        name=f"r{i}",
        enabled=enabled,
        event_type=event_type,
        conditions=None,
        webhook=WebhookSpec(url=f"http://h/{i}"),
        webhook_id=None,
        created_at=1,
        updated_at=updated,
    )


def test_index_groups_enabled_rules_by_event_type() -> None:
    index = RuleIndex()
    index.rebuild([_rule(1, "a"), _rule(2, "b"), _rule(3, "a"), _rule(4, "a", enabled=False)], {})
    assert [c.rule.id for c in index.match("a")] == ["rule_1", "rule_3"]
    assert [c.rule.id for c in index.match("b")] == ["rule_2"]
    assert index.match("c") == ()
    assert len(index) == 3


def test_rebuild_recompiles_only_changed_rules() -> None:
    index = RuleIndex()
    index.rebuild([_rule(1, "a"), _rule(2, "a")], {})
    first = {c.rule.id: c for c in index.match("a")}
    index.rebuild([_rule(1, "a"), _rule(2, "a", updated=2)], {})
    second = {c.rule.id: c for c in index.match("a")}
    assert second["rule_1"] is first["rule_1"]
    assert second["rule_2"] is not first["rule_2"]


def test_saved_webhook_reference() -> None:
    saved = SavedWebhook("wh_1", "crm", WebhookSpec(url="http://crm/x"), 1, 1)
    rule = Rule("rule_1", "r", True, "a", None, None, "wh_1", 1, 1)
    compiled = compile_rule(rule, {"wh_1": saved})
    assert compiled.webhook.spec.url == "http://crm/x"
    with pytest.raises(InvalidInput) as info:
        compile_rule(rule, {})
    assert info.value.field == "activity.webhook_id"
