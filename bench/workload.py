"""The events every measurement sends, and the webhook body each one should become."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MATCHED_TYPE = "bench_spin"
UNMATCHED_TYPE = "bench_unmatched"
LEVELS = ("bronze", "silver", "gold", "vip")
# The rule's body template; the receiver finds "seq": N in what it renders.
BODY_TEMPLATE = (
    '{"seq": {{event.seq}}, "user": "{{event.user_ext_id}}", '
    '"level": "{{state.level}}", "spins": {{event.spins}}}'
)


@dataclass(frozen=True)
class Workload:
    """Which events to send: their type, how many users and destinations they spread over."""

    event_type: str = MATCHED_TYPE
    users: int = 10_000
    dests: int = 1
    run: str = "r"

    def event(self, seq: int) -> dict[str, Any]:
        """Event number ``seq`` in hookline's envelope; ``seq`` is unique within a run."""
        event_type = self.event_type
        if self.dests > 1:
            event_type = dest_event_type(seq % self.dests)
        return {
            "eid": f"{self.run}-{seq}",
            "event_type": event_type,
            "user_ext_id": user_id(seq % self.users),
            "ext_brand_id": "brand-1",
            "payload": {"seq": seq, "spins": 1 + seq % 7, "game": "wheel"},
        }


def user_id(index: int) -> str:
    return f"user-{index}"


def user_level(index: int) -> str:
    return LEVELS[index % len(LEVELS)]


def dest_event_type(dest: int) -> str:
    """With many destinations, one event type (and one rule) per destination port."""
    return f"{MATCHED_TYPE}_d{dest}"


def rendered_body(event: dict[str, Any]) -> dict[str, Any]:
    """What hookline's template makes of ``event`` (used by the limit and Celery runs)."""
    user = event["user_ext_id"]
    return {
        "seq": event["payload"]["seq"],
        "user": user,
        "level": user_level(int(user.rpartition("-")[2])),
        "spins": event["payload"]["spins"],
    }
