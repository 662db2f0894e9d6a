"""hookline's background loops: each runs until hookline stops, and its end is never silent.

The ingest writer, the journey timer, the dispatcher's claim loop and its recorder catch
what they expect and go on. Should one end all the same (a bug), it says so in the log, and
``/healthz`` answers 503 naming it, so an orchestrator restarts the process instead of
leaving it to accept events nothing moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("hookline")


def supervised(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """Run ``work`` as the background loop ``name``; its end, but by a stop, is logged."""
    task = asyncio.get_running_loop().create_task(work, name=name)
    task.add_done_callback(_said)
    return task


def _said(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return  # stopped with hookline (or by its owner)
    exc = task.exception()
    log.error(
        "%s ended%s; /healthz answers 503 until hookline is restarted",
        task.get_name(),
        f" by a bug: {exc!r}" if exc is not None else "",
        exc_info=exc,
    )


def ended(*tasks: asyncio.Task[None] | None) -> list[str]:
    """The names of the ``tasks`` that are no longer running (None: not started)."""
    return [task.get_name() for task in tasks if task is not None and task.done()]
