"""Body limits and one validation, against the real stack (gateway, blue, green, shadow).

- a 200 MB body, declared or chunked, streamed from a generator (the test never holds it):
  413 naming the limit, and the gateway's memory stays near where it started;
- 200 connections that send half a body and stall: each ends in 408 or a closed connection
  once `serving.body_timeout_seconds` has passed, while simulated listeners see no failure;
- `ms_played` = 1e30 (as an integer and as a float): the gateway and blue refuse it with the
  same answer, and over generated feedback bodies the two accept or refuse alike.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from crossfade.config import Settings
from crossfade.data.domains import ID_MAX_LENGTH
from crossfade.serving.api import MAX_MS_PLAYED
from deployments.process import HOST
from deployments.rollout.store import RolloutStore
from deployments.serve import Stack, start_stack
from tests.fixtures.stack import Traffic, eventually, stack_settings, trained_world

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

BODY_TIMEOUT_S = 2.0  # short, so the stalled connections end within the test
BIG_BODY = 200 * 1024 * 1024
HALF_BODIES = 200
MIB = 1024 * 1024
RSS_BOUND = 100 * MIB  # generous: the old gateway grew by ~1.4 GB on one such body
PIECE = b"a" * 65536


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Settings:
    """The stack's settings with a short body-read timeout (the size limit at its default)."""
    trained = trained_world(tmp_path_factory)
    return stack_settings(
        trained,
        tmp_path_factory.mktemp("limits"),
        serving={"body_timeout_seconds": BODY_TIMEOUT_S},
        gateway={"slot_timeout_ms": 2500, "last_resort_timeout_ms": 5000},
    )


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[Stack]:
    with start_stack(settings) as running:
        yield running


def _gateway(stack: Stack) -> psutil.Process:
    return psutil.Process(stack.services["gateway"].process.pid)


class PeakRSS:
    """The largest RSS of a process seen while the block runs (sampled every 10 ms)."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.start = self.peak = process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def _big_body(chunked: bool, size: int = BIG_BODY) -> Iterator[bytes]:
    """`size` bytes of one JSON string, 64 KiB at a time (chunk-framed when `chunked`)."""
    head, tail = b'{"listener_id": "', b'"}'
    pieces = [head, *([PIECE] * ((size - len(head) - len(tail)) // len(PIECE))), tail]
    for piece in pieces:
        yield b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    if chunked:
        yield b"0\r\n\r\n"


def _response(data: bytes) -> tuple[int, dict[str, Any]] | None:
    """(status, JSON body) once `data` holds a whole response, else None."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    if len(body) < int(headers.get("content-length", 0)):
        return None
    return int(lines[0].split()[1]), json.loads(body) if body else {}


def _stream(port: int, path: str, headers: str, body: Iterator[bytes]) -> tuple[int, Any]:
    """Send `body` piece by piece until the gateway answers; its (status, JSON body)."""
    sock = socket.create_connection((HOST, port), timeout=60)
    sock.sendall(f"POST {path} HTTP/1.1\r\nhost: {HOST}\r\n{headers}\r\n".encode())
    sock.setblocking(False)
    received, pending = b"", next(body, b"")
    deadline = time.monotonic() + 120
    with sock, selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while time.monotonic() < deadline:
            for _, events in selector.select(timeout=1):
                if events & selectors.EVENT_READ:
                    try:
                        data = sock.recv(65536)
                    except ConnectionResetError:
                        data = b""
                    received += data
                    answer = _response(received)
                    if answer is not None:
                        return answer
                    if not data:
                        raise AssertionError(f"the gateway closed without an answer: {received!r}")
                if events & selectors.EVENT_WRITE and pending:
                    try:
                        pending = pending[sock.send(pending) :] or next(body, b"")
                    except (BrokenPipeError, ConnectionResetError):
                        pending = b""  # the gateway stopped reading: its answer follows
                    if not pending:
                        selector.modify(sock, selectors.EVENT_READ)
    raise AssertionError("no answer from the gateway within 120 s")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_200_mb_body_gets_413_and_the_gateway_does_not_buffer_it(
    stack: Stack, settings: Settings, chunked: bool
) -> None:
    framing = "transfer-encoding: chunked" if chunked else f"content-length: {BIG_BODY}"
    headers = f"content-type: application/json\r\n{framing}\r\n"
    with PeakRSS(_gateway(stack)) as rss:
        status, answer = _stream(stack.ports.gateway, "/feedback", headers, _big_body(chunked))
    assert status == 413, answer
    limit = settings.serving.max_body_bytes
    assert answer["fields"] == [{"field": "body", "message": answer["error"], "limit": limit}]
    assert rss.peak - rss.start < RSS_BOUND, (rss.start / MIB, rss.peak / MIB)
    metrics = httpx.get(f"{stack.gateway_url}/metrics", timeout=30).text
    assert 'crossfade_gateway_refused_bodies_total{status="413"}' in metrics


def test_blue_refuses_oversize_and_stalled_bodies_as_the_gateway_does(stack: Stack) -> None:
    ports = {"gateway": stack.ports.gateway, "blue": stack.ports.blue}
    size = 2 * 1024 * 1024
    for chunked in (False, True):
        framing = "transfer-encoding: chunked" if chunked else f"content-length: {size}"
        answers = {
            name: _stream(port, "/feedback", f"{framing}\r\n", _big_body(chunked, size))
            for name, port in ports.items()
        }
        assert answers["gateway"][0] == 413 and answers["blue"] == answers["gateway"], answers
    stalled = [_half_body(port) for port in ports.values()]
    try:
        closed = _wait_all_closed(stalled, timeout=BODY_TIMEOUT_S + 60)
    finally:
        for sock in stalled:
            sock.close()
    gateway, blue = (_response(answer) for answer in closed)
    assert gateway is not None and gateway[0] == 408 and blue == gateway


def _half_body(port: int) -> socket.socket:
    """A /feedback request whose body stops halfway (the connection stays open)."""
    sock = socket.create_connection((HOST, port), timeout=30)
    sock.sendall(
        f"POST /feedback HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
        "content-length: 400\r\n\r\n".encode()
        + b'{"listener_id": "' + b"u" * 183
    )  # fmt: skip
    sock.setblocking(False)
    return sock


def _wait_all_closed(socks: list[socket.socket], timeout: float) -> list[bytes]:
    """What each connection received until the gateway closed it (all, within `timeout`)."""
    got = {sock.fileno(): b"" for sock in socks}
    open_ = {sock.fileno(): sock for sock in socks}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while open_ and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1):
                sock = open_[key.fd]
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                got[key.fd] += data
                if not data:
                    selector.unregister(sock)
                    del open_[key.fd]
    assert not open_, f"{len(open_)} stalled connections still open after {timeout:.0f} s"
    return [got[sock.fileno()] for sock in socks]


def test_stalled_half_bodies_end_in_408_while_listeners_are_served(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    traffic = Traffic(settings, stack.gateway_url, tmp_path / "traffic.json", listeners=6)
    traffic.start()
    try:
        socks = [_half_body(stack.ports.gateway) for _ in range(HALF_BODIES)]
        try:
            answers = _wait_all_closed(socks, timeout=BODY_TIMEOUT_S + 120)
        finally:
            for sock in socks:
                sock.close()
        closed_at = time.time()
        timed_out = sum(1 for a in answers if a.startswith(b"HTTP/1.1 408"))
        plain_closes = sum(1 for a in answers if not a)
        # the gateway ended every stalled connection itself: a 408 or a plain close, nothing else
        assert timed_out + plain_closes == HALF_BODIES, (timed_out, plain_closes)
        for answer in answers:  # 408 naming the limit, or a plain close
            if answer:
                status, body = _response(answer) or (0, {})
                assert status == 408, answer
                assert body["fields"][0] == {
                    "field": "body",
                    "message": body["error"],
                    "limit": BODY_TIMEOUT_S,
                }
        assert timed_out > 0
        store = RolloutStore.from_settings(settings)
        eventually(
            lambda: any(
                r["kind"] == "request" for r in store.observations(closed_at, time.time() + 60)
            ),
            "listener requests after the stalled connections ended",
        )
    finally:
        summary = traffic.stop()
    assert summary["requests"] > 0, summary
    assert summary["failed"] == 0 and summary["transport_errors"] == 0, summary
    assert summary["feedback_failed"] == 0, summary


def _feedback(**fields: Any) -> dict[str, Any]:
    base = {
        "listener_id": "u-limits",
        "item_id": "t-1",
        "event": "play",
        "ms_played": 1000,
        "timestamp": "2026-01-15T08:30:00Z",
    }
    return {**base, **fields}


def _both(stack: Stack, path: str, raw: bytes) -> tuple[httpx.Response, httpx.Response]:
    """The same bytes POSTed to the gateway and straight to blue."""
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=30) as client:
        via_gateway = client.post(f"{stack.gateway_url}{path}", content=raw, headers=headers)
        direct = client.post(f"{stack.url('blue')}{path}", content=raw, headers=headers)
    return via_gateway, direct


@pytest.mark.parametrize("played", ["1" + "0" * 30, "1e30"], ids=["integer", "float"])
def test_ms_played_1e30_is_refused_alike_by_gateway_and_recommender(
    stack: Stack, played: str
) -> None:
    event = json.dumps(_feedback(ms_played=0)).replace('"ms_played": 0', f'"ms_played": {played}')
    for path, raw in (("/feedback", event), ("/feedback/batch", f'{{"events": [{event}]}}')):
        via_gateway, direct = _both(stack, path, raw.encode())
        assert via_gateway.status_code == direct.status_code == 422, via_gateway.text
        assert via_gateway.json() == direct.json()
        (field,) = via_gateway.json()["fields"]
        assert field["field"].endswith("ms_played"), field
        if played.isdigit():
            assert field["limit"] == {"le": MAX_MS_PLAYED}, field


IDS = st.one_of(
    st.sampled_from(["u1", "t-1", "user:42@x", "a" * ID_MAX_LENGTH]),
    st.sampled_from(["", "a" * (ID_MAX_LENGTH + 1), "../../etc/passwd", "u\n1", "ü", "a b"]),
    st.text(max_size=20),
)
FEEDBACK = st.fixed_dictionaries(
    {
        "listener_id": IDS,
        "item_id": IDS,
        "event": st.sampled_from(["play", "skip", "save", "like", ""]),
        "ms_played": st.one_of(
            st.none(),
            st.integers(-5, 2 * MAX_MS_PLAYED),
            st.sampled_from([MAX_MS_PLAYED, MAX_MS_PLAYED + 1, 10**30, 2**63]),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        "timestamp": st.sampled_from(
            ["2026-01-15T08:30:00Z", "2026-01-15T08:30:00+01:00", "2026-01-15T08:30:00", "soon"]
        ),
    },
    optional={
        "slot": st.one_of(st.none(), st.sampled_from(["blue", "green", "shadow", "purple"])),
        "extra": st.just(1),
    },
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=FEEDBACK)
def test_gateway_and_recommender_accept_or_refuse_feedback_alike(
    stack: Stack, body: dict[str, Any]
) -> None:
    via_gateway, direct = _both(stack, "/feedback", json.dumps(body).encode())
    assert via_gateway.status_code == direct.status_code, (body, via_gateway.text, direct.text)
    assert via_gateway.status_code in (202, 400, 422), via_gateway.text
    if via_gateway.status_code != 202:
        assert via_gateway.json() == direct.json()
