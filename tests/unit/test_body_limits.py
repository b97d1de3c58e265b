"""BodyLimits (deployments/bodies.py): 413 for oversize bodies, 408 for stalled ones.

Driven straight through the ASGI interface: the middleware is the one both services run, the
inner apps here are the smallest that read a body (a raw ASGI reader and a Starlette route).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crossfade.serving.api import MAX_MS_PLAYED, FeedbackRequest
from deployments.bodies import BodyLimits, Limits, Message, Reply, parse_request

LIMITS = Limits(max_body_bytes=1024, body_timeout_seconds=0.2)


class Reader:
    """An ASGI app that reads the whole body and answers 200 with its length."""

    def __init__(self) -> None:
        self.called = False
        self.lengths: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.lengths.append(size)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


def _scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/feedback", "headers": headers or []}


class Feed:
    """The server side of one request: body messages queued, then (optionally) a stall."""

    def __init__(self, chunks: list[bytes], *, stall: bool = False) -> None:
        self.messages: list[Message] = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1 or stall}
            for i, chunk in enumerate(chunks)
        ]
        self.received = 0  # messages handed to the app
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.received < len(self.messages):
            self.received += 1
            return self.messages[self.received - 1]
        await asyncio.Event().wait()  # the client sends nothing more
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def answer(self) -> tuple[int, dict[str, bytes], dict[str, Any]]:
        start, body = self.sent[0], self.sent[1]
        return start["status"], dict(start["headers"]), orjson.loads(body["body"])


def _run(app: Any, scope: dict[str, Any], feed: Feed) -> None:
    asyncio.run(asyncio.wait_for(app(scope, feed.receive, feed.send), timeout=30))


def test_a_declared_oversize_body_gets_413_before_the_app_reads_a_byte() -> None:
    inner, refused = Reader(), []
    app = BodyLimits(inner, limits=lambda: LIMITS, on_refused=lambda: refused.append)
    feed = Feed([b"x" * 10])
    _run(app, _scope([(b"content-length", b"209715200")]), feed)
    status, headers, body = feed.answer()
    assert (status, headers[b"connection"], inner.called, feed.received) == (413, b"close", 0, 0)
    assert body["fields"] == [{"field": "body", "message": body["error"], "limit": 1024}]
    assert "209715200 bytes declared" in body["error"] and "serving.max_body_bytes" in body["error"]
    assert refused == [413]


def test_a_streamed_body_is_refused_once_it_passes_the_limit_and_not_read_further() -> None:
    inner = Reader()
    app = BodyLimits(inner, limits=lambda: LIMITS)
    feed = Feed([b"x" * 600] * 1000)  # chunked: no Content-Length, 600 kB on offer
    _run(app, _scope(), feed)
    status, headers, _ = feed.answer()
    assert (status, headers[b"connection"]) == (413, b"close")
    assert feed.received == 2  # the second chunk passed 1024 bytes: nothing read after it
    assert len(feed.sent) == 2 and inner.lengths == []  # the app's own answer never went out


def test_a_body_that_stalls_gets_408_naming_the_timeout() -> None:
    inner, refused = Reader(), []
    app = BodyLimits(inner, limits=lambda: LIMITS, on_refused=lambda: refused.append)
    feed = Feed([b'{"listener_id": '], stall=True)
    _run(app, _scope([(b"content-length", b"500")]), feed)
    status, headers, body = feed.answer()
    assert (status, headers[b"connection"]) == (408, b"close")
    assert body["fields"][0]["field"] == "body" and body["fields"][0]["limit"] == 0.2
    assert "serving.body_timeout_seconds" in body["error"]
    assert refused == [408]


def test_a_body_within_the_limits_reaches_the_app_whole() -> None:
    inner = Reader()
    app = BodyLimits(inner, limits=lambda: LIMITS)
    feed = Feed([b"x" * 500, b"y" * 524])  # exactly the limit
    _run(app, _scope([(b"content-length", b"1024")]), feed)
    assert feed.sent[0]["status"] == 200 and inner.lengths == [1024]


def test_a_starlette_app_that_raises_on_the_cut_body_is_still_answered_once() -> None:
    async def echo(request: Request) -> Response:
        return Response(await request.body())

    app = BodyLimits(Starlette(routes=[Route("/feedback", echo, methods=["POST"])]), lambda: LIMITS)
    feed = Feed([b"x" * 800] * 5)
    _run(app, _scope(), feed)  # Starlette raises ClientDisconnect inside: nothing escapes
    status, _, body = feed.answer()
    assert status == 413 and len(feed.sent) == 2 and body["fields"][0]["limit"] == 1024


def test_a_field_over_its_bound_is_422_naming_the_field_and_the_limit() -> None:
    raw = (
        b'{"listener_id": "u1", "item_id": "i1", "event": "play", '
        b'"ms_played": 1000000000000000000000000000000, "timestamp": "2026-01-01T00:00:00Z"}'
    )
    reply = parse_request(raw, FeedbackRequest)
    assert isinstance(reply, Reply) and reply.status == 422
    (field,) = orjson.loads(reply.body)["fields"]
    assert field["field"] == "ms_played" and field["limit"] == {"le": MAX_MS_PLAYED}
