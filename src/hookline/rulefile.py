"""Rules as code: the rule kind of :mod:`hookline.applyfile`, and its local checks.

``hookline rules apply`` makes each stored rule equal to its entry in the file (a key left
out means its default, so removing ``conditions:`` clears them), matched by name. Secret
header values are masked on both sides; the server marks those that differ (``compare_to``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hookline.applyfile import Kind, diff, dotted, duplicate_names, error_line
from hookline.errors import HooklineError
from hookline.readonly import RULE
from hookline.values import same

__all__ = ["RULES", "check", "diff", "same"]

# The keys of a rule as written; the server adds the read-only ones (hookline.readonly.RULE).
RULE_KEYS = (
    *("name", "description", "enabled", "ext_brand_id", "trigger", "conditions"),
    *("once_per_user", "frequency", "accumulate", "activity"),
)


def check(rules: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every problem found without a server: shape, types, conditions and templates.

    The same pydantic models and compilers as the server's, so a file refused here would be
    refused there. A reference to a saved webhook is left to the server, which has them.
    """
    # Imported here: the API models pull in the web stack, which only `apply` needs.
    from pydantic import ValidationError

    from hookline.api.models import RuleIn, error_location
    from hookline.api.rules import activity_spec, limits_of
    from hookline.conditions import compile_conditions
    from hookline.webhooks import compile_webhook

    problems = duplicate_names(RULES, rules)
    for index, raw in enumerate(rules):
        where = RULES.label(raw, index)
        try:
            rule = RuleIn.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                field = dotted(error_location(error))
                problems.append(error_line(where, field, str(error["msg"])))
            continue
        try:
            compile_conditions(rule.conditions, field="conditions")
            limits_of(rule)
            spec, _ = activity_spec(rule.activity)
            if spec is not None:
                compile_webhook(spec, field="activity")
        except HooklineError as exc:
            problems.append(error_line(where, exc.field, exc.detail))
    return problems


RULES = Kind("rule", "rules", RULE_KEYS, check, RULE)
