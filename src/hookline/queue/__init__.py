"""How the ingest side passes work to dispatchers.

The database is the source of truth (the outbox). A signal only saves a poll; a handoff
only saves a claim: deliveries written already leased to a dispatcher in the same process
go straight to its memory, and a crash frees them in the database when the lease ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hookline.deliveries import Delivery


class WorkSignal(Protocol):
    """Wake dispatchers when new work is committed."""

    def notify(self) -> None: ...

    async def wait(self, timeout: float) -> bool:
        """Wait until notified or ``timeout`` seconds pass; True if notified."""


class Handoff(Protocol):
    """A dispatcher in this process that takes committed deliveries without a claim."""

    def capacity(self) -> int:
        """How many more deliveries it will hold now; the rest are left to claims."""

    def room(self, destination: str) -> int:
        """How many more for this destination (a slow one must not take every place)."""

    def offer(self, deliveries: Sequence[Delivery]) -> None:
        """Take deliveries that were committed leased to it; call after the commit."""
