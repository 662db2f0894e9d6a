"""Sender processes: HTTP sent from children, answers and failures brought back."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import pytest

from hookline.events import now_ms
from hookline.netguard import NetworkPolicy
from hookline.sender import Exchange, Request
from hookline.sender_process import ProcessSender, _Child, _frame, _Frames
from hookline.settings import SENDERS
from tests.conftest import LOOPBACK, each_sender
from tests.helpers import Hookline, Receiver, spin_event


@pytest.fixture(params=SENDERS)
def sender_kind(request: pytest.FixtureRequest) -> str:
    """Contract tests: every test here runs with each sender (reqwest and aiohttp)."""
    return each_sender(request)


MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]
# The receiver listens on loopback, which the guard blocks unless allowed.
ALLOW_LOOPBACK = NetworkPolicy(LOOPBACK)


def _request(url: str, webhook_id: str = "dlv_1") -> Request:
    return Request("POST", url, (("content-type", "application/json"),), b'{"a": 1}', 5, webhook_id)


async def test_answers_come_back_from_the_child(receiver: Receiver, sender_kind: str) -> None:
    sender = ProcessSender(2, 64, 8, ALLOW_LOOPBACK, kind=sender_kind)
    await sender.start()
    try:
        answers = await asyncio.gather(
            *(sender.exchange(_request(receiver.url(f"/p{i}"), f"dlv_{i}")) for i in range(20))
        )
    finally:
        await sender.close()
    assert [a.status_code for a in answers] == [200] * 20
    assert all(a.body == "ok" and a.error is None for a in answers)
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(
        f"dlv_{i}" for i in range(20)
    )
    assert {r.headers["user-agent"].split("/")[0] for r in receiver.requests} == {"hookline"}


async def test_errors_are_answers_too(receiver: Receiver, sender_kind: str) -> None:
    receiver.script["/fail"] = [503]
    sender = ProcessSender(1, 8, 8, ALLOW_LOOPBACK, kind=sender_kind)
    await sender.start()
    try:
        failed = await sender.exchange(_request(receiver.url("/fail")))
        refused = await sender.exchange(_request("http://127.0.0.1:9/nothing-listens"))
    finally:
        await sender.close()
    assert (failed.status_code, failed.error) == (503, "HTTP 503")
    assert refused.status_code is None
    assert refused.error == "cannot connect to 127.0.0.1:9: connection refused"


async def test_children_exit_when_the_parent_closes(sender_kind: str) -> None:
    sender = ProcessSender(2, 8, 8, ALLOW_LOOPBACK, kind=sender_kind)
    await sender.start()
    processes = [c.process for c in sender._children]
    await sender.close()
    assert all(p is not None and p.returncode is not None for p in processes)


async def test_a_killed_child_fails_its_requests_and_comes_back(
    make_hookline: MakeHookline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hookline.sender_process.RESTART_DELAY", 0)
    hookline = await make_hookline(sender_processes=1, retry_schedule=(0, 0.2, 0.2))
    await hookline.create_rule(activity={"url": receiver.url()})
    receiver.delay["/hook"] = 1.0  # the first attempt is still in flight when the child dies
    sender = hookline.runtime.dispatcher.sender
    assert isinstance(sender, ProcessSender)
    (child,) = sender._children
    assert child.process is not None
    first_pid = child.process.pid
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await receiver.wait_inflight()
    os.kill(first_pid, signal.SIGKILL)
    receiver.delay.clear()
    # The killed child's request never completes at the receiver; the retry does.
    arrived = await receiver.wait_for(1)
    await hookline.idle()
    detail = (await hookline.client.get(f"/api/v1/deliveries/{delivery_id}")).json()
    assert detail["status"] == "succeeded"
    first, second = detail["attempt_log"]
    assert "sender process exited" in first["error"]
    assert second["status_code"] == 200
    assert {r.headers["webhook-id"] for r in arrived} == {delivery_id}
    assert child.process.pid != first_pid


async def test_a_child_that_fails_to_start_is_tried_again(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, sender_kind: str
) -> None:
    monkeypatch.setattr("hookline.sender_process.RESTART_DELAY", 0)
    sender = ProcessSender(1, 8, 8, ALLOW_LOOPBACK, kind=sender_kind)
    await sender.start()
    try:
        (child,) = sender._children
        assert child.process is not None
        real_start = _Child.start
        failures = 2

        async def flaky(self: _Child, on_exit: Any, on_answers: Any) -> None:
            nonlocal failures
            if failures:
                failures -= 1
                raise OSError("too many open files")
            await real_start(self, on_exit, on_answers)

        monkeypatch.setattr(_Child, "start", flaky)
        os.kill(child.process.pid, signal.SIGKILL)
        await child.process.wait()
        # A request sent before the parent noticed the exit fails; later ones wait for the
        # restart (through both failed starts) and are answered.
        answer = await sender.exchange(_request(receiver.url()))
        if answer.error is not None:
            assert "exited" in answer.error
            answer = await sender.exchange(_request(receiver.url()))
        assert answer.status_code == 200
        assert failures == 0
    finally:
        await sender.close()


async def test_a_child_is_ready_only_once_it_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, sender_kind: str
) -> None:
    """start() waits for each child's hello; one that never says it is not counted ready."""
    sender = ProcessSender(1, 8, 8, ALLOW_LOOPBACK, kind=sender_kind)
    await sender.start()
    try:
        (child,) = sender._children
        assert child.ready.is_set() and child.batcher is not None
    finally:
        await sender.close()

    real = asyncio.create_subprocess_exec

    async def exits_at_once(program: str, *args: Any, **kwargs: Any) -> Any:
        return await real("/bin/true", **kwargs)  # a child that dies before its hello

    monkeypatch.setattr(asyncio, "create_subprocess_exec", exits_at_once)
    mute = ProcessSender(1, 8, 8, ALLOW_LOOPBACK, kind=sender_kind)
    try:
        await mute.start()  # serving goes on: no exception, the child is tried again
        (child,) = mute._children
        assert not child.ready.is_set()
        assert any("did not start" in r.getMessage() for r in caplog.records)
    finally:
        await mute.close()


async def test_a_request_started_by_an_answer_of_a_dying_child_is_answered(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, sender_kind: str
) -> None:
    """The dispatcher's taker of a failed answer starts the next send to the same destination
    at once; it went to the dead child's socket and waited for an answer for ever."""
    monkeypatch.setattr("hookline.sender_process.RESTART_DELAY", 0)
    sender = ProcessSender(1, 8, 8, ALLOW_LOOPBACK, kind=sender_kind)
    await sender.start()
    try:
        (child,) = sender._children
        assert child.process is not None
        receiver.delay["/slow"] = 30.0  # still in flight when the child dies
        answers: list[Exchange] = []
        next_answered: asyncio.Future[Exchange] = asyncio.get_running_loop().create_future()

        def first_done(ex: Exchange) -> None:
            answers.append(ex)
            sender.submit(_request(receiver.url("/next"), "dlv_2"), next_answered.set_result)

        sender.submit(_request(receiver.url("/slow")), first_done)
        await receiver.wait_inflight("/slow")
        os.kill(child.process.pid, signal.SIGKILL)
        answer = await asyncio.wait_for(next_answered, 10)
        assert answers[0].error is not None and "exited" in answers[0].error
        assert answer.status_code == 200  # sent by the restarted child
        assert [r.headers["webhook-id"] for r in receiver.on("/next")] == ["dlv_2"]
    finally:
        await sender.close()


async def test_close_during_a_restart_ends_the_child_that_was_starting(
    monkeypatch: pytest.MonkeyPatch, sender_kind: str
) -> None:
    """A close while a restarted child has not said hello yet kills it at once, rather than
    waiting five seconds for a child whose socket nobody closed."""
    monkeypatch.setattr("hookline.sender_process.RESTART_DELAY", 0)
    sender = ProcessSender(1, 8, 8, ALLOW_LOOPBACK, kind=sender_kind)
    await sender.start()
    (child,) = sender._children
    assert child.process is not None
    real = asyncio.create_subprocess_exec
    started: asyncio.Future[asyncio.subprocess.Process] = asyncio.get_running_loop().create_future()

    async def never_says_hello(program: str, *args: Any, **kwargs: Any) -> Any:
        process = await real("sleep", "60", **kwargs)
        started.set_result(process)
        return process

    monkeypatch.setattr(asyncio, "create_subprocess_exec", never_says_hello)
    os.kill(child.process.pid, signal.SIGKILL)
    mute = await asyncio.wait_for(started, 10)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await sender.close()
    assert loop.time() - began < 2
    assert mute.returncode is not None


async def test_a_hung_child_is_killed_and_its_requests_fail_then_it_comes_back(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, sender_kind: str
) -> None:
    """A child that stops answering (stopped, deadlocked) but keeps its socket open left its
    requests waiting for ever, and with them their deliveries' places in flight."""
    monkeypatch.setattr("hookline.sender_process.RESTART_DELAY", 0)
    monkeypatch.setattr("hookline.sender_process.HUNG_AFTER", 0.2)
    monkeypatch.setattr("hookline.sender_process.WATCH_EVERY", 0.05)
    sender = ProcessSender(1, 8, 8, ALLOW_LOOPBACK, kind=sender_kind)
    await sender.start()
    try:
        (child,) = sender._children
        assert child.process is not None
        hung = child.process
        os.kill(hung.pid, signal.SIGSTOP)
        request = Request("POST", receiver.url(), (), b"{}", 0.2, "dlv_1")
        answer = await asyncio.wait_for(sender.exchange(request), 10)
        assert answer.error is not None and "exited" in answer.error
        await asyncio.wait_for(hung.wait(), 10)  # killed, not left stopped
        again = await asyncio.wait_for(sender.exchange(_request(receiver.url())), 10)
        assert again.status_code == 200  # from the child started in its place
        assert child.process is not hung
    finally:
        await sender.close()


async def test_a_child_that_cannot_be_spawned_leaves_no_socket_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our end of the socket pair was left to the garbage collector (a ResourceWarning) when
    spawning the child failed, or a close cancelled it: restarts on "too many open files"
    held one more descriptor each try until then."""

    async def cannot_spawn(program: str, *args: Any, **kwargs: Any) -> Any:
        raise OSError("too many open files")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", cannot_spawn)
    child = _Child(0, 8, 8, ALLOW_LOOPBACK)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(OSError, match="too many open files"):
            await child.start(lambda child: None, lambda: None)
    assert len(os.listdir("/proc/self/fd")) == before


async def test_a_request_after_close_is_answered_at_once(sender_kind: str) -> None:
    """No child starts again after a close: a request then is not left waiting for one."""
    sender = ProcessSender(1, 8, 8, ALLOW_LOOPBACK, kind=sender_kind)
    await sender.start()
    await sender.close()
    answer = await asyncio.wait_for(sender.exchange(_request("http://127.0.0.1:9/")), 1)
    assert answer.error == "the sender is closed"
    assert not sender._tasks


async def test_an_answer_the_parent_cannot_read_is_an_error_not_a_lost_request() -> None:
    """A child of another version (hookline upgraded on disk, then a child restarted) may
    send an answer with more fields: its request was taken from the table of those waiting,
    then the answer raised, and its taker never heard of it again."""
    child = _Child(0, 8, 8, ALLOW_LOOPBACK)
    answers: dict[int, Exchange] = {}
    child.pending = {
        1: (partial(answers.__setitem__, 1), float("inf")),
        2: (partial(answers.__setitem__, 2), float("inf")),
    }
    fields = (now_ms(), 200, (), "ok", None, None, 1.0, False, None)
    frames = _Frames(child.take_answers)
    frames.data_received(_frame([(1, *fields, "a field of a later version"), (2, *fields)]))
    assert answers[2].status_code == 200
    assert answers[1].status_code is None and answers[1].error is not None
    assert "cannot read" in answers[1].error
