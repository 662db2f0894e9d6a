"""The webhook receiver: a minimal HTTP/1.1 keep-alive server that timestamps every arrival.

Run as ``python -m bench.receiver --port P [--ports N] --control-port C``. It listens on
``N`` consecutive ports of 127.0.0.1 (one destination host each), answers every request
``200`` with a two-byte body, and for each body that holds ``"seq": N`` records
``(N, time.monotonic_ns())``. CLOCK_MONOTONIC is system-wide on Linux, so the load
process's acceptance times and these arrival times share one clock.

The orchestrator talks to it on the control port, one line per command:
``count`` -> total requests seen; ``reset`` -> forget everything;
``dump PATH`` -> write the arrivals as ``seq,t_ns`` lines to PATH, then answer ``ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from array import array
from pathlib import Path
from typing import cast

from bench.procs import run_async

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\n\r\n{}"
)
SEQ_KEY = b'"seq":'
HEADER_END = b"\r\n\r\n"


class Arrivals:
    """What arrived: two parallel arrays (cheap to append), the request count, and the
    distinct seqs (a duplicate must not count as a missing delivery arriving)."""

    def __init__(self) -> None:
        self.seqs = array("q")
        self.times = array("q")
        self.requests = 0
        self.distinct: set[int] = set()

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def dump(self, path: Path) -> None:
        lines = [f"{s},{t}\n" for s, t in zip(self.seqs, self.times, strict=True)]
        path.write_text("".join(lines))


def find_seq(body: bytes) -> int | None:
    """The integer after ``"seq":`` in ``body``, or None (a bytes search, no JSON parse)."""
    at = body.find(SEQ_KEY)
    if at < 0:
        return None
    i = at + len(SEQ_KEY)
    while i < len(body) and body[i] in b" \t":
        i += 1
    j = i
    while j < len(body) and 48 <= body[j] <= 57:
        j += 1
    return int(body[i:j]) if j > i else None


def content_length(head: bytes) -> int:
    """The Content-Length of a request head (0 when absent)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


class HookProtocol(asyncio.Protocol):
    """One keep-alive connection: parse requests as they complete, answer each at once."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(HEADER_END)
            if end < 0:
                return
            length = content_length(bytes(self.buffer[:end]))
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            now = time.monotonic_ns()
            arrivals = self.arrivals
            arrivals.requests += 1
            seq = find_seq(body)
            if seq is not None:
                arrivals.seqs.append(seq)
                arrivals.distinct.add(seq)
                arrivals.times.append(now)
            assert self.transport is not None
            self.transport.write(RESPONSE)


async def control(
    arrivals: Arrivals, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer the orchestrator's one-line commands until it hangs up."""
    try:
        while line := await reader.readline():
            command, _, argument = line.decode().strip().partition(" ")
            if command == "count":
                answer = f"{arrivals.requests} {len(arrivals.seqs)} {len(arrivals.distinct)}"
            elif command == "reset":
                arrivals.reset()
                answer = "ok"
            elif command == "dump":
                arrivals.dump(Path(argument))
                answer = "ok"
            else:
                answer = f"error unknown command {command!r}"
            writer.write(answer.encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()


async def serve(first_port: int, ports: int, control_port: int) -> None:
    """Listen on the hook ports and the control port until killed."""
    loop = asyncio.get_running_loop()
    arrivals = Arrivals()
    servers = [
        await loop.create_server(
            lambda: HookProtocol(arrivals), "127.0.0.1", port, backlog=4096, reuse_address=True
        )
        for port in range(first_port, first_port + ports)
    ]
    ctl = await asyncio.start_server(
        lambda r, w: control(arrivals, r, w), "127.0.0.1", control_port
    )
    print(f"receiver ready on {first_port}..{first_port + ports - 1}", flush=True)
    async with ctl:
        await ctl.serve_forever()
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="first hook port")
    parser.add_argument("--ports", type=int, default=1, help="how many consecutive ports")
    parser.add_argument("--control-port", type=int, required=True)
    args = parser.parse_args()
    run_async(serve(args.port, args.ports, args.control_port))


if __name__ == "__main__":
    main()
