from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from hookline.settings import Settings
from tests.helpers import Hookline, Receiver, serve


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Fast retries so tests see the whole schedule without waiting.
    return Settings(data_dir=tmp_path / "data", retry_schedule=(0, 0.01, 0.01))


@pytest.fixture
async def make_hookline(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Coroutine[Any, Any, Hookline]]]:
    started: list[Hookline] = []

    async def make(**overrides: Any) -> Hookline:
        base: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "retry_schedule": (0, 0.01, 0.01),
            # Sending in-process starts faster; test_e2e and the subprocess tests cover both.
            "sender_processes": 0,
        }
        base.update(overrides)
        h = await serve(Settings(**base))
        started.append(h)
        return h

    yield make
    for h in reversed(started):
        await h.stop()


@pytest.fixture
async def hookline(make_hookline: Callable[..., Coroutine[Any, Any, Hookline]]) -> Hookline:
    return await make_hookline()
