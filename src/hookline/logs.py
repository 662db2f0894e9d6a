"""Logging for ``hookline serve``: hookline's own lines, without the libraries' traces."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Libraries whose debug (and info) lines are their own traces, not hookline's decisions:
# the SQL driver and pool, the event loop, the HTTP client stack and form parsing.
QUIET = (
    "aiosqlite",
    "sqlalchemy",
    "asyncio",
    "aiohttp",
    "multipart",
    "python_multipart",
    "httpx",
    "httpcore",
)


def configure(level: str) -> None:
    """Send log lines to stderr at ``level``; the libraries above speak only at warning."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
    logging.getLogger().setLevel(level.upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def uvicorn_level(level: str) -> str:
    """uvicorn's own level: at most ``info``, since its debug lines trace each connection."""
    return "info" if level.lower() == "debug" else level.lower()
