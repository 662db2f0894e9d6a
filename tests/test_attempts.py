"""What an attempt means: requests and answers that break HTTP are final at once, a body cut
off after a 2xx is a warning on a success; in both sender modes, against a raw receiver on
127.0.0.1 that answers exactly the bytes it is told to."""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from hookline.deliveries import Attempt, DeliveryStatus, is_retryable
from hookline.events import now_ms
from hookline.labels import describe
from hookline.netguard import NetworkPolicy
from hookline.sender import Exchange, Request, Sender, local_sender
from hookline.sender_process import ProcessSender
from hookline.settings import SENDERS
from hookline.store.base import Outcome
from hookline.store.sqlite import open_sqlite
from tests.conftest import LOOPBACK, each_sender
from tests.helpers import Hookline, Receiver, due_delivery, example_rule, spin_event


@pytest.fixture(params=SENDERS)
def sender_kind(request: pytest.FixtureRequest) -> str:
    """Contract tests: every test here runs with each sender (reqwest and aiohttp)."""
    return each_sender(request)


MakeHookline = Callable[..., Coroutine[Any, Any, Hookline]]


class RawReceiver:
    """A TCP server that reads one HTTP request and answers ``answers[path]`` verbatim.

    After the bytes it closes the connection, or with ``hang`` holds it open until the
    client gives up, so answers can be cut short or stall mid-body; with ``trickle`` the
    bytes after the head go one at a time, ``trickle[path]`` seconds apart.
    """

    def __init__(self) -> None:
        self.answers: dict[str, bytes] = {}
        self.hang: set[str] = set()
        self.trickle: dict[str, float] = {}
        self.hits: Counter[str] = Counter()
        self.base_url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            path = head.split(b" ", 2)[1].decode()
            self.hits[path] += 1
            answer = self.answers[path]
            pace = self.trickle.get(path)
            if pace is None:
                writer.write(answer)
            else:
                head, sep, body = answer.partition(b"\r\n\r\n")
                writer.write(head + sep)
                for i in range(len(body)):
                    await asyncio.sleep(pace)  # the receiver's pace, not a wait for a result
                    writer.write(body[i : i + 1])
                    await writer.drain()  # raises once the client has given up
            await writer.drain()
            if path in self.hang:
                await reader.read()  # until the client closes its end
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw() -> AsyncIterator[RawReceiver]:
    server = RawReceiver()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(params=[0, 1], ids=["in-process", "sender-process"])
async def hookline(request: pytest.FixtureRequest, make_hookline: MakeHookline) -> Hookline:
    """Both sender modes: the answer's meaning must cross the sender process socket."""
    return await make_hookline(sender_processes=request.param)


@pytest.fixture
async def in_process(make_hookline: MakeHookline) -> Hookline:
    """For what is decided before any sender sees the request."""
    return await make_hookline()


async def _delivery(h: Hookline, delivery_id: str) -> dict[str, Any]:
    resp = await h.client.get(f"/api/v1/deliveries/{delivery_id}")
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


def _answer(status_line: str, body: bytes = b"ok", *, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    head = f"{status_line}\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


# --- what an answer is recorded as, the same on both senders ---------------------------------


@pytest.fixture(params=[0, 1], ids=["in-process", "sender-process"])
async def sender(request: pytest.FixtureRequest, sender_kind: str) -> AsyncIterator[Sender]:
    """A sender alone, as the dispatcher uses it: in this process or in a sender process."""
    policy = NetworkPolicy(LOOPBACK)
    made: Sender = (
        ProcessSender(1, 64, 8, policy, kind=sender_kind)
        if request.param
        else local_sender(sender_kind, 64, 8, policy)
    )
    await made.start()
    yield made
    await made.close()


async def test_every_answer_shape_is_recorded_alike_by_both_senders(
    sender: Sender, raw: RawReceiver
) -> None:
    """Status, headers and the first 4 KiB of the body, as they came: nothing decompressed,
    a body read to its end however it is framed, bytes that are not UTF-8 as U+FFFD (a
    character the 4 KiB cut in two too), a redirect not followed, Retry-After read both ways.
    """
    retry_on = formatdate(time.time() + 300, usegmt=True)
    packed = gzip.compress(b'{"ok": true}')
    huge = b"x" * 4094 + "\u20ac".encode() + b"y" * (4 * 1024 * 1024)
    chunks = b"".join(b"3e8\r\n" + b"c" * 1000 + b"\r\n" for _ in range(10)) + b"0\r\n\r\n"
    raw.answers = {
        "/redirect": _answer(f"HTTP/1.1 302 Found\r\nLocation: {raw.base_url}/else", b"moved"),
        "/else": _answer("HTTP/1.1 200 OK"),
        "/huge": _answer("HTTP/1.1 200 OK", huge),
        "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + chunks,
        "/not-utf8": _answer("HTTP/1.1 200 OK", b"ab\xff\xfecd\xc3"),
        "/gzip": _answer("HTTP/1.1 200 OK\r\nContent-Encoding: gzip", packed),
        "/http10": b"HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nto the close",
        "/no-length": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the close",
        "/204": b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        "/304": b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n",
        "/seconds": _answer("HTTP/1.1 503 Busy\r\nRetry-After: 120"),
        "/date": _answer(f"HTTP/1.1 429 Slow\r\nRetry-After: {retry_on}"),
        "/soon": _answer("HTTP/1.1 503 Busy\r\nRetry-After: soon"),
        "/closed": b"HTTP/1.1 200 OK\r\nContent-Le",
        "/never": b"",
        "/trickle": _answer("HTTP/1.1 200 OK", b"t" * 100),
    }
    raw.hang.add("/never")
    raw.trickle["/trickle"] = 0.05
    paths = [p for p in raw.answers if p != "/else"]
    timeout = {"/never": 1.0, "/trickle": 1.0}

    async def send(path: str) -> Exchange:
        request = Request("POST", raw.base_url + path, (), b"{}", timeout.get(path, 30.0), "d")
        return await sender.exchange(request)

    got = dict(zip(paths, await asyncio.gather(*(send(p) for p in paths)), strict=True))

    def answer(path: str) -> tuple[int | None, str | None, str | None, str | None]:
        ex = got[path]
        return ex.status_code, ex.body, ex.error, ex.warning

    assert answer("/redirect") == (302, "moved", "HTTP 302 (redirects are not followed)", None)
    assert dict(got["/redirect"].headers)["location"] == raw.base_url + "/else"
    assert answer("/huge") == (200, "x" * 4094 + "\ufffd", None, None)
    assert answer("/chunked") == (200, "c" * 4096, None, None)
    assert answer("/not-utf8") == (200, "ab\ufffd\ufffdcd\ufffd", None, None)
    assert answer("/gzip") == (200, packed.decode("utf-8", "replace"), None, None)
    assert dict(got["/gzip"].headers)["content-encoding"] == "gzip"
    assert answer("/http10") == (200, "to the close", None, None)
    assert answer("/no-length") == (200, "to the close", None, None)
    assert answer("/204") == (204, "", None, None)
    assert answer("/304")[:3] == (304, "", "HTTP 304 (redirects are not followed)"), got["/304"]
    assert [got[p].retry_after for p in ("/seconds", "/soon")] == [120.0, None]
    assert 280 < (got["/date"].retry_after or 0) <= 300
    assert answer("/closed")[0] is None
    assert got["/closed"].error == f"{raw.base_url[7:]} closed the connection without an answer"
    assert answer("/never") == (None, None, "timed out after 1 s", None)
    # A body that trickles in is cut by the request's timeout, as a stalled one is.
    status, body, error, warning = answer("/trickle")
    assert (status, error) == (200, None)
    assert body is not None and 0 < len(body) < 100 and set(body) == {"t"}
    assert warning == f"the response body was cut off after {len(body)} bytes: timed out"
    assert not any(got[p].final for p in paths)
    assert "/else" not in raw.hits


async def test_an_answers_headers_are_kept_up_to_16_kib_as_its_body_is_up_to_4(
    sender: Sender, raw: RawReceiver
) -> None:
    """Each attempt stored every header the parser let through: 400 KiB (reqwest) or 1 MiB
    (aiohttp) a time, retries included, from a receiver that sends that much."""
    many = "\r\n".join(f"X-H{i}: {'v' * 1000}" for i in range(90))
    raw.answers["/many"] = _answer(f"HTTP/1.1 503 Busy\r\n{many}\r\nRetry-After: 7", b"wait")
    request = Request("POST", raw.base_url + "/many", (), b"{}", 30.0, "d")
    ex = await sender.exchange(request)
    assert (ex.status_code, ex.body, ex.error) == (503, "wait", "HTTP 503")
    assert [name for name, _ in ex.headers] == [f"x-h{i}" for i in range(16)]
    assert ex.warning == (
        "the response headers were cut off after 16 of 93 (the first 16 KiB are kept)"
    )
    assert ex.retry_after == 7.0  # read from every header, before the cut


# --- statuses that are not HTTP -------------------------------------------------------------


@pytest.mark.parametrize("status", [600, 999, 0, 99])
def test_a_status_outside_100_to_599_is_never_retried(status: int) -> None:
    assert is_retryable(status) is False


async def test_an_answer_that_is_not_valid_http_is_final_at_once(
    hookline: Hookline, raw: RawReceiver
) -> None:
    raw.answers = {
        "/s600": _answer("HTTP/1.1 600 Beyond"),
        "/s999": _answer("HTTP/1.1 999 Whatever"),
        "/s000": _answer("HTTP/1.1 000 Zero"),
        "/s1000": _answer("HTTP/1.1 1000 Four digits"),
        "/s101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    }
    for path in raw.answers:
        rule = example_rule(name=f"to-{path[1:]}", activity={"url": raw.base_url + path})
        assert (await hookline.post("/api/v1/rules", rule)).status_code == 201
    resp = await hookline.post("/api/v1/events", spin_event())
    ids = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    assert len(ids) == 5
    outcome: dict[str, tuple[str, list[Any], str]] = {}
    for delivery_id in ids:
        detail = await _delivery(hookline, delivery_id)
        path = detail["request"]["url"].removeprefix(raw.base_url)
        codes = [a["status_code"] for a in detail["attempt_log"]]
        outcome[path] = (detail["status"], codes, detail["last_error"])
    # The schedule has three attempts; before, 600, 999 and 1000 used them all as "5xx".
    # aiohttp reads a status of 000 as 0; reqwest refuses it as not HTTP: final either way.
    zero = [0] if hookline.runtime.settings.sender == "aiohttp" else [None]
    assert {path: (status, codes) for path, (status, codes, _) in outcome.items()} == {
        "/s600": ("dead", [600]),
        "/s999": ("dead", [999]),
        "/s000": ("dead", zero),
        "/s1000": ("dead", [None]),
        "/s101": ("dead", [101]),
    }
    assert "HTTP 600 is not a valid HTTP status (100-599)" in outcome["/s600"][2]
    assert "HTTP 999 is not a valid HTTP status" in outcome["/s999"][2]
    assert "not valid HTTP (bad status line)" in outcome["/s1000"][2]
    assert "interim status" in outcome["/s101"][2]
    assert raw.hits == dict.fromkeys(raw.answers, 1)


async def test_interim_1xx_answers_before_the_final_one_are_skipped(
    hookline: Hookline, raw: RawReceiver
) -> None:
    raw.answers["/hook"] = b"HTTP/1.1 100 Continue\r\n\r\n" + _answer("HTTP/1.1 200 OK")
    await hookline.create_rule(activity={"url": raw.base_url + "/hook"})
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    detail = await _delivery(hookline, delivery_id)
    assert detail["status"] == "succeeded"
    assert [(a["status_code"], a["response_body"]) for a in detail["attempt_log"]] == [(200, "ok")]


# --- a body cut off after the status --------------------------------------------------------


async def test_a_2xx_whose_body_is_cut_off_succeeds_with_a_warning_not_an_error(
    hookline: Hookline, raw: RawReceiver
) -> None:
    raw.answers = {
        # Content-Length promises 100 bytes; 9 come, then the connection closes.
        "/short": _answer("HTTP/1.1 200 OK", b"only-part", length=100),
        "/chunked": b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        # The body stalls until the request's timeout.
        "/stall": _answer("HTTP/1.1 202 Accepted", b"so", length=100),
        "/retry": _answer("HTTP/1.1 503 Busy", b"wa", length=100),
    }
    raw.hang.add("/stall")
    for path in raw.answers:
        # Only the stalled answer meets its timeout; the others get time to spare on a
        # loaded machine, so a slow start can never pass for a cut body.
        timeout = 1.0 if path == "/stall" else 30.0
        activity = {"url": raw.base_url + path, "timeout": timeout, "retry_schedule": [0]}
        rule = example_rule(name=f"to-{path[1:]}", activity=activity)
        assert (await hookline.post("/api/v1/rules", rule)).status_code == 201
    resp = await hookline.post("/api/v1/events", spin_event())
    ids = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    seen: dict[str, dict[str, Any]] = {}
    for delivery_id in ids:
        detail = await _delivery(hookline, delivery_id)
        (attempt,) = detail["attempt_log"]
        seen[detail["request"]["url"].removeprefix(raw.base_url)] = {**attempt, **detail}
    for path, body in (("/short", "only-part"), ("/chunked", "hello"), ("/stall", "so")):
        got = seen[path]
        assert (got["status"], got["succeeded"], got["error"]) == ("succeeded", True, None), path
        assert got["last_error"] is None
        assert got["response_body"] == body
        assert got["warning"].startswith(f"the response body was cut off after {len(body)} bytes")
    assert "timed out" in seen["/stall"]["warning"]
    # A failure keeps its error; the cut body is noted beside it.
    assert (seen["/retry"]["status"], seen["/retry"]["error"]) == ("dead", "HTTP 503")
    assert "cut off" in seen["/retry"]["warning"]


async def test_a_header_value_that_is_not_ascii_is_recorded_with_the_rest_of_the_answer(
    hookline: Hookline, raw: RawReceiver
) -> None:
    """A receiver may answer a Latin-1 or UTF-8 header value. aiohttp read one with
    surrogates the store could not write, so the attempt was never recorded and the webhook
    went out again and again; reqwest, which gives no such value as text, lost the headers
    and the body and called a 200 an error."""
    for path, value in (("/latin1", b"caf\xe9"), ("/utf8", "café".encode())):
        head = b"HTTP/1.1 200 OK\r\nX-Name: " + value + b"\r\nRetry-After: 7\r\n"
        raw.answers[path] = head + b"Content-Length: 2\r\nConnection: close\r\n\r\nok"
        rule = example_rule(name=f"to-{path[1:]}", activity={"url": raw.base_url + path})
        assert (await hookline.post("/api/v1/rules", rule)).status_code == 201
    resp = await hookline.post("/api/v1/events", spin_event())
    ids = resp.json()["events"][0]["deliveries"]
    await asyncio.wait_for(hookline.idle(), 30)
    reqwest = hookline.runtime.settings.sender == "reqwest"
    shown = {
        "/latin1": "\ufffd" if reqwest else "caf\ufffd",
        "/utf8": "\ufffd" if reqwest else "café",
    }
    for delivery_id in ids:
        detail = await _delivery(hookline, delivery_id)
        path = detail["request"]["url"].removeprefix(raw.base_url)
        assert detail["status"] == "succeeded", detail
        (attempt,) = detail["attempt_log"]
        assert (attempt["status_code"], attempt["error"], attempt["response_body"]) == (
            200,
            None,
            "ok",
        )
        headers = {k.lower(): v for k, v in attempt["response_headers"].items()}
        assert headers["x-name"] == shown[path]
        assert headers["retry-after"] == "7"
    assert raw.hits == {"/latin1": 1, "/utf8": 1}


async def test_a_header_that_came_more_than_once_keeps_every_value(
    hookline: Hookline, raw: RawReceiver
) -> None:
    """Before, the answer showed only the last value of a repeated name (one Link of two)."""
    raw.answers["/hook"] = _answer(
        "HTTP/1.1 200 OK\r\nSet-Cookie: a=tok-1\r\nLink: </a>; rel=x\r\nX-Dup: one\r\n"
        "Set-Cookie: b=tok-2\r\nLink: </b>; rel=y\r\nx-dup: two\r\nX-Case: v"
    )
    await hookline.create_rule(activity={"url": raw.base_url + "/hook"})
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    detail = await _delivery(hookline, delivery_id)
    (attempt,) = detail["attempt_log"]
    # The same on both senders: names lower-cased, a repeated name's values joined in the
    # order they came, the cookies (which cannot be joined) masked.
    assert attempt["response_headers"] == {
        "set-cookie": "***",
        "link": "</a>; rel=x, </b>; rel=y",
        "x-dup": "one, two",
        "x-case": "v",
        "content-length": "2",
        "connection": "close",
    }
    assert "tok-" not in str(detail)
    # The attempt keeps every pair as it came, cookies too.
    (stored,) = await hookline.runtime.store.list_attempts(delivery_id)
    assert sorted(stored.response_headers) == sorted(
        [
            ("set-cookie", "a=tok-1"),
            ("set-cookie", "b=tok-2"),
            ("link", "</a>; rel=x"),
            ("link", "</b>; rel=y"),
            ("x-dup", "one"),
            ("x-dup", "two"),
            ("x-case", "v"),
            ("content-length", "2"),
            ("connection", "close"),
        ]
    )


async def test_a_folded_header_is_unfolded_and_a_head_that_does_not_parse_is_final(
    hookline: Hookline, raw: RawReceiver
) -> None:
    """RFC 9112 (5.2) has a client replace an obsolete line fold with a space: reqwest
    refused the answer as not HTTP while aiohttp unfolded it. A header line that is not a
    header was final on reqwest and retried on aiohttp, which gets the same answer again."""
    raw.answers = {
        "/folded": _answer("HTTP/1.1 200 OK\r\nX-Fold: a\r\n b"),
        "/broken": _answer("HTTP/1.1 200 OK\r\nX-Broken"),
        "/huge": _answer(
            "HTTP/1.1 200 OK\r\n" + "\r\n".join(f"X-H{i}: {'v' * 1000}" for i in range(200))
        ),
    }
    for path in raw.answers:
        rule = example_rule(name=f"to-{path[1:]}", activity={"url": raw.base_url + path})
        assert (await hookline.post("/api/v1/rules", rule)).status_code == 201
    resp = await hookline.post("/api/v1/events", spin_event())
    ids = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    seen: dict[str, dict[str, Any]] = {}
    for delivery_id in ids:
        detail = await _delivery(hookline, delivery_id)
        seen[detail["request"]["url"].removeprefix(raw.base_url)] = detail
    assert seen["/folded"]["status"] == "succeeded"
    assert seen["/folded"]["attempt_log"][0]["response_headers"]["x-fold"] == "a b"
    for path in ("/broken", "/huge"):
        (attempt,) = seen[path]["attempt_log"]
        assert (seen[path]["status"], attempt["status_code"]) == ("dead", None), path
        assert attempt["error"].startswith("the answer is not valid HTTP: "), attempt
    assert raw.hits == dict.fromkeys(raw.answers, 1)


async def test_attempts_without_trouble_carry_no_warning(
    hookline: Hookline, receiver: Receiver
) -> None:
    await hookline.create_rule(activity={"url": receiver.url()})
    resp = await hookline.post("/api/v1/events", spin_event())
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    (attempt,) = (await _delivery(hookline, delivery_id))["attempt_log"]
    assert (attempt["succeeded"], attempt["error"], attempt["warning"]) == (True, None, None)


# --- header values with control characters --------------------------------------------------


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f"])
async def test_a_control_character_rendered_into_a_header_is_final_before_sending(
    in_process: Hookline, receiver: Receiver, char: str
) -> None:
    hookline = in_process
    await hookline.create_rule(
        activity={"url": receiver.url(), "headers": {"X-Note": "{{event.note}}"}}
    )
    event = spin_event()
    event["payload"]["note"] = f"evil{char}value"
    resp = await hookline.post("/api/v1/events", event)
    assert resp.status_code == 202
    (delivery_id,) = resp.json()["events"][0]["deliveries"]
    await hookline.idle()
    detail = await _delivery(hookline, delivery_id)
    # Before, the request went to the sender, which refused it on every attempt of the
    # schedule: retried until dead, three attempts later.
    assert (detail["status"], detail["attempts"], detail["attempt_log"]) == ("dead", 0, [])
    assert detail["last_error"] == (
        f"not sent: header 'X-Note' would contain {describe(char)}; the value was refused"
    )
    assert receiver.requests == []


async def test_a_stored_request_no_sender_will_send_is_dead_after_one_attempt(
    hookline: Hookline, receiver: Receiver
) -> None:
    # A delivery rendered before its header was refused at render time (an older hookline).
    delivery = due_delivery(
        receiver.url(), headers=(("X-Note", "a\x00b"),), retry_schedule=(0.0, 0.01, 0.01)
    )
    async with hookline.runtime.store.ingest() as ingest:
        await ingest.insert_deliveries([delivery])
    await hookline.idle()
    detail = await _delivery(hookline, delivery.id)
    assert detail["status"] == "dead"
    (attempt,) = detail["attempt_log"]
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("invalid request:")
    assert "control character" in attempt["error"]
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("activity", "field", "says"),
    [
        (
            {"headers": {"X-Note": "a\x07b"}},
            "activity.headers.X-Note",
            "U+0007 (control character) (at index 1)",
        ),
        ({"headers": {"X-Note": "a\x7f"}}, "activity.headers.X-Note", "U+007F"),
        (
            {"headers": {"X-Note": "a\rb"}},
            "activity.headers.X-Note",
            "U+000D (carriage return, a line break)",
        ),
        ({"headers": {"X-\x00": "1"}}, "activity.headers.X-\x00", "not a valid header name"),
        ({"content_type": "application/json\r\n;x=1"}, "activity.content_type", "carriage return"),
        ({"content_type": "text/plain; a=\x00"}, "activity.content_type", "U+0000"),
        ({"url": "http://127.0.0.1:9/a\x07b"}, "activity.url", "U+0007"),
    ],
)
async def test_control_characters_written_into_a_webhook_are_refused_when_saved(
    in_process: Hookline, activity: dict[str, Any], field: str, says: str
) -> None:
    resp = await in_process.post("/api/v1/rules", example_rule(activity=activity))
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["field"] == field
    assert says in body["detail"]


# --- the warning column on a database from before it ----------------------------------------


async def test_a_database_from_before_the_warning_column_opens_and_keeps_its_attempts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hookline.db"
    store = open_sqlite(path)
    await store.open()
    await store.close()
    # Back to the attempts table as the previous release made it, with one attempt in it.
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE attempts DROP COLUMN warning")
        db.execute(
            "INSERT INTO attempts (id, delivery_id, number, started_at, latency_ms,"
            " status_code, response_headers, response_body, error, succeeded)"
            " VALUES ('att_old', 'dlv_1', 1, 1, 2.5, 503, '[]', 'busy', 'HTTP 503', 0)"
        )
    db.close()

    store = open_sqlite(path)
    await store.open()
    try:
        new = Attempt("att_new", "dlv_1", 2, 2, 1.0, 200, (), "o", None, True, "cut off")
        await store.record_outcomes([Outcome(new, DeliveryStatus.SUCCEEDED, None)], now_ms())
        old, recorded = await store.list_attempts("dlv_1")
    finally:
        await store.close()
    assert (old.id, old.error, old.warning, old.status_code) == ("att_old", "HTTP 503", None, 503)
    assert recorded == new
    # Opening again finds the column in place and changes nothing.
    store = open_sqlite(path)
    await store.open()
    try:
        assert [a.id for a in await store.list_attempts("dlv_1")] == ["att_old", "att_new"]
    finally:
        await store.close()
