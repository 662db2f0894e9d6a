"""The reference: an HTTP client library straight to the receiver, nothing between.

``python -m bench.limit --client aiohttp|pyreqwest --url URL --concurrency C --seconds S
--out FILE``: posts the bodies hookline's rule would render (with the headers its sender
adds) with ``C`` requests in flight for ``S`` seconds, configured as a webhook sender must
be (a timeout per request, redirects not followed, keep-alive), and writes start and finish
times, the outcomes and the next unused seq. The orchestrator runs it once per point of the
sweep (16 to 256 in flight) and takes each library's best point as its limit.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from itertools import count
from pathlib import Path

import orjson

from bench.procs import run_async
from bench.workload import Workload, rendered_body

CLIENTS = ("aiohttp", "pyreqwest")
# What hookline's sender gives a request by default (HOOKLINE_DEFAULT_TIMEOUT).
TIMEOUT_S = 15.0

# One request: (body, headers) -> True when answered 2xx.
Post = Callable[[bytes, dict[str, str]], Awaitable[bool]]


class Outcome:
    """What the workers did: counts, and the first seq none of them took."""

    def __init__(self, seq0: int) -> None:
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []
        self._seqs = count(seq0)
        self.next_seq = seq0

    def take(self) -> int:
        seq = next(self._seqs)
        self.next_seq = seq + 1
        return seq

    def note_error(self, exc: Exception) -> None:
        self.failed += 1
        if len(self.errors) < 10:
            self.errors.append(f"{type(exc).__name__}: {exc}"[:300])


def requests(
    workload: Workload, outcome: Outcome, deadline: float
) -> Iterator[tuple[bytes, dict[str, str]]]:
    """Bodies and headers, one per seq, until ``deadline`` (monotonic seconds)."""
    while time.monotonic() < deadline:
        body = orjson.dumps(rendered_body(workload.event(outcome.take())))
        yield (
            body,
            {
                "content-type": "application/json",
                "webhook-id": f"dlv_{uuid.uuid4().hex}",
                "webhook-timestamp": str(int(time.time())),
                "user-agent": "hookline-bench-limit",
            },
        )


async def drive(post: Post, concurrency: int, seconds: float, outcome: Outcome) -> None:
    """``concurrency`` workers posting one request after another for ``seconds``."""
    work = requests(Workload(), outcome, time.monotonic() + seconds)

    async def worker() -> None:
        for body, headers in work:
            try:
                ok = await post(body, headers)
            except Exception as exc:  # any client error counts as a failed request
                outcome.note_error(exc)
                continue
            if ok:
                outcome.ok += 1
            else:
                outcome.failed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def with_aiohttp(url: str, concurrency: int, seconds: float, outcome: Outcome) -> None:
    """aiohttp, set up as hookline's sender sets it up."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(body: bytes, headers: dict[str, str]) -> bool:
            async with session.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as response:
                await response.read()
                return response.status < 300

        await drive(post, concurrency, seconds, outcome)


async def with_pyreqwest(url: str, concurrency: int, seconds: float, outcome: Outcome) -> None:
    """pyreqwest (Rust reqwest underneath), set up the same way."""
    from pyreqwest.client import ClientBuilder

    timeout = timedelta(seconds=TIMEOUT_S)
    builder = (
        ClientBuilder()
        .max_connections(concurrency)
        .pool_max_idle_per_host(concurrency)
        .follow_redirects(False)
        .gzip(False)
        .brotli(False)
        .zstd(False)
        .deflate(False)
    )
    async with builder.build() as client:

        async def post(body: bytes, headers: dict[str, str]) -> bool:
            request = client.post(url).headers(headers).body_bytes(body).timeout(timeout)
            response = await request.build().send()
            await response.bytes()
            return response.status < 300

        await drive(post, concurrency, seconds, outcome)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=CLIENTS, default="aiohttp")
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--seq-start", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    outcome = Outcome(args.seq_start)
    run = with_aiohttp if args.client == "aiohttp" else with_pyreqwest
    started = time.monotonic_ns()
    run_async(run(args.url, args.concurrency, args.seconds, outcome))
    result = {
        "started_ns": started,
        "finished_ns": time.monotonic_ns(),
        "ok": outcome.ok,
        "failed": outcome.failed,
        "errors": outcome.errors,
        "next_seq": outcome.next_seq,
    }
    args.out.write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    main()
