"""Who may do what: bearer tokens -> (actor, role), roles -> allowed release actions.

Tokens come from settings (CROSSFADE_ROLLOUT__RELEASE_MANAGER_TOKEN / __VIEWER_TOKEN, actors
"release-manager" and "viewer") and from a tokens file (YAML list of {actor, role, sha256},
default <data root>/rollout/tokens.yaml) that stores only SHA-256 digests. Every comparison is
constant-time and every token is checked, so timing says nothing about which one nearly matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crossfade.config import Settings
from deployments.rollout.store import rollout_dir

Role = Literal["viewer", "release-manager"]
ROLES: tuple[str, ...] = ("viewer", "release-manager")
READ_ACTIONS = frozenset({"status", "history"})
WRITE_ACTIONS = frozenset({"start", "promote", "pause", "resume", "rollback"})
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": READ_ACTIONS,
    "release-manager": READ_ACTIONS | WRITE_ACTIONS,
}
# Actors the platform itself writes audit rows as (the modules that act import their name from
# here); no person (CLI --actor, token) may use them.
CONTROLLER_ACTOR = "controller"
SUPERVISOR_ACTOR = "supervisor"
WATCHER_ACTOR = "gateway"  # the gateway's liveness watcher
LIFECYCLE_ACTOR = "lifecycle"  # flows/release.py
ANONYMOUS_ACTOR = "anonymous"  # a refused request without a known token
SYSTEM_ACTORS = frozenset(
    {
        CONTROLLER_ACTOR, SUPERVISOR_ACTOR, WATCHER_ACTOR, LIFECYCLE_ACTOR, ANONYMOUS_ACTOR,
        "scheduler", "system",
    }
)  # fmt: skip


class AuthError(PermissionError):
    """No or an unknown token (HTTP 401)."""


class Forbidden(PermissionError):
    """A known actor whose role does not allow the action (HTTP 403)."""


class ReservedActor(ValueError):
    """A person tried to act under a system actor's name."""


def check_actor(actor: str) -> str:
    """`actor` stripped, or ReservedActor when it names a system actor (any case, with or
    without a `name:`/`name@` suffix) or is empty."""
    name = actor.strip()
    base = name.lower().split(":", 1)[0].split("@", 1)[0].strip()
    if not name:
        raise ReservedActor("the actor is empty; name who acts (default: cli:<os user>)")
    if base in SYSTEM_ACTORS:
        reserved = ", ".join(sorted(SYSTEM_ACTORS))
        raise ReservedActor(
            f"actor {name!r} is reserved for the platform itself ({reserved}); the audit log "
            "must tell its rows from people's: give your own name, or leave --actor out"
        )
    return name


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    actor: str
    role: Role

    def allows(self, action: str) -> bool:
        """Whether this caller's role may perform `action`."""
        return action in PERMISSIONS[self.role]


class TokenEntry(BaseModel):
    """One line of the tokens file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actor: str = Field(min_length=1, max_length=100)
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


def digest(token: str) -> str:
    """SHA-256 hex digest of a token (what the tokens file stores)."""
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_file(settings: Settings) -> Path:
    """Where the tokens file is for these settings."""
    return settings.rollout.tokens_file or rollout_dir(settings) / "tokens.yaml"


def load_token_entries(settings: Settings) -> list[TokenEntry]:
    """Entries of the settings' tokens and tokens file (a missing file means none)."""
    entries: list[TokenEntry] = []
    for role, secret in (
        ("release-manager", settings.rollout.release_manager_token),
        ("viewer", settings.rollout.viewer_token),
    ):
        if secret is not None and secret.get_secret_value():
            entries.append(
                TokenEntry(actor=role, role=role, sha256=digest(secret.get_secret_value()))
            )
    path = tokens_file(settings)
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text()) or []
            entries.extend(TokenEntry.model_validate(item) for item in data)
        except (yaml.YAMLError, ValidationError, TypeError) as exc:
            raise AuthError(
                f"tokens file {path} is invalid ({type(exc).__name__}); it must be a YAML list "
                "of {actor, role, sha256}; `crossfade release token` writes entries"
            ) from None
    return entries


def authenticate(settings: Settings, token: str | None) -> Principal:
    """The principal a bearer token belongs to; AuthError when none does."""
    if not token:
        raise AuthError("missing bearer token (Authorization: Bearer <token>)")
    given = digest(token)
    found: TokenEntry | None = None
    for entry in load_token_entries(settings):
        if hmac.compare_digest(given, entry.sha256) and found is None:
            found = entry
    if found is None:
        raise AuthError("unknown token")
    return Principal(found.actor, found.role)


def authorize(principal: Principal, action: str) -> None:
    """Raise Forbidden unless the principal's role allows `action`."""
    if not principal.allows(action):
        raise Forbidden(
            f"{principal.actor} ({principal.role}) may not {action}; "
            "only a release-manager may change a rollout"
        )


def issue_token(settings: Settings, actor: str, role: Role) -> str:
    """Create a token for `actor`, store its digest in the tokens file, return the token once."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    actor = check_actor(actor)
    token = secrets.token_urlsafe(32)
    path = tokens_file(settings)
    entries: list[dict[str, str]] = []
    if path.is_file():
        entries = yaml.safe_load(path.read_text()) or []
    entries.append(TokenEntry(actor=actor, role=role, sha256=digest(token)).model_dump())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(entries, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return token
