"""The in-process signal used when API and dispatcher share one process."""

from __future__ import annotations

import asyncio
import contextlib


class LocalSignal:
    """An asyncio.Event that remembers a notify until the next wait consumes it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        if not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        notified = self._event.is_set()
        self._event.clear()
        return notified
