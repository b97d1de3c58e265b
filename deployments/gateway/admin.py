"""The release API over HTTP on the gateway: /admin/release/{action} with bearer tokens.

GET  status | history[?limit=N] | incidents[?limit=N]      (viewer or release-manager)
POST start {"candidates", "ranker", "reason"} | promote {"reason", "full"} |
     pause | resume | rollback {"reason"}                   (release-manager)

Answers: 200 with the status document (or the list), 401 without a known token, 403 for a
viewer's change, 409 when another action changed the rollout first or the action is illegal in
the current phase, 422 for a bad body or an unknown model ref. Every attempt is audited in the
rollout store: successes and refusals by deployments/rollout/api.py, unauthenticated attempts
here (actor "anonymous"). The work is blocking (SQL, MLflow), so it runs in a worker thread.
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
from deployments.rollout.api import ReleaseService, http_status
from deployments.rollout.auth import AuthError, Principal, authenticate

log = logging.getLogger(__name__)

READS = {"status", "history", "incidents"}
CHANGES = {"start", "promote", "pause", "resume", "rollback"}
MAX_HISTORY = 500


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field("", max_length=500)


class StartBody(_Body):
    """POST /admin/release/start."""

    candidates: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    ranker: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class PromoteBody(_Body):
    """POST /admin/release/promote (full: skip the remaining steps)."""

    full: bool = False


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
    ) -> Reply:
        """Authenticate, validate and run one admin request; never raises."""
        if action not in READS | CHANGES:
            known = ", ".join(sorted(READS | CHANGES))
            return error_reply(404, f"unknown release action {action!r}; one of {known}")
        expected = "GET" if action in READS else "POST"
        if method.upper() != expected:
            return error_reply(405, f"use {expected} for /admin/release/{action}")
        return await asyncio.to_thread(self._run, action, authorization, raw, query)

    def _run(
        self, action: str, authorization: str | None, raw: bytes, query: dict[str, str]
    ) -> Reply:
        try:
            principal = authenticate(self.settings, bearer(authorization))
        except AuthError as exc:
            self._audit_unauthenticated(action, str(exc))
            challenge = {"www-authenticate": 'Bearer realm="release"'}
            return Reply(401, orjson.dumps({"error": str(exc)}), challenge)
        try:
            call = self._call(action, principal, raw, query)
        except ValidationError as exc:
            return invalid_reply(exc)
        except ValueError as exc:
            return error_reply(422, str(exc))
        try:
            result = call()
        except Exception as exc:
            status = http_status(exc)
            if status >= 500:
                log.exception("release action %s failed", action)
            return error_reply(status, str(exc), kind=type(exc).__name__)
        return Reply(200, orjson.dumps(result, default=str, option=orjson.OPT_NON_STR_KEYS))

    def _call(
        self, action: str, principal: Principal, raw: bytes, query: dict[str, str]
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
            return lambda: release.start(principal, start.candidates, start.ranker, start.reason)
        if action == "promote":
            promote = PromoteBody.model_validate_json(raw or b"{}")
            return lambda: release.promote(principal, promote.reason, promote.full)
        body = _Body.model_validate_json(raw or b"{}")
        method: Callable[..., Any] = getattr(release, action)
        return lambda: method(principal, body.reason)

    def _audit_unauthenticated(self, action: str, why: str) -> None:
        try:
            state = self.release.store.read_state()
            self.release.store.audit(
                actor="anonymous",
                action=action,
                outcome="unauthenticated",
                reason=why,
                rollout_id=state.rollout_id,
                from_phase=state.phase,
                to_phase=state.phase,
            )
        except Exception as exc:  # the refusal stands; losing its audit line must be loud
            log.error("audit of an unauthenticated %s failed: %s", action, exc)


def _limit(query: dict[str, str]) -> int:
    raw = query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_HISTORY:
        raise ValueError(f"limit must be an integer in [1, {MAX_HISTORY}], got {raw!r}")
    return int(raw)
