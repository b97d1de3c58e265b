"""Admin tokens: settings tokens and the digest-only tokens file map to roles; roles gate
actions."""

from __future__ import annotations

import pytest
import yaml

from crossfade.config import Settings, load_settings
from deployments.rollout.auth import (
    AuthError,
    Forbidden,
    Principal,
    authenticate,
    authorize,
    issue_token,
    tokens_file,
)


def test_settings_tokens_map_to_roles(settings: Settings) -> None:
    s = load_settings(
        "local",
        data_root=settings.data_root,
        rollout={"release_manager_token": "rm-secret", "viewer_token": "view-secret"},
    )
    assert authenticate(s, "rm-secret") == Principal("release-manager", "release-manager")
    assert authenticate(s, "view-secret").role == "viewer"
    for bad in ("", None, "rm-secre", "rm-secret ", "view-secret-x"):
        with pytest.raises(AuthError):
            authenticate(s, bad)


def test_issued_token_is_stored_as_digest_only(settings: Settings) -> None:
    token = issue_token(settings, "alice", "release-manager")
    viewer = issue_token(settings, "bob", "viewer")
    text = tokens_file(settings).read_text()
    assert token not in text and viewer not in text
    assert oct(tokens_file(settings).stat().st_mode & 0o777) == "0o600"
    assert authenticate(settings, token) == Principal("alice", "release-manager")
    assert authenticate(settings, viewer) == Principal("bob", "viewer")


def test_roles_gate_actions() -> None:
    viewer = Principal("bob", "viewer")
    manager = Principal("alice", "release-manager")
    for action in ("status", "history"):
        authorize(viewer, action)
        authorize(manager, action)
    for action in ("start", "promote", "pause", "resume", "rollback"):
        authorize(manager, action)
        with pytest.raises(Forbidden, match=f"bob \\(viewer\\) may not {action}"):
            authorize(viewer, action)


def test_invalid_tokens_file_is_a_clear_error(settings: Settings) -> None:
    path = tokens_file(settings)
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump([{"actor": "x", "role": "admin", "sha256": "0" * 64}]))
    with pytest.raises(AuthError, match=r"tokens file .* is invalid"):
        authenticate(settings, "anything")
