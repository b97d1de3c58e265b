"""Which slot serves a listener: a stable hash of the listener id, compared with the split.

Pure and deterministic, so every gateway process (and a restarted one) sends a listener to the
same slot for the same split, and raising the split only ever moves listeners from blue to
green: a listener's bucket never changes, only the threshold does.
"""

from __future__ import annotations

import hashlib
from typing import Literal

BUCKETS = 10_000
"""Buckets per population: a split is given in basis points (1 bp = 0.01 % of listeners)."""

ROUTE_SALT = "crossfade-gateway-route-v1"
SHADOW_SALT = "crossfade-gateway-shadow-v1"
# Two different salts make the shadow sample independent of the blue/green assignment.

LiveSlot = Literal["blue", "green"]
STANDBY_SLOTS = ("green", "shadow")


def bucket(listener_id: str, salt: str = ROUTE_SALT) -> int:
    """The listener's bucket in [0, BUCKETS): a keyed BLAKE2b hash, stable across processes."""
    if not isinstance(listener_id, str) or not listener_id:
        raise ValueError(f"listener_id must be a non-empty string, got {listener_id!r}")
    digest = hashlib.blake2b(
        listener_id.encode("utf-8"), digest_size=8, key=salt.encode("utf-8")
    ).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def check_basis_points(value: int, name: str) -> int:
    """Validate a share given in basis points (0..10000) and return it; names the bad input."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= BUCKETS:
        raise ValueError(f"{name} must be an integer number of basis points in [0, {BUCKETS}]")
    return value


def percent_to_basis_points(percent: float) -> int:
    """A share in percent (0..100, as the rollout state stores it) as basis points."""
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"split percent must be in [0, 100], got {percent!r}")
    return round(percent * BUCKETS / 100.0)


def share_to_basis_points(share: float) -> int:
    """A share as a fraction (0..1, as the shadow share is configured) as basis points."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share!r}")
    return round(share * BUCKETS)


def route(listener_id: str, green_bp: int) -> LiveSlot:
    """`green` for listeners whose bucket is below the green split (basis points), else `blue`."""
    check_basis_points(green_bp, "green split")
    return "green" if bucket(listener_id, ROUTE_SALT) < green_bp else "blue"


def mirror_to_shadow(listener_id: str, shadow_bp: int) -> bool:
    """Whether this listener's requests are mirrored to shadow (second, independent hash)."""
    check_basis_points(shadow_bp, "shadow share")
    return bucket(listener_id, SHADOW_SALT) < shadow_bp


def answer_order(first: LiveSlot, green_bp: int) -> list[str]:
    """Slots that may answer a listener routed to `first`, in order: green's listeners fall
    back to blue; blue's fall back to green only while green serves part of the traffic, so
    an unvetted model never answers listeners."""
    if first == "green":
        return ["green", "blue"]
    return ["blue", "green"] if check_basis_points(green_bp, "green split") > 0 else ["blue"]


def standbys(order: list[str]) -> list[str]:
    """Slots not in `order` that may stand in for a dead blue, but only with an answer from
    the very model versions blue served (the caller checks the versions of each answer)."""
    return [slot for slot in STANDBY_SLOTS if slot not in order]
