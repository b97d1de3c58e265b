"""JSON request bodies in and error replies out, shared by the gateway and the recommender.

One parse on the hot path (pydantic reads the bytes itself), and one error shape everywhere:
400 for a body that is not a JSON object, 422 naming every offending field by its dotted
location (`context.timezone`, `k`), `{"error": ..., "fields": [...]}`.

`BodyLimits` wraps both services' ASGI apps: a body over `serving.max_body_bytes` gets 413
(by its Content-Length before a byte is read, or once the bytes streamed in pass the limit),
a body not fully received within `serving.body_timeout_seconds` of the request's start gets
408; both close the connection, and neither keeps more of the body than the server's own
read buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from crossfade.config import Settings

RequestT = TypeVar("RequestT", bound=BaseModel)


@dataclass(frozen=True)
class Reply:
    """What the HTTP layer sends back: status, JSON bytes, extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] | None = None


def error_reply(status: int, message: str, **extra: Any) -> Reply:
    """A JSON error body `{"error": message, ...}`."""
    return Reply(status, orjson.dumps({"error": message, **extra}))


_LIMIT_KEYS = ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern")


def _field(err: Any) -> dict[str, Any]:
    """One offending field: dotted location, message and, for a bound, the limit it broke."""
    entry: dict[str, Any] = {
        "field": ".".join(str(p) for p in err["loc"]) or "body",
        "message": err["msg"],
    }
    limit = {k: v for k, v in (err.get("ctx") or {}).items() if k in _LIMIT_KEYS}
    if limit:
        entry["limit"] = limit
    return entry


def invalid_reply(exc: ValidationError) -> Reply:
    """422 listing every offending field by its dotted location (and the limit it broke)."""
    fields = [_field(err) for err in exc.errors()]
    names = ", ".join(f["field"] for f in fields)
    return error_reply(422, f"invalid request: {names}", fields=fields)


def parse_json(raw: bytes) -> dict[str, Any] | Reply:
    """The body as a JSON object, or the 400 that says why not."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error_reply(400, "the body is not valid JSON; send a JSON object")
    if not isinstance(body, dict):
        return error_reply(400, "the body must be a JSON object")
    return body


def parse_request(raw: bytes, model: type[RequestT]) -> RequestT | Reply:
    """The validated request, or the 400 (not a JSON object) / 422 (bad fields) that says why.

    Only a body pydantic rejects is parsed again, to tell a body that is not a JSON object
    (400) from a bad field (422).
    """
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        body = parse_json(raw)
        return body if isinstance(body, Reply) else invalid_reply(exc)


# -- body size and read-time limits (ASGI) ----------------------------------------------------
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
OnRefused = Callable[[int], None]  # called with 413 or 408 for every refused body
_DISCONNECT: Message = {"type": "http.disconnect"}


@dataclass(frozen=True)
class Limits:
    """What one service accepts: body bytes and seconds to receive the whole body."""

    max_body_bytes: int
    body_timeout_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits `settings.serving` sets (the same for the gateway and the recommenders)."""
        serving = settings.serving
        return cls(serving.max_body_bytes, serving.body_timeout_seconds)


def too_large(limit: int, size: int | None = None) -> Reply:
    """413 naming the body, its size when declared, and the limit."""
    told = f" ({size} bytes declared)" if size is not None else ""
    message = (
        f"the request body is larger than {limit} bytes{told} (serving.max_body_bytes); "
        "send a smaller body, e.g. split a feedback batch"
    )
    return error_reply(413, message, fields=[{"field": "body", "message": message, "limit": limit}])


def too_slow(limit: float) -> Reply:
    """408 naming the body and the time it had."""
    message = (
        f"the request body did not arrive within {limit:g} s (serving.body_timeout_seconds); "
        "send the whole body at once"
    )
    return error_reply(408, message, fields=[{"field": "body", "message": message, "limit": limit}])


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server's parser refuses a malformed header itself
    return None


async def send_closing(send: Send, reply: Reply) -> None:
    """Send `reply` with `connection: close` (the server closes the socket after it)."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(reply.body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


class _LimitedBody:
    """One request's receive/send, counting body bytes against the limits."""

    def __init__(self, receive: Receive, send: Send, limits: Limits, now: float) -> None:
        self._receive, self._send, self.limits = receive, send, limits
        self.deadline = now + limits.body_timeout_seconds
        self.received = 0
        self.done = False  # the whole body arrived (or the client left)
        self.refused: int | None = None
        self.started = False  # the app began its answer
        self.waiting: asyncio.Task[Any] | None = None  # the task blocked on the body, if any
        self.expired = False  # the watchdog cancelled `waiting` at the deadline

    async def receive(self) -> Message:
        if self.done:
            return await self._receive()  # after the body: waiting for a disconnect is fine
        if self.refused is not None:
            return _DISCONNECT
        self.waiting = asyncio.current_task()
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            # only our own cancellation means "the body is late"; any other one goes on
            if not self.expired or self.waiting is None or self.waiting.uncancel() > 0:
                raise
            return await self._refuse(too_slow(self.limits.body_timeout_seconds))
        finally:
            self.waiting = None
        if message["type"] != "http.request":
            self.done = True
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.limits.max_body_bytes:
            return await self._refuse(too_large(self.limits.max_body_bytes))
        if not message.get("more_body", False):
            self.done = True
        return message

    async def send(self, message: Message) -> None:
        if self.refused is not None:
            return  # the refusal was the answer; what the app says after it is dropped
        self.started = True
        await self._send(message)

    async def _refuse(self, reply: Reply) -> Message:
        self.refused = reply.status
        if not self.started:
            await send_closing(self._send, reply)
        return _DISCONNECT

    def expire(self, now: float) -> None:
        """Cancel the wait for the body if its deadline passed (the watchdog calls this)."""
        if self.waiting is not None and not self.expired and now >= self.deadline:
            self.expired = True
            self.waiting.cancel()


class BodyLimits:
    """ASGI middleware: 413 for a body over the size limit, 408 for one not received in time.

    `limits` is called once, on the first request (the recommender's BentoML worker loads its
    settings only then); `on_refused` counts refusals (Prometheus in each service). The read
    time is enforced by one watchdog task per event loop that sweeps the requests still
    reading their body, not by a timer per request: a timer cost more than the rest of the
    middleware on the listener path, and a body that arrived with its headers needs none.
    """

    def __init__(
        self,
        app: ASGIApp,
        limits: Callable[[], Limits],
        on_refused: Callable[[], OnRefused] | None = None,
    ) -> None:
        self.app = app
        self._limits_factory = limits
        self._on_refused_factory = on_refused
        self._limits: Limits | None = None
        self._on_refused: OnRefused | None = None
        self._reading: set[_LimitedBody] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through with its body read under the limits."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self._limits
        if limits is None:
            limits = self._limits = self._limits_factory()
            if self._on_refused_factory is not None:
                self._on_refused = self._on_refused_factory()
        declared = _declared_length(scope)
        if declared is not None and declared > limits.max_body_bytes:
            self._count(413)
            await send_closing(send, too_large(limits.max_body_bytes, declared))
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # the first request on this loop (tests run several)
            self._loop, self._reading = loop, set()
            self._watchdog = loop.create_task(self._watch(loop, limits.body_timeout_seconds))
        body = _LimitedBody(receive, send, limits, loop.time())
        self._reading.add(body)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if body.refused is None:
                raise
            # the app saw a disconnect where its body should be (Starlette raises for it)
        finally:
            self._reading.discard(body)
        if body.refused is not None:
            self._count(body.refused)

    async def _watch(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """Every quarter of the timeout (at most 0.5 s), end the waits past their deadline."""
        every = min(0.5, timeout / 4)
        reading = self._reading
        while True:
            await asyncio.sleep(every)
            if reading:
                now = loop.time()
                for body in list(reading):
                    body.expire(now)

    def _count(self, status: int) -> None:
        if self._on_refused is not None:
            self._on_refused(status)
