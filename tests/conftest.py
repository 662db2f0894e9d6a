from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from hookline.netguard import parse_networks
from hookline.runtime import Runtime, build_runtime
from hookline.settings import SENDERS, Settings
from tests.helpers import Hookline, Receiver, serve

# The receivers of the tests listen on 127.0.0.1, which the SSRF guard blocks by default:
# the tests allow it on purpose, as an operator would with HOOKLINE_ALLOWED_NETWORKS.
# Tests of the guard itself pass allowed_networks=() to see the default.
LOOPBACK = parse_networks("127.0.0.0/8")

# The safety net (tests/netsafety/sitecustomize.py): in this process, and in every Python
# process a test starts (PYTHONPATH makes Python import it at start-up).
_NETSAFETY = Path(__file__).resolve().parent / "netsafety"
os.environ["NETSAFETY_LOOPBACK_ONLY"] = "1"
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(_NETSAFETY), os.environ.get("PYTHONPATH")) if p
)
_spec = importlib.util.spec_from_file_location(
    "hookline_test_netsafety", _NETSAFETY / "sitecustomize.py"
)
assert _spec is not None and _spec.loader is not None
netsafety = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(netsafety)
netsafety.install()


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    """Fail any test during which something tried to reach beyond loopback."""
    netsafety.violations.clear()
    yield
    tried = list(netsafety.violations)
    netsafety.violations.clear()
    assert not tried, f"a test tried to leave loopback: {tried}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    """A runtime's store and engine, started on a fresh data directory (no server)."""
    rt = build_runtime(Settings(data_dir=tmp_path))
    await rt.store.open()
    await rt.engine.start()
    yield rt
    await rt.engine.stop()
    await rt.store.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Fast retries so tests see the whole schedule without waiting.
    return Settings(
        data_dir=tmp_path / "data", retry_schedule=(0, 0.01, 0.01), allowed_networks=LOOPBACK
    )


@pytest.fixture
def sender_kind() -> str:
    """The HTTP client the tests' hookline sends with: the default.

    A module of contract tests runs every sender by defining its own ``sender_kind`` over
    ``params=SENDERS`` (see ``each_sender``).
    """
    return Settings().sender


def each_sender(request: pytest.FixtureRequest) -> str:
    """The body of a module's ``sender_kind`` fixture that runs its tests with every sender."""
    kind: str = request.param
    assert kind in SENDERS
    return kind


@pytest.fixture
async def make_hookline(
    tmp_path: Path, sender_kind: str
) -> AsyncIterator[Callable[..., Coroutine[Any, Any, Hookline]]]:
    started: list[Hookline] = []

    async def make(*, lookup: Any = None, clock: Any = None, **overrides: Any) -> Hookline:
        base: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "retry_schedule": (0, 0.01, 0.01),
            # Sending in-process starts faster; test_e2e and the subprocess tests cover both.
            "sender_processes": 0,
            "allowed_networks": LOOPBACK,
            "sender": sender_kind,
        }
        base.update(overrides)
        h = await serve(Settings(**base), lookup=lookup, clock=clock)
        started.append(h)
        return h

    yield make
    for h in reversed(started):
        await h.stop()


@pytest.fixture
async def hookline(make_hookline: Callable[..., Coroutine[Any, Any, Hookline]]) -> Hookline:
    return await make_hookline()
