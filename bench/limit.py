"""The limit: aiohttp straight to the receiver, at hookline's own concurrency, nothing between.

``python -m bench.limit --url URL --requests N --concurrency C --out FILE``: posts the bodies
hookline's rule would render (same headers as its dispatcher sends) over one keep-alive
ClientSession with ``C`` requests in flight, and writes start/finish times and failures.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path

import aiohttp
import orjson

from bench.procs import run_async
from bench.workload import Workload, rendered_body


async def blast(url: str, requests: int, concurrency: int, seq0: int) -> dict[str, int]:
    """Post ``requests`` rendered bodies with ``concurrency`` in flight; count the outcomes."""
    workload = Workload()
    seqs = iter(range(seq0, seq0 + requests))
    outcome = {"ok": 0, "failed": 0}

    async def worker(session: aiohttp.ClientSession) -> None:
        for seq in seqs:
            body = orjson.dumps(rendered_body(workload.event(seq)))
            headers = {
                "content-type": "application/json",
                "webhook-id": f"dlv_{uuid.uuid4().hex}",
                "webhook-timestamp": str(int(time.time())),
                "user-agent": "hookline-bench-limit",
            }
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    outcome["ok" if response.status < 300 else "failed"] += 1
            except aiohttp.ClientError:
                outcome["failed"] += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--seq-start", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.monotonic_ns()
    outcome = run_async(blast(args.url, args.requests, args.concurrency, args.seq_start))
    result = {"started_ns": started, "finished_ns": time.monotonic_ns(), **outcome}
    args.out.write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    main()
