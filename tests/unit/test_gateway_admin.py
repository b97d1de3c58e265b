"""The admin HTTP layer over the real release service and a real (SQLite) rollout store."""

from __future__ import annotations

import asyncio
import json
import time
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
    admin: AdminAPI,
    action: str,
    method: str = "GET",
    token: str | None = None,
    body: Any = None,
    if_match: str | None = None,
    client: str = "127.0.0.1",
) -> Reply:
    return asyncio.run(
        admin.handle(
            action,
            method=method,
            authorization=f"Bearer {token}" if token else None,
            raw=json.dumps(body).encode() if body is not None else b"",
            query={},
            if_match=if_match,
            client=client,
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
    illegal = call(
        admin, "pause", "POST", RM, {"reason": "nothing to pause", "expected_version": 0}
    )
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


def test_changes_need_the_state_version_they_act_on(admin: AdminAPI) -> None:
    """No expectation: 428 naming the field; If-Match and the body field both work and must
    agree; a stale one is a 409 naming the state that won; status carries the ETag."""
    status = call(admin, "status", token=RM)
    assert status.headers == {"etag": '"0"'}
    missing = call(admin, "pause", "POST", RM, {"reason": "x"})
    assert missing.status == 428 and b"expected_version" in missing.body
    assert b"If-Match" in missing.body
    star = call(admin, "pause", "POST", RM, {}, if_match="*")
    assert star.status == 428
    garbage = call(admin, "pause", "POST", RM, {}, if_match="yesterday")
    assert garbage.status == 422 and b"If-Match" in garbage.body
    disagree = call(admin, "pause", "POST", RM, {"expected_version": 1}, if_match='"2"')
    assert disagree.status == 422 and b"expected_version" in disagree.body
    negative = call(admin, "pause", "POST", RM, {"expected_version": -1})
    assert negative.status == 422
    # a legal move on a stale version: the store moved on (here by a direct write)
    store = admin.release.store
    moved = store.compare_and_set(
        0, store.read_state().evolve(phase="SHADOW"), actor="bob", action="start"
    )
    stale = call(admin, "pause", "POST", RM, {"reason": "x"}, if_match='W/"0"')
    assert stale.status == 409, stale.body
    doc = json.loads(stale.body)
    assert doc["kind"] == "ConflictError" and doc["expected_version"] == 0
    assert doc["current"]["phase"] == "SHADOW" and doc["current"]["version"] == moved.version
    assert doc["current"]["updated_by"] == "bob" and doc["current"]["last_action"] == "start"
    ok = call(admin, "pause", "POST", RM, {"reason": "x"}, if_match=f'"{moved.version}"')
    assert ok.status == 200 and json.loads(ok.body)["paused"] is True
    assert ok.headers == {"etag": f'"{moved.version + 1}"'}
    history = json.loads(call(admin, "history", token=RM).body)
    outcomes = {(row["action"], row["outcome"]) for row in history}
    assert {("pause", "precondition"), ("pause", "invalid"), ("pause", "conflict")} <= outcomes
    conflict = next(row for row in history if row["outcome"] == "conflict")
    assert conflict["metrics"]["lost_to"]["updated_by"] == "bob"


def test_refusal_floods_are_rate_limited_and_summarized(admin: AdminAPI) -> None:
    """An anonymous flood writes `burst` rows, then one summary row with the count: the log
    stays bounded and nothing is lost (the summary is written on flush and at close)."""
    burst = admin.release.controller.config.refusal_audit.burst
    flood = 10 * burst
    for _ in range(flood):
        assert call(admin, "promote", "POST", None, {}, client="10.0.0.9").status == 401
    other = call(admin, "status", client="10.0.0.10")  # another client has its own bucket
    assert other.status == 401
    for _ in range(3):  # invalid bodies of a known caller are refusals too
        assert call(admin, "start", "POST", RM, {"colour": "red"}).status == 422

    def rows() -> list[dict[str, Any]]:
        return admin.release.store.history(1000)

    anonymous = [r for r in rows() if r["actor"] == "anonymous"]
    assert len(anonymous) == burst + 1  # the flood's burst and the other client's one
    assert admin.release.refusals.pending() == flood - burst
    admin.close()
    summaries = [r for r in rows() if r["outcome"] == "suppressed"]
    assert len(summaries) == 1
    (summary,) = summaries
    assert summary["actor"] == "anonymous@10.0.0.9"
    assert f"{flood - burst} more refusals from anonymous@10.0.0.9" in summary["reason"]
    assert summary["metrics"]["suppressed"] == flood - burst
    assert admin.release.refusals.pending() == 0
    invalid = [r for r in rows() if r["outcome"] == "invalid"]
    assert len(invalid) == 3 and all("colour" in r["reason"] for r in invalid)


def test_the_gateway_watch_pauses_a_rollout_whose_controller_is_dead(admin: AdminAPI) -> None:
    store = admin.release.store
    state = store.compare_and_set(
        0, store.read_state().evolve(phase="SHADOW", window_start=time.time()), actor="alice"
    )
    limit = admin.release.controller.config.controller.stale_after(1.0)
    store.beat("controller", time.time() - 2 * limit, time.time() - 3 * limit, 4242)
    status = json.loads(call(admin, "status", token=VIEWER).body)
    assert status["controller"]["stale"] is True and status["controller"]["pid"] == 4242
    admin.watch_once()
    paused = store.read_state()
    assert paused.paused and paused.updated_by == "gateway" and paused.version == state.version + 1
    assert "heartbeat" in (paused.pause_reason or "")
    admin.watch_once()  # one alert per death
    assert [i["actor"] for i in store.incidents()] == ["gateway"]
