"""The read replica's HTTP/1.1 server: JSON answers to GETs, on httptools and asyncio.

The replica answers from memory in tens of microseconds, so the HTTP layer is most of a
request's cost. Serving the same body to vegeta at 2,000 requests/s on one core
(``benchmarks/bench_online.py`` has the full run) took, per request: aiohttp 159 µs,
granian's RSGI 141 µs, uvicorn with a bare ASGI app about 120 µs, and this protocol 38 µs.
On a two-core machine shared with the worker, the broker and the producer, that
difference is the latency of the requests that queue behind one another.

It parses with httptools (uvicorn's parser) and keeps to what a loopback JSON API needs:

- ``GET`` (and ``HEAD``) on the routes given; other methods get 405, other paths 404;
- keep-alive and pipelining (answers are written in the order of the requests);
- a request that does not parse, or a target over 8 KiB, gets 400 (414) and the
  connection is closed;
- a client that stops reading stops being read (the transport's flow control).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import cast

import httptools
import orjson

logger = logging.getLogger(__name__)

Handler = Callable[[bytes], tuple[int, bytes]]  # the path after the route -> (status, JSON)

MAX_TARGET = 8192
REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    414: b"URI Too Long",
    500: b"Internal Server Error",
}


class _Date:
    """The ``Date`` header (RFC 9110 asks an origin server with a clock for one), made
    once a second."""

    def __init__(self) -> None:
        self.second, self.value = 0, b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = formatdate(now, usegmt=True).encode()
        return self.value


_date = _Date()


def error(message: str) -> bytes:
    """An error's JSON body: ``{"error": message}``."""
    return orjson.dumps({"error": message})


class _Connection(asyncio.Protocol):
    def __init__(self, routes: dict[bytes, Handler]) -> None:
        self.routes = routes
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.target = b""
        self.closing = False

    # --- asyncio ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._answer(400, error("upgrades are not served"), keep=False)
        except httptools.HttpParserError as exc:
            self._answer(400, error(f"bad request: {exc}"), keep=False)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    # --- httptools ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.target = b""

    def on_url(self, url: bytes) -> None:
        if len(self.target) <= MAX_TARGET:
            self.target += url

    def on_message_complete(self) -> None:
        if self.closing:
            return
        method = self.parser.get_method()
        keep = self.parser.should_keep_alive()
        if len(self.target) > MAX_TARGET:
            self._answer(414, error("the request target is over 8 KiB"), keep=False)
            return
        if method not in (b"GET", b"HEAD"):
            self._answer(405, error("only GET is served"), keep, allow=True)
            return
        path = self.target.split(b"?", 1)[0]
        for route, handler in self.routes.items():
            if path == route or (route.endswith(b"/") and path.startswith(route)):
                try:
                    status, body = handler(path[len(route) :])
                except Exception:
                    logger.exception("answering %s", path.decode(errors="replace"))
                    status, body = 500, error("internal error: see the replica's log")
                break
        else:
            status, body = 404, error(f"no such path: {path.decode(errors='replace')}")
        self._answer(status, b"" if method == b"HEAD" else body, keep, length=len(body))

    # --- answering ----------------------------------------------------------------------

    def _answer(
        self, status: int, body: bytes, keep: bool, length: int | None = None, allow: bool = False
    ) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        head = b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\n" % (
            status,
            REASONS[status],
            _date(),
        )
        if allow:
            head += b"Allow: GET, HEAD\r\n"
        if not keep:
            head += b"Connection: close\r\n"
        size = len(body) if length is None else length
        transport.write(head + b"Content-Length: %d\r\n\r\n" % size + body)
        if not keep:
            self.closing = True
            transport.close()


async def serve(host: str, port: int, routes: dict[bytes, Handler]) -> asyncio.Server:
    """Listen on ``host:port``. ``routes`` maps a path (``b"/status"``) or, ending in a
    slash, a path prefix (``b"/features/users/"``) to its handler, tried in order."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Connection(routes), host, port, backlog=1024)


__all__ = ["Handler", "error", "serve"]
