"""A small pooled HTTP/1.1 client for the gateway's calls to its slots (POST, JSON bytes).

Why not aiohttp: on the request path aiohttp's client cost 140-146 us of CPU per POST against
46-48 us for this (same server and body, back to back), and at the benchmark's 50 requests/s
a process pays about three times the code it runs (cold caches after sleeping;
docs/gateway.md, Performance). The peers are our own recommender processes on loopback
(uvicorn), so the client needs only what they speak: keep-alive HTTP/1.1, a body with
Content-Length or chunked, parsed by httptools (uvicorn's own parser).

Semantics the gateway relies on:
- `post()` returns (status, body bytes) or raises an OSError: ConnectionError for refused,
  reset or malformed exchanges, TimeoutError when the whole call took longer than `timeout`
  (a timed-out connection is closed, never reused);
- idle connections are reused for at most `keepalive_seconds` (below uvicorn's 5 s), so the
  gateway does not write into a connection the server is closing; if a reused connection still
  turns out closed before any byte of the answer arrived, the call is retried once on a new one
  (the server saw no complete request on a connection it had closed);
- at most `max_connections` connections per slot; callers beyond that wait for one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import cast
from urllib.parse import urlsplit

import httptools

_HEAD = (
    b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
)


class _StaleConnection(ConnectionError):
    """A reused connection closed before the answer started: safe to retry once."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: send a request, collect one response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.started = False  # a byte of the current response arrived
        self.closed = False
        self.idle_since = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP answer: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        self.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.started:
            self._fail(ConnectionError("the slot closed the connection mid-answer"))
        else:
            self._fail(_StaleConnection("the connection was closed before the answer"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if not self.parser.should_keep_alive():
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(self.chunks)))

    # the client's side
    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Write one request; the future resolves with (status, body)."""
        if self.transport is None:
            raise ConnectionError("the connection was never established")
        self.chunks = []
        self.started = False
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        """Close the socket; a pending call fails."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class SlotClient:
    """Pooled keep-alive connections to one slot (create and use inside the event loop)."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int,
        timeout_s: float,
        keepalive_seconds: float = 3.0,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname or not url.port:
            raise ValueError(f"slot URL must be http://host:port, got {base_url!r}")
        self.host, self.port = url.hostname, url.port
        self._host_header = f"{self.host}:{self.port}".encode()
        self.timeout_s = timeout_s
        self.keepalive_seconds = keepalive_seconds
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._open: set[_Connection] = set()
        self._closed = False

    async def post(self, path: str, body: bytes, timeout: float | None = None) -> tuple[int, bytes]:
        """POST JSON bytes; (status, body). Raises ConnectionError or TimeoutError."""
        if self._closed:
            raise ConnectionError("the client is closed")
        request = _HEAD % (path.encode(), self._host_header, len(body)) + body
        async with asyncio.timeout(self.timeout_s if timeout is None else timeout):
            async with self._slots:
                return await self._exchange(request)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        connection, reused = self._take_idle(), True
        if connection is None:
            connection, reused = await self._connect(), False
        try:
            try:
                answer = await connection.send(request)
            except _StaleConnection:
                if not reused:
                    raise
                self._discard(connection)
                connection = await self._connect()  # the server had closed an idle one
                answer = await connection.send(request)
        except BaseException:  # includes the timeout's cancellation: never reuse it
            self._discard(connection)
            raise
        if connection.closed:
            self._discard(connection)
        else:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        return answer

    def _take_idle(self) -> _Connection | None:
        """The most recently used idle connection still open and younger than the keep-alive
        (the deque is in return order, so expired ones are all at its left end)."""
        now = time.monotonic()
        while self._idle and now - self._idle[0].idle_since >= self.keepalive_seconds:
            self._discard(self._idle.popleft())
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._discard(connection)  # closed by the server while idle
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self.host, self.port)
        self._open.add(connection)
        return connection

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def close(self) -> None:
        """Close every connection; later calls fail with ConnectionError."""
        self._closed = True
        self._idle.clear()
        for connection in list(self._open):
            self._discard(connection)
