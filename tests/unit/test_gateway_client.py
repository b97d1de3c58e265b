"""The gateway's slot client against a scripted HTTP server on loopback.

The server reads each request (head and Content-Length body) and answers as the test says:
keep-alive, close after answering, chunked, slow, malformed, or close without answering. Each
case checks what the gateway relies on: answers and bodies intact, connections reused,
a stale idle connection retried once, errors and timeouts as OSError, no reuse after failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from deployments.gateway.client import SlotClient

Handler = Callable[[int, bytes], Awaitable[bytes | None]]  # (request number, body) -> raw answer


def answer(status: int, body: bytes, *, close: bool = False) -> bytes:
    """A Content-Length answer, keep-alive unless `close`."""
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(body)}\r\n"
    head += "connection: close\r\n" if close else ""
    return head.encode() + b"\r\n" + body


class ScriptedServer:
    """Counts connections and requests; answers each request with `handler`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests = 0
        self.bodies: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests += 1
                self.bodies.append(body)
                raw = await self.handler(self.requests, body)
                if raw is None:  # close without answering
                    break
                writer.write(raw)
                await writer.drain()
                if b"connection: close" in raw:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture(params=["uvloop", "asyncio"], autouse=True)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Every case on uvloop (the gateway's loop under uvicorn) and on asyncio's own."""
    LOOP[0] = request.param
    return str(request.param)


LOOP = ["uvloop"]


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    if LOOP[0] == "uvloop":
        return uvloop.run(main())
    return asyncio.run(main())


async def echo(_: int, body: bytes) -> bytes:
    return answer(200, body)


def test_answers_and_bodies_pass_intact_over_one_reused_connection() -> None:
    async def case() -> None:
        async with ScriptedServer(echo) as server:
            client = SlotClient(server.url, max_connections=4, timeout_s=2)
            for i in range(5):
                body = b'{"n": %d}' % i
                assert await client.post("/recommend", body) == (200, body)
            await client.close()
            assert server.connections == 1 and server.requests == 5

    run(case())


@settings(max_examples=25, deadline=None)
@given(body=st.binary(max_size=20_000), status=st.sampled_from([200, 202, 404, 422, 500, 503]))
def test_any_body_and_status_round_trip(body: bytes, status: int) -> None:
    async def reply(_: int, received: bytes) -> bytes:
        return answer(status, received)

    async def case() -> None:
        async with ScriptedServer(reply) as server:
            client = SlotClient(server.url, max_connections=2, timeout_s=2)
            assert await client.post("/feedback", body) == (status, body)
            await client.close()

    run(case())


def test_a_chunked_answer_is_reassembled() -> None:
    async def chunked(_: int, body: bytes) -> bytes:
        parts = [body[:3], body[3:]]
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
        head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        return head + chunks + b"0\r\n\r\n"

    async def case() -> None:
        async with ScriptedServer(chunked) as server:
            client = SlotClient(server.url, max_connections=1, timeout_s=2)
            assert await client.post("/recommend", b'{"abc": 1}') == (200, b'{"abc": 1}')
            assert await client.post("/recommend", b"[]") == (200, b"[]")
            await client.close()
            assert server.connections == 1

    run(case())


def test_connection_close_answers_open_a_new_connection_next_time() -> None:
    async def closing(_: int, body: bytes) -> bytes:
        return answer(200, body, close=True)

    async def case() -> None:
        async with ScriptedServer(closing) as server:
            client = SlotClient(server.url, max_connections=1, timeout_s=2)
            for _ in range(3):
                assert await client.post("/recommend", b"{}") == (200, b"{}")
            await client.close()
            assert server.connections == 3

    run(case())


def test_an_idle_connection_the_server_closed_is_retried_once_on_a_new_one() -> None:
    async def drop_second(n: int, body: bytes) -> bytes | None:
        return None if n == 2 else answer(200, body)  # request 2 meets a closing connection

    async def case() -> None:
        async with ScriptedServer(drop_second) as server:
            client = SlotClient(server.url, max_connections=1, timeout_s=2)
            assert await client.post("/recommend", b"1") == (200, b"1")
            assert await client.post("/recommend", b"2") == (200, b"2")  # retried
            await client.close()
            assert server.connections == 2 and server.bodies == [b"1", b"2", b"2"]

    run(case())


def test_a_fresh_connection_closed_without_answer_is_an_error_not_a_retry() -> None:
    async def drop(_: int, body: bytes) -> None:
        return None

    async def case() -> None:
        async with ScriptedServer(drop) as server:
            client = SlotClient(server.url, max_connections=1, timeout_s=2)
            with pytest.raises(ConnectionError):
                await client.post("/recommend", b"{}")
            await client.close()
            assert server.requests == 1

    run(case())


def test_idle_connections_older_than_keepalive_are_not_reused() -> None:
    async def case() -> None:
        async with ScriptedServer(echo) as server:
            client = SlotClient(server.url, max_connections=1, timeout_s=2, keepalive_seconds=0.05)
            await client.post("/recommend", b"{}")
            await asyncio.sleep(0.1)
            await client.post("/recommend", b"{}")
            await client.close()
            assert server.connections == 2

    run(case())


def test_a_slow_slot_times_out_as_timeouterror_and_its_connection_is_dropped() -> None:
    async def slow_first(n: int, body: bytes) -> bytes:
        if n == 1:
            await asyncio.sleep(0.5)
        return answer(200, body)

    async def case() -> None:
        async with ScriptedServer(slow_first) as server:
            client = SlotClient(server.url, max_connections=1, timeout_s=2)
            with pytest.raises(TimeoutError):
                await client.post("/recommend", b"{}", timeout=0.1)
            assert await client.post("/recommend", b"ok") == (200, b"ok")
            await client.close()
            assert server.connections == 2  # the timed-out connection was not reused

    run(case())


def test_refused_and_malformed_answers_are_oserrors() -> None:
    async def garbage(_: int, body: bytes) -> bytes:
        return b"NOT HTTP AT ALL\r\n\r\n"

    async def case() -> None:
        async with ScriptedServer(garbage) as server:
            client = SlotClient(server.url, max_connections=1, timeout_s=2)
            with pytest.raises(ConnectionError, match="malformed"):
                await client.post("/recommend", b"{}")
            url = server.url
        refused = SlotClient(url, max_connections=1, timeout_s=2)  # nothing listens any more
        with pytest.raises(OSError):
            await refused.post("/recommend", b"{}")
        await client.close()
        with pytest.raises(ConnectionError, match="closed"):
            await client.post("/recommend", b"{}")

    run(case())


def test_at_most_max_connections_are_opened_under_concurrent_calls() -> None:
    async def slowish(_: int, body: bytes) -> bytes:
        await asyncio.sleep(0.02)
        return answer(200, body)

    async def case() -> None:
        async with ScriptedServer(slowish) as server:
            client = SlotClient(server.url, max_connections=3, timeout_s=5)
            bodies = [b"%d" % i for i in range(12)]
            answers = await asyncio.gather(*(client.post("/r", b) for b in bodies))
            assert [body for _, body in answers] == bodies
            await client.close()
            assert server.connections == 3

    run(case())


def test_a_url_without_port_is_refused() -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        SlotClient("http://localhost", max_connections=1, timeout_s=1)
