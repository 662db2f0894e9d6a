"""The one composition root: builds store, signal, engine, dispatcher and echo from settings.

API and dispatcher are roles; today both run in one process on the embedded store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from hookline.catalog import Catalog
from hookline.dispatcher import Dispatcher
from hookline.echo import Echo
from hookline.engine import Engine
from hookline.keyring import KeyRing
from hookline.queue.embedded import LocalSignal
from hookline.sender import HttpSender, Sender
from hookline.sender_process import ProcessSender
from hookline.settings import Settings
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

    async def start(self) -> None:
        log.info("starting: opening %s", self.settings.database_path)
        await self.store.open()
        await self.keys.load()
        await self.engine.start()
        await self.dispatcher.start()
        self.started = True
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


def build_runtime(settings: Settings) -> Runtime:
    """Wire the embedded default: SQLite store, in-process signal."""
    store = open_sqlite(settings.database_path, synchronous=settings.sqlite_synchronous)
    signal = LocalSignal()
    sender: Sender
    if settings.senders:
        sender = ProcessSender(settings.senders, settings.max_concurrency, settings.max_per_host)
    else:
        sender = HttpSender(settings.max_concurrency, settings.max_per_host)
    dispatcher = Dispatcher(store, settings, signal, sender)
    journeys = JourneyStore(store.engine, store.read_engine)
    engine = Engine(store, settings, signal, handoff=dispatcher, journey_store=journeys)
    return Runtime(
        settings=settings,
        store=store,
        engine=engine,
        dispatcher=dispatcher,
        echo=Echo(store, settings.echo_keep),
        catalog=Catalog(store, engine),
        keys=KeyRing(store),
        journeys=journeys,
    )
