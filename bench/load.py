"""The load process: posts events to an HTTP endpoint with aiohttp, flat out or rate-paced.

``burst``: ``--events`` events (or as many as fit in ``--seconds``, when given) in requests
of ``--batch``, over ``--connections`` keep-alive connections, as fast as the server
answers. ``paced``: ``--rate`` events/s for ``--duration`` s, one request every ``--tick`` s
carrying that tick's events (open loop: a slow answer does not delay the next send).
Every request's first seq, size, status, send and completion times (monotonic ns; the
completion is the acceptance time of its events) go to ``--out`` as JSON, with the first
seq no request used (``next_seq``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.procs import run_async
from bench.workload import Workload

ACCEPTED = (200, 201, 202)


@dataclass
class Record:
    """Every request's outcome: (first seq, events, status, completion ns, sent ns)."""

    requests: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def note(self, seq: int, size: int, status: int, sent: int, detail: str = "") -> None:
        self.requests.append((seq, size, status, time.monotonic_ns(), sent))
        self.statuses[status] += 1
        if status not in ACCEPTED and len(self.errors) < 20:
            self.errors.append(f"seq {seq}: {status} {detail[:300]}")


async def post(
    session: aiohttp.ClientSession,
    url: str,
    workload: Workload,
    seq: int,
    size: int,
    single: bool,
    record: Record,
) -> None:
    """One request holding events seq..seq+size-1 (a bare object when ``single``)."""
    events = [workload.event(s) for s in range(seq, seq + size)]
    body = orjson.dumps(events[0] if single else events)
    sent = time.monotonic_ns()
    try:
        async with session.post(
            url, data=body, headers={"content-type": "application/json"}
        ) as response:
            text = await response.read()
            record.note(seq, size, response.status, sent, text.decode(errors="replace"))
    except (TimeoutError, aiohttp.ClientError) as exc:
        record.note(seq, size, 0, sent, f"{type(exc).__name__}: {exc}")


def first_seqs(seq0: int, events: int, batch: int, seconds: float) -> Iterator[int]:
    """The first seq of each request: ``events`` in all, or until ``seconds`` have passed."""
    if seconds <= 0:
        yield from range(seq0, seq0 + events, batch)
        return
    deadline = time.monotonic() + seconds
    seq = seq0
    while time.monotonic() < deadline:
        yield seq
        seq += batch


async def burst(
    url: str,
    workload: Workload,
    events: int,
    batch: int,
    connections: int,
    seq0: int,
    seconds: float = 0.0,
) -> Record:
    """Send ``events`` events (or for ``seconds``) flat out from ``connections`` workers."""
    record = Record()
    starts = first_seqs(seq0, events, batch, seconds)
    single = batch == 1
    last = seq0 + events if seconds <= 0 else None

    async def worker(session: aiohttp.ClientSession) -> None:
        for seq in starts:
            size = batch if last is None else min(batch, last - seq)
            await post(session, url, workload, seq, size, single, record)

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    return record


async def paced(
    url: str,
    workload: Workload,
    rate: float,
    duration: float,
    tick: float,
    connections: int,
    seq0: int,
) -> Record:
    """Offer ``rate`` events/s for ``duration`` s, one request per tick, on a fixed schedule."""
    record = Record()
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=300)
    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        ticks = int(duration / tick)
        sent = 0
        for k in range(ticks):
            due = started + k * tick
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            size = round((k + 1) * tick * rate) - sent
            if size <= 0:
                continue
            tasks.append(
                asyncio.create_task(
                    post(session, url, workload, seq0 + sent, size, size == 1, record)
                )
            )
            sent += size
        await asyncio.gather(*tasks)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mode", choices=("burst", "paced"), default="burst")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=0.0, help="burst for this long instead")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--tick", type=float, default=0.01)
    parser.add_argument("--seq-start", type=int, default=0)
    parser.add_argument("--event-type", default=Workload.event_type)
    parser.add_argument("--users", type=int, default=Workload.users)
    parser.add_argument("--dests", type=int, default=Workload.dests)
    parser.add_argument("--run", default="r")
    args = parser.parse_args()
    workload = Workload(args.event_type, args.users, args.dests, args.run)
    started = time.monotonic_ns()
    if args.mode == "burst":
        coro = burst(
            args.url,
            workload,
            args.events,
            args.batch,
            args.connections,
            args.seq_start,
            args.seconds,
        )
    else:
        coro = paced(
            args.url,
            workload,
            args.rate,
            args.duration,
            args.tick,
            args.connections,
            args.seq_start,
        )
    record = run_async(coro)
    result: dict[str, Any] = {
        "started_ns": started,
        "finished_ns": time.monotonic_ns(),
        "requests": record.requests,
        "statuses": {str(k): v for k, v in record.statuses.items()},
        "errors": record.errors,
        "next_seq": max((r[0] + r[1] for r in record.requests), default=args.seq_start),
    }
    args.out.write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    main()
