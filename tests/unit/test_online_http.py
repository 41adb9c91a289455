"""The replica's HTTP/1.1 server (stream_jobs/online/http.py), over a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from stream_jobs.online import http


def _routes() -> dict[bytes, http.Handler]:
    def user(rest: bytes) -> tuple[int, bytes]:
        if rest == b"boom":
            raise RuntimeError("a bug")
        return 200, json.dumps({"user": int(rest)}).encode()

    def status(rest: bytes) -> tuple[int, bytes]:
        return 200, b'{"ok": true}'

    return {b"/features/users/": user, b"/status": status}


class _Server:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.server = self.loop.run_until_complete(http.serve("127.0.0.1", 0, _routes()))
        self.port = self.server.sockets[0].getsockname()[1]

    def exchange(self, raw: bytes, until_closed: bool = False, answers: int = 1) -> bytes:
        """Send ``raw`` bytes on a new connection; what came back (``answers`` responses,
        or everything until the server closes)."""

        async def talk() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(raw)
            got = b""
            try:
                while True:
                    chunk = await asyncio.wait_for(reader.read(65536), 2)
                    if not chunk:
                        break
                    got += chunk
                    if not until_closed and _complete(got) >= answers:
                        break
            finally:
                writer.close()
            return got

        return self.loop.run_until_complete(talk())

    def close(self) -> None:
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()


def _complete(data: bytes) -> int:
    """How many whole responses ``data`` holds."""
    count = 0
    while b"\r\n\r\n" in data:
        head, rest = data.split(b"\r\n\r\n", 1)
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(
                b":"
            )[1]
        )
        if len(rest) < length:
            break
        data, count = rest[length:], count + 1
    return count


def _responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    while data:
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
        length = int(headers["content-length"])
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return out


@pytest.fixture(params=["asyncio", "uvloop"])
def server(request: pytest.FixtureRequest) -> Iterator[_Server]:
    """On asyncio's loop and on uvloop's (the replica's; its transports are its own)."""
    import uvloop

    loop = uvloop.new_event_loop() if request.param == "uvloop" else asyncio.new_event_loop()
    found = _Server(loop)
    yield found
    found.close()


def _answers(server: _Server, raw: bytes, **kw: Any) -> list[tuple[int, dict[str, str], bytes]]:
    return _responses(server.exchange(raw, **kw))


def test_get_route_and_prefix(server: _Server) -> None:
    [(status, headers, body)] = _answers(
        server, b"GET /features/users/42 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert (status, json.loads(body)) == (200, {"user": 42})
    assert headers["content-type"] == "application/json"
    assert headers["date"].endswith("GMT")
    assert "connection" not in headers  # HTTP/1.1: kept alive
    [(status, _, body)] = _answers(server, b"GET /status?verbose=1 HTTP/1.1\r\n\r\n")
    assert (status, body) == (200, b'{"ok": true}')


def test_pipelined_requests_answer_in_order_on_one_connection(server: _Server) -> None:
    raw = b"".join(b"GET /features/users/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(50))
    found = _answers(server, raw, answers=50)
    assert [json.loads(body)["user"] for _, _, body in found] == list(range(50))


def test_errors_say_what_is_wrong(server: _Server) -> None:
    [(status, _, body)] = _answers(server, b"GET /nowhere HTTP/1.1\r\n\r\n")
    assert status == 404 and b"/nowhere" in body
    [(status, _, _)] = _answers(server, b"GET /statusx HTTP/1.1\r\n\r\n")
    assert status == 404  # a whole path is not a prefix
    [(status, headers, _)] = _answers(server, b"POST /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    [(status, _, body)] = _answers(server, b"GET /features/users/boom HTTP/1.1\r\n\r\n")
    assert status == 500 and b"log" in body


def test_bad_requests_are_answered_then_closed(server: _Server) -> None:
    [(status, headers, _)] = _answers(server, b"NOT HTTP AT ALL\r\n\r\n", until_closed=True)
    assert (status, headers["connection"]) == (400, "close")
    long = b"GET /features/users/" + b"1" * 9000 + b" HTTP/1.1\r\n\r\n"
    [(status, headers, _)] = _answers(server, long, until_closed=True)
    assert (status, headers["connection"]) == (414, "close")


def test_connection_close_and_http10(server: _Server) -> None:
    raw = b"GET /status HTTP/1.1\r\nConnection: close\r\n\r\nGET /status HTTP/1.1\r\n\r\n"
    found = _answers(server, raw, until_closed=True)
    assert [(s, h["connection"]) for s, h, _ in found] == [(200, "close")]  # the second unread
    [(status, headers, _)] = _answers(server, b"GET /status HTTP/1.0\r\n\r\n", until_closed=True)
    assert (status, headers["connection"]) == (200, "close")


def test_head_has_the_length_and_no_body(server: _Server) -> None:
    raw = b"HEAD /features/users/7 HTTP/1.1\r\n\r\nGET /features/users/7 HTTP/1.1\r\n\r\n"
    data = server.exchange(raw, answers=2)
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 11" in head
    assert rest.startswith(b"HTTP/1.1 200")  # no body: the GET's answer follows the head
    assert rest.endswith(b'{"user": 7}')


def test_a_real_client(server: _Server) -> None:
    """requests (urllib3) on a kept-alive session, while the loop serves in a thread."""
    import threading

    thread = threading.Thread(target=server.loop.run_forever, daemon=True)
    thread.start()
    try:
        with requests.Session() as session:
            for uid in (1, 2, 3):
                answer = session.get(
                    f"http://127.0.0.1:{server.port}/features/users/{uid}", timeout=5
                )
                assert answer.status_code == 200 and answer.json() == {"user": uid}
    finally:
        server.loop.call_soon_threadsafe(server.loop.stop)
        thread.join(5)
