"""The one composition root: builds store, signal, engine, dispatcher and echo from settings.

API and dispatcher are roles; today both run in one process on the embedded store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hookline.catalog import Catalog
from hookline.dispatcher import Dispatcher
from hookline.echo import Echo
from hookline.engine import Engine
from hookline.keyring import KeyRing
from hookline.netguard import Lookup, NetworkPolicy, own_addresses, system_lookup
from hookline.queue.embedded import LocalSignal
from hookline.rules import Problem
from hookline.sender import Sender, local_sender
from hookline.sender_process import ProcessSender
from hookline.settings import Settings
from hookline.signing import SecretRing
from hookline.store.base import Store
from hookline.store.journey_sql import JourneyStore
from hookline.store.sqlite import open_sqlite

log = logging.getLogger("hookline")


@dataclass
class Runtime:
    """Everything a running hookline holds, started and stopped in order."""

    settings: Settings
    store: Store
    engine: Engine
    dispatcher: Dispatcher
    echo: Echo
    catalog: Catalog
    keys: KeyRing
    journeys: JourneyStore | None = None
    started: bool = field(default=False)
    started_at: float | None = None  # Unix time (s) of the last start

    def problems(self) -> list[Problem]:
        """What stored could not be loaded and is skipped: rules, webhooks, journeys, instances."""
        problems = list(self.engine.index.problems.values())
        journeys = self.engine.journeys
        problems += [Problem("journey", i, d) for i, d in sorted(journeys.problems.items())]
        problems += [
            Problem("journey_instance", i, d) for i, d in sorted(journeys.unreadable.items())
        ]
        return problems

    def failing(self) -> list[str]:
        """Background loops that ended while hookline runs (see hookline.supervision)."""
        return self.engine.failing() + self.dispatcher.failing() if self.started else []

    async def start(self) -> None:
        log.info("starting: opening %s", self.settings.database_path)
        await self.store.open()
        await self.keys.load()
        await self.engine.start()
        await self.catalog.load_keys()  # before the dispatcher sends anything
        await self.dispatcher.start()
        self.started = True
        self.started_at = time.time()
        log.info(
            "hookline ready: %d enabled rules, %d sender processes, data in %s",
            len(self.engine.index),
            self.settings.senders,
            self.settings.data_dir,
        )

    async def stop(self) -> None:
        """Stop taking work, commit what was accepted, finish sends, close the store."""
        self.started = False
        log.info("stopping: committing the events already accepted, then finishing sends")
        await self.engine.stop()
        await self.dispatcher.stop()
        await self.store.close()
        log.info("stopped")


def network_policy(settings: Settings) -> NetworkPolicy:
    """The SSRF guard's policy: the allowed ranges, and hookline's own echo service."""
    return NetworkPolicy(settings.allowed_networks, own_addresses(settings.host, settings.port))


def build_runtime(
    settings: Settings,
    *,
    lookup: Lookup | None = None,
    clock: Callable[[], int] | None = None,
) -> Runtime:
    """Wire the embedded default: SQLite store, in-process signal.

    ``lookup`` replaces the system resolver (tests map names to loopback with it; it cannot
    cross to sender processes, so it needs ``sender_processes=0``); ``clock`` (ms) decides
    when a rotated signing secret stops signing.
    """
    if lookup is not None and settings.senders:
        raise ValueError("a lookup stub works only with sender_processes=0 (in-process)")
    store = open_sqlite(settings.database_path, synchronous=settings.sqlite_synchronous)
    signal = LocalSignal()
    policy = network_policy(settings)
    secrets = SecretRing(clock) if clock is not None else SecretRing()
    sender: Sender
    if settings.senders:
        sender = ProcessSender(
            settings.senders,
            settings.max_concurrency,
            settings.max_per_host,
            policy,
            kind=settings.sender,
        )
    else:
        sender = local_sender(
            settings.sender,
            settings.max_concurrency,
            settings.max_per_host,
            policy,
            lookup or system_lookup,
        )
    dispatcher = Dispatcher(store, settings, signal, sender, secrets)
    journeys = JourneyStore(store.engine, store.read_engine)
    engine = Engine(store, settings, signal, handoff=dispatcher, journey_store=journeys)
    dispatcher.record_outcomes = engine.record_outcomes  # attempts ride with ingest commits
    return Runtime(
        settings=settings,
        store=store,
        engine=engine,
        dispatcher=dispatcher,
        echo=Echo(store, settings.echo_keep),
        catalog=Catalog(store, engine, secrets, policy),
        keys=KeyRing(store),
        journeys=journeys,
    )
