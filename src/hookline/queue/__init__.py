"""Work signalling: how the ingest side tells dispatchers that deliveries are due.

The database is the source of truth (the outbox); a signal only saves a poll.
"""

from __future__ import annotations

from typing import Protocol


class WorkSignal(Protocol):
    """Wake dispatchers when new work is committed."""

    def notify(self) -> None: ...

    async def wait(self, timeout: float) -> bool:
        """Wait until notified or ``timeout`` seconds pass; True if notified."""
