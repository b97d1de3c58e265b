"""The release API over HTTP on the gateway: /admin/release/{action} with bearer tokens.

GET  status | history[?limit=N] | incidents[?limit=N]      (viewer or release-manager)
POST start {"candidates", "ranker", "reason", "expected_version"} |
     promote {"reason", "full", "expected_version"} |
     pause | resume | rollback {"reason", "expected_version"}  (release-manager)

Every change is conditional on the state the caller saw: `expected_version` in the body or
`If-Match: "<version>"` (status answers carry `ETag: "<version>"`). Answers: 200 with the
status document (or the list), 401 without a known token, 403 for a viewer's change, 409 when
the rollout is no longer at the expected version (the body's `current` names the state it
lost to: phase, step, version, who moved it) or the action is illegal in the current phase,
422 for a bad body or an unknown model ref, 428 for a change without an expected version.
Every attempt is audited in the rollout store: successes by the controller, refusals (bad
token, invalid body, 403, 409, 428) through a per-client rate limit that always writes a
summary of what it held back. The work is blocking (SQL, MLflow), so it runs in a worker
thread. The gateway also watches the controller's heartbeat (`watch`): a stale one pauses
the rollout and raises an incident.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crossfade.config import Settings
from deployments.bodies import Reply, error_reply, invalid_reply
from deployments.rollout.api import PRECONDITION, ReleaseService, http_status
from deployments.rollout.auth import ANONYMOUS_ACTOR, AuthError, Principal, authenticate
from deployments.rollout.auth import WATCHER_ACTOR as WATCHER
from deployments.rollout.store import ConflictError

log = logging.getLogger(__name__)

READS = {"status", "history", "incidents"}
CHANGES = {"start", "promote", "pause", "resume", "rollback"}
MAX_HISTORY = 500


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field("", max_length=500)
    expected_version: int | None = Field(
        None, ge=0, description="the state_version this change acts on (or If-Match)"
    )


class StartBody(_Body):
    """POST /admin/release/start."""

    candidates: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    ranker: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class PromoteBody(_Body):
    """POST /admin/release/promote (full: skip the remaining steps)."""

    full: bool = False


class Invalid(ValueError):
    """A request the admin API refuses before running it (status code and message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def if_match_version(header: str | None) -> int | None:
    """The state version of an `If-Match: "7"` header (W/ and quotes optional), else None."""
    if header is None or not header.strip():
        return None
    value = header.strip()
    if value == "*":
        raise Invalid(428, f"If-Match: * names no state; {PRECONDITION}")
    value = value.removeprefix("W/").strip().strip('"')
    if not value.isdigit():
        raise Invalid(422, f'If-Match must be one state version such as "7", got {header[:40]!r}')
    return int(value)


def expectation(body: _Body, if_match: str | None) -> int | None:
    """The expected version of a change from its body and/or If-Match (they must agree)."""
    header = if_match_version(if_match)
    both = header is not None and body.expected_version is not None
    if both and header != body.expected_version:
        raise Invalid(
            422,
            f"If-Match says version {header} but expected_version says "
            f"{body.expected_version}; send one, or the same in both",
        )
    return header if header is not None else body.expected_version


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class AdminAPI:
    """Maps admin HTTP requests onto the release service (one per gateway process)."""

    def __init__(self, settings: Settings, release: ReleaseService | None = None) -> None:
        self.settings = settings
        self.release = release or ReleaseService(settings)

    async def handle(
        self,
        action: str,
        *,
        method: str,
        authorization: str | None,
        raw: bytes,
        query: dict[str, str],
        if_match: str | None = None,
        client: str | None = None,
    ) -> Reply:
        """Authenticate, validate and run one admin request; never raises.

        `client` (the peer address) keys the refusal rate limit of unauthenticated callers."""
        if action not in READS | CHANGES:
            known = ", ".join(sorted(READS | CHANGES))
            return error_reply(404, f"unknown release action {action!r}; one of {known}")
        expected = "GET" if action in READS else "POST"
        if method.upper() != expected:
            return error_reply(405, f"use {expected} for /admin/release/{action}")
        return await asyncio.to_thread(
            self._run, action, authorization, raw, query, if_match, client or "unknown"
        )

    def _run(
        self,
        action: str,
        authorization: str | None,
        raw: bytes,
        query: dict[str, str],
        if_match: str | None = None,
        client: str = "unknown",
    ) -> Reply:
        try:
            principal = authenticate(self.settings, bearer(authorization))
        except AuthError as exc:
            self.release.refuse(
                f"{ANONYMOUS_ACTOR}@{client}",
                actor=ANONYMOUS_ACTOR,
                action=action,
                outcome="unauthenticated",
                reason=str(exc),
            )
            challenge = {"www-authenticate": 'Bearer realm="release"'}
            return Reply(401, orjson.dumps({"error": str(exc)}), challenge)
        try:
            call = self._call(action, principal, raw, query, if_match)
        except (ValidationError, ValueError) as exc:
            reply = (
                invalid_reply(exc)
                if isinstance(exc, ValidationError)
                else error_reply(exc.status if isinstance(exc, Invalid) else 422, str(exc))
            )
            self.release.refuse(
                principal.actor,
                actor=principal.actor,
                action=action,
                outcome="precondition" if reply.status == 428 else "invalid",
                reason=f"HTTP {reply.status}: {orjson.loads(reply.body)['error']}"[:1000],
            )
            return reply
        try:
            result = call()
        except Exception as exc:
            status = http_status(exc)
            if status >= 500:
                log.exception("release action %s failed", action)
            extra: dict[str, Any] = {"kind": type(exc).__name__}
            if isinstance(exc, ConflictError):
                extra.update(current=exc.winner(), expected_version=exc.expected)
            return error_reply(status, str(exc), **extra)
        body = orjson.dumps(result, default=str, option=orjson.OPT_NON_STR_KEYS)
        version = result.get("state_version") if isinstance(result, dict) else None
        return Reply(200, body, {"etag": f'"{version}"'} if version is not None else None)

    async def watch(self) -> None:
        """Forever (cancel to stop): check the controller's heartbeat every watch_seconds
        (a stale one pauses the rollout, with an incident) and write refusal summaries."""
        every = self.release.controller.config.controller.watch_seconds
        while True:
            await asyncio.to_thread(self.watch_once)
            await asyncio.sleep(every)

    def watch_once(self) -> None:
        """One liveness check and refusal-summary flush; never raises."""
        try:
            outcome = self.release.controller.watch_liveness(WATCHER)
            if outcome is not None:
                log.error("rollout paused: %s", outcome.detail)
        except Exception as exc:  # the store is down: try again next time
            log.warning("controller liveness check failed: %s", exc)
        self.release.refusals.flush()

    def close(self) -> None:
        """Write every pending refusal summary (the gateway is stopping)."""
        self.release.refusals.close()

    def _call(
        self,
        action: str,
        principal: Principal,
        raw: bytes,
        query: dict[str, str],
        if_match: str | None = None,
    ) -> Callable[[], Any]:
        release = self.release
        if action in READS:
            if action == "status":
                return lambda: release.status(principal)
            limit = _limit(query)
            if action == "history":
                return lambda: release.history(principal, limit)
            return lambda: release.incidents(principal, limit)
        if action == "start":
            start = StartBody.model_validate_json(raw or b"{}")
            version = expectation(start, if_match)
            return lambda: release.start(
                principal, start.candidates, start.ranker, start.reason, expected_version=version
            )
        if action == "promote":
            promote = PromoteBody.model_validate_json(raw or b"{}")
            version = expectation(promote, if_match)
            return lambda: release.promote(
                principal, promote.reason, promote.full, expected_version=version
            )
        body = _Body.model_validate_json(raw or b"{}")
        version = expectation(body, if_match)
        method: Callable[..., Any] = getattr(release, action)
        return lambda: method(principal, body.reason, expected_version=version)


def _limit(query: dict[str, str]) -> int:
    raw = query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_HISTORY:
        raise ValueError(f"limit must be an integer in [1, {MAX_HISTORY}], got {raw!r}")
    return int(raw)
