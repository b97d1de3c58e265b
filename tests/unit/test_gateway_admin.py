"""The admin HTTP layer over the real release service and a real (SQLite) rollout store."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from crossfade.config import Settings, load_settings
from deployments.bodies import Reply
from deployments.gateway.admin import AdminAPI, bearer

RM, VIEWER = "rm-token", "viewer-token"


@pytest.fixture
def admin(settings: Settings) -> AdminAPI:
    with_tokens = load_settings(
        "local",
        data_root=settings.data_root,
        rollout={"release_manager_token": RM, "viewer_token": VIEWER},
    )
    return AdminAPI(with_tokens)


def call(
    admin: AdminAPI, action: str, method: str = "GET", token: str | None = None, body: Any = None
) -> Reply:
    return asyncio.run(
        admin.handle(
            action,
            method=method,
            authorization=f"Bearer {token}" if token else None,
            raw=json.dumps(body).encode() if body is not None else b"",
            query={},
        )
    )


def test_bearer_header_parsing() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer(None) is None and bearer("Basic abc") is None and bearer("Bearer ") is None


def test_status_needs_a_known_token_and_refusals_are_audited(admin: AdminAPI) -> None:
    assert call(admin, "status").status == 401
    assert call(admin, "status", token="guess").status == 401
    ok = call(admin, "status", token=VIEWER)
    assert ok.status == 200 and json.loads(ok.body)["phase"] == "IDLE"
    forbidden = call(admin, "pause", "POST", VIEWER, {"reason": "x"})
    assert forbidden.status == 403
    illegal = call(admin, "pause", "POST", RM, {"reason": "nothing to pause"})
    assert illegal.status == 409 and b"cannot pause" in illegal.body
    history = json.loads(call(admin, "history", token=RM).body)
    outcomes = [(row["actor"], row["action"], row["outcome"]) for row in history]
    assert ("anonymous", "status", "unauthenticated") in outcomes
    assert ("viewer", "pause", "refused") in outcomes
    assert ("release-manager", "pause", "refused") in outcomes


def test_wrong_method_unknown_action_and_bad_bodies(admin: AdminAPI) -> None:
    assert call(admin, "promote", "GET", RM).status == 405
    assert call(admin, "status", "POST", RM).status == 405
    assert call(admin, "explode", "POST", RM).status == 404
    bad = call(admin, "start", "POST", RM, {"candidates": "1", "ranker": "1", "colour": "red"})
    assert bad.status == 422 and b"colour" in bad.body
    missing = call(admin, "start", "POST", RM, {"candidates": "1"})
    assert missing.status == 422 and b"ranker" in missing.body
    limit = asyncio.run(
        admin.handle(
            "history", method="GET", authorization=f"Bearer {RM}", raw=b"", query={"limit": "0"}
        )
    )
    assert limit.status == 422 and b"limit" in limit.body
