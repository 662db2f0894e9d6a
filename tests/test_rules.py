from __future__ import annotations

import pytest

from hookline.errors import InvalidInput
from hookline.rules import Rule, RuleIndex, SavedWebhook, compile_rule
from hookline.webhooks import WebhookSpec


def _rule(i: int, event_type: str, *, enabled: bool = True, version: int = 1) -> Rule:
    return Rule(
        id=f"rule_{i}",
        name=f"r{i}",
        enabled=enabled,
        event_type=event_type,
        conditions=None,
        webhook=WebhookSpec(url=f"http://h/{i}"),
        webhook_id=None,
        created_at=1,
        updated_at=1,  # times can tie; the version tells the changes apart
        version=version,
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
    index.rebuild([_rule(1, "a"), _rule(2, "a", version=2)], {})
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


def test_put_and_remove_touch_one_rule_and_keep_its_place() -> None:
    index = RuleIndex()
    index.rebuild([_rule(1, "a"), _rule(2, "a"), _rule(3, "b")], {})
    index.put(compile_rule(_rule(1, "a", version=2), {}))
    assert [c.rule.id for c in index.match("a")] == ["rule_1", "rule_2"]
    assert index.match("a")[0].rule.version == 2
    index.put(compile_rule(_rule(4, "a"), {}))
    assert [c.rule.id for c in index.match("a")] == ["rule_1", "rule_2", "rule_4"]
    index.put(compile_rule(_rule(2, "b", version=2), {}))  # moved to another event type
    assert [c.rule.id for c in index.match("a")] == ["rule_1", "rule_4"]
    assert [c.rule.id for c in index.match("b")] == ["rule_3", "rule_2"]
    index.put(compile_rule(_rule(3, "b", enabled=False, version=2), {}))
    assert [c.rule.id for c in index.match("b")] == ["rule_2"]
    index.remove("rule_2")
    index.remove("rule_2")  # twice is harmless
    assert index.match("b") == ()
    assert "b" not in index.by_type
    assert len(index) == 2


def test_put_ignores_an_older_version_than_the_indexed_one() -> None:
    index = RuleIndex()
    index.put(compile_rule(_rule(1, "a", version=5), {}))
    index.put(compile_rule(_rule(1, "b", version=4), {}))
    assert [c.rule.version for c in index.match("a")] == [5]
    assert index.match("b") == ()
