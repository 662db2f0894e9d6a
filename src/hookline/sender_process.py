"""Sending from child processes, so the HTTP work runs on other cores than ingest.

The parent keeps everything that matters (scheduling, limits, the record of attempts);
each child only runs a local sender (:func:`hookline.sender.local_sender`). They talk
over a private socket pair in length-prefixed pickle frames holding batches: many requests
per write, many answers back. A destination always goes to the same child, so its
keep-alive pool stays warm.

A child that dies fails its in-flight requests with an error (they are retried like any
network error: at least once, never zero times) and is started again. A child exits
when its socket closes, so it never outlives the parent, even after a SIGKILL.

Each child applies the SSRF guard itself: the parent hands it the network policy when it
starts it. Signing keys travel with each request, and the child signs right before sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from functools import partial
from typing import Any, Protocol, cast

import orjson

from hookline.deliveries import destination_of
from hookline.events import now_ms
from hookline.gil import hand_over_promptly
from hookline.netguard import NetworkPolicy
from hookline.sender import Done, Exchange, Request, local_sender, spawn

log = logging.getLogger("hookline.sender")

_HEADER = struct.Struct("!I")
RESTART_DELAY = 0.5
# A child says it is ready (an empty frame) once its sender runs; "hookline ready" waits
# for that, so the first delivery after a start does not wait for a child to import.
STARTUP_TIMEOUT = 30.0
MAX_RESTART_DELAY = 30.0
# A child answers every request within its timeout (which covers the whole exchange); one
# that leaves a request unanswered this long past it is hung (stopped, deadlocked), and is
# killed so its requests fail and are retried, instead of waiting for ever.
HUNG_AFTER = 10.0
WATCH_EVERY = 1.0


def _field_values(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """A record's field values in order, as they cross the socket.

    Not ``dataclasses.astuple``: that deep-copies every nested tuple (the headers), and
    was a third of the sender process's CPU.
    """
    return operator.attrgetter(*(f.name for f in fields(cls)))


_request_fields = _field_values(Request)
_exchange_fields = _field_values(Exchange)


def _frame(items: list[Any]) -> bytes:
    payload = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> list[Any]:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    items: list[Any] = pickle.loads(await reader.readexactly(size))
    return items


class _Writer(Protocol):
    """Where frames go: a stream writer (the child's end) or a transport (the parent's)."""

    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def close(self) -> None: ...


class _Frames(asyncio.Protocol):
    """The parent's end of a child's socket: each frame is handed over as it arrives.

    Read from the transport's callback, an answer reaches its taker in the loop turn it
    arrived in; through a stream reader and a task reading it, a turn later.
    """

    def __init__(self, on_frame: Callable[[list[Any]], None]) -> None:
        self.on_frame = on_frame
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass, so no check).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buffer)
            end = _HEADER.size + size
            if len(self.buffer) < end:
                return
            try:
                items = pickle.loads(self.buffer[_HEADER.size : end])
            except Exception:  # not our frames: the child is no longer to be trusted
                log.exception("a sender process sent a frame that does not load")
                assert self.transport is not None
                self.transport.abort()
                return
            del self.buffer[:end]
            self.on_frame(items)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Batcher:
    """Collects items and writes them as one frame at the end of this loop turn."""

    def __init__(self, writer: _Writer) -> None:
        self.writer = writer
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        if not self.items:
            asyncio.get_running_loop().call_soon(self.flush)
        self.items.append(item)

    def flush(self) -> None:
        items, self.items = self.items, []
        if items and not self.writer.is_closing():
            self.writer.write(_frame(items))


class _Child:
    """One sender process, seen from the parent."""

    def __init__(
        self,
        number: int,
        max_concurrency: int,
        max_per_host: int,
        policy: NetworkPolicy,
        kind: str = "reqwest",
    ) -> None:
        self.number = number
        self.limits = (max_concurrency, max_per_host)
        self.policy = policy
        self.kind = kind
        # Requests sent, by number: who takes the answer, and when the child counts as hung.
        self.pending: dict[int, tuple[Done, float]] = {}
        self.process: asyncio.subprocess.Process | None = None
        self.batcher: _Batcher | None = None
        self.watch_task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()  # set while the child takes requests

    async def start(
        self, on_exit: Callable[[_Child], None], on_answers: Callable[[], None]
    ) -> None:
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                self.process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "hookline.sender_process",
                    str(theirs.fileno()),
                    *map(str, self.limits),
                    orjson.dumps(self.policy.as_json()).decode(),
                    self.kind,
                    pass_fds=(theirs.fileno(),),
                )
        except BaseException:  # no child (it could not be spawned, or a close cancelled it)
            ours.close()
            raise
        process = self.process
        loop = asyncio.get_running_loop()
        hello: asyncio.Future[None] = loop.create_future()

        def on_frame(items: list[Any]) -> None:
            if not hello.done():  # its first frame says it is ready
                hello.set_result(None)
                return
            self.take_answers(items)
            # What the answers started (the next sends) goes out now, not a turn later.
            on_answers()

        transport: asyncio.Transport | None = None
        try:
            transport, frames = await loop.create_unix_connection(
                lambda: _Frames(on_frame), sock=ours
            )
            await asyncio.wait(
                {hello, frames.closed}, timeout=STARTUP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if not hello.done() or frames.closed.done():
                raise OSError("no hello")
        except BaseException as exc:
            # A close cancels a restart here too: the child must not outlive its start.
            if transport is not None:
                transport.close()
            ours.close()
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            if isinstance(exc, asyncio.CancelledError):
                raise
            await process.wait()
            if isinstance(exc, OSError):
                raise OSError(f"sender process {self.number} did not say it was ready") from None
            raise
        self.batcher = _Batcher(transport)
        self.watch_task = asyncio.create_task(self._watch(frames.closed, on_exit))
        self.ready.set()

    async def _watch(self, closed: asyncio.Future[None], on_exit: Callable[[_Child], None]) -> None:
        """Until the socket closes (the child exited, or sent what does not load); a child
        that is hung is killed, which closes it."""
        try:
            while not closed.done():
                await asyncio.wait((closed,), timeout=WATCH_EVERY)
                if not closed.done() and self._hung():
                    log.error(
                        "sender process %d left a request unanswered %g s past its timeout; "
                        "killing it",
                        self.number,
                        HUNG_AFTER,
                    )
                    assert self.process is not None
                    with contextlib.suppress(ProcessLookupError):
                        self.process.kill()
                    await closed
        finally:
            # Not ready before the failed answers go out: their takers start the next sends
            # at once, and those must wait for a restart, not go to this dead child's socket
            # (where nothing ever answered them).
            self.detach()
            self._fail_pending()
            on_exit(self)

    def _hung(self) -> bool:
        now = time.monotonic()
        return any(deadline < now for _, deadline in self.pending.values())

    def take_answers(self, items: list[Any]) -> None:
        """Hand each answer of a frame to the one waiting for it."""
        for number, *values in items:
            taker = self.pending.pop(number, None)
            if taker is not None:
                _answer(taker[0], _exchange(values))

    def detach(self) -> None:
        """Take no more requests: they wait for the next start."""
        self.ready.clear()
        if self.batcher is not None:
            self.batcher.writer.close()
        self.batcher = None

    def _fail_pending(self) -> None:
        pending, self.pending = self.pending, {}
        for done, _ in pending.values():
            error = "the sender process exited before the answer came back"
            _answer(done, Exchange(started_at=now_ms(), error=error))

    async def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.writer.close()  # the child exits when its socket closes
        if self.process is not None:
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.watch_task is not None:
            self.watch_task.cancel()
            await asyncio.gather(self.watch_task, return_exceptions=True)


class ProcessSender:
    """Spreads requests over ``count`` child processes by destination.

    ``policy`` is the SSRF guard's, applied in each child (the default blocks every
    private range).
    """

    def __init__(
        self,
        count: int,
        max_concurrency: int,
        max_per_host: int,
        policy: NetworkPolicy | None = None,
        *,
        kind: str = "reqwest",
    ) -> None:
        policy = policy if policy is not None else NetworkPolicy()
        self._children = [
            _Child(i, max_concurrency, max_per_host, policy, kind) for i in range(count)
        ]
        self._next_id = 0
        self._closing = False
        # Restarts, and requests waiting for a restarting child: cancelled on close.
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for child in self._children:
            try:
                await child.start(self._exited, self._flush)
            except Exception:
                # Serving goes on; its deliveries wait for the child that is tried again.
                log.exception("sender process %d did not start; trying again", child.number)
                self._exited(child)

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(child.stop() for child in self._children))

    async def exchange(self, request: Request) -> Exchange:
        future: asyncio.Future[Exchange] = asyncio.get_running_loop().create_future()

        def done(ex: Exchange) -> None:
            if not future.done():  # the caller may have been cancelled meanwhile
                future.set_result(ex)

        self.submit(request, done)
        return await future

    def submit(self, request: Request, done: Done) -> None:
        # One child per destination however its host is spelled, so its pool stays warm.
        child = self._children[hash(destination_of(request.url)) % len(self._children)]
        if self._closing:  # no child will start again: answer now (a turn later, as ever)
            error = Exchange(started_at=now_ms(), error="the sender is closed")
            asyncio.get_running_loop().call_soon(_answer, done, error)
            return
        if child.batcher is None or not child.ready.is_set():
            spawn(self._tasks, self._when_ready(child, request, done))
            return
        self._next_id += 1
        child.pending[self._next_id] = (done, time.monotonic() + request.timeout + HUNG_AFTER)
        child.batcher.add((self._next_id, *_request_fields(request)))

    async def _when_ready(self, child: _Child, request: Request, done: Done) -> None:
        """A restarting child costs the delivery some time, not one of its attempts, unless
        it stays down longer than the request would have taken."""
        try:
            await asyncio.wait_for(child.ready.wait(), request.timeout)
        except TimeoutError:
            _answer(done, Exchange(started_at=now_ms(), error="the sender process is not running"))
            return
        self.submit(request, done)

    def _flush(self) -> None:
        for child in self._children:
            if child.batcher is not None:
                child.batcher.flush()

    def _exited(self, child: _Child) -> None:
        if self._closing:
            return
        log.error("sender process %d exited; starting it again", child.number)
        child.detach()
        spawn(self._tasks, self._restart(child))

    async def _restart(self, child: _Child) -> None:
        if child.process is not None:
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
            await child.process.wait()
        delay = RESTART_DELAY
        while not self._closing:
            await asyncio.sleep(delay)  # a child that cannot start must not spin
            try:
                await child.start(self._exited, self._flush)
                return
            except Exception:
                log.exception("sender process %d did not start; trying again", child.number)
                delay = min(delay * 2 or 0.1, MAX_RESTART_DELAY)


def _exchange(fields: list[Any]) -> Exchange:
    """The answer a child sent, or an error standing for it: a child of another version
    (hookline upgraded on disk, then the child restarted) may send fields this one lacks."""
    try:
        return Exchange(*fields)
    except TypeError as exc:
        error = f"hookline cannot read the sender process's answer ({exc}); is it another version?"
        return Exchange(started_at=now_ms(), error=error)


def _answer(done: Done, ex: Exchange) -> None:
    """Hand one answer over; a failing taker must not stop the others' answers."""
    try:
        done(ex)
    except Exception:
        log.exception("handling the answer to a request failed")


# --- the child ------------------------------------------------------------------------


async def _serve(
    fd: int, max_concurrency: int, max_per_host: int, policy: NetworkPolicy, kind: str
) -> None:
    sender = local_sender(kind, max_concurrency, max_per_host, policy)
    await sender.start()
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    writer.write(_frame([]))  # hello: the parent counts this child ready from now on
    answers = _Batcher(writer)

    def answer(number: int, ex: Exchange) -> None:
        answers.add((number, *_exchange_fields(ex)))

    try:
        while True:
            for number, *fields in await _read_frame(reader):
                # Every request gets an answer (a sender's bug too), or the parent waits.
                sender.submit(Request(*fields), partial(answer, number))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the parent closed the socket, or died: nobody is left to answer
    finally:
        await sender.close()  # and the sends still running with it


def main(argv: list[str]) -> None:
    # Ctrl-C and SIGTERM go to the whole process group; the parent decides when we stop
    # (by closing the socket) after its in-flight sends have their answers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd, max_concurrency, max_per_host = (int(a) for a in argv[:3])
    policy = NetworkPolicy.from_json(orjson.loads(argv[3]))
    kind = argv[4]
    hand_over_promptly()  # reqwest's thread hands answers back without a 5 ms wait
    import uvloop  # comes with uvicorn[standard], like the server's own loop

    uvloop.run(_serve(fd, max_concurrency, max_per_host, policy, kind))


if __name__ == "__main__":
    main(sys.argv[1:])
