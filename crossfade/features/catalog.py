"""The feature catalogue: every feature's name, entity, type, default, source and use.

Feast definitions (`feature_repo/`), the minimization allowlist, the online defaults and
`docs/features.md` are all derived from this one list, so a feature cannot be served without
a documented default, a freshness budget and a sensitivity class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crossfade.data import domains as D

DType = Literal["int64", "float32", "string", "bool", "float32_list"]
# Sensitivity classes drive data minimization (configs/features.yaml).
Sensitivity = Literal["behavioural", "demographic_age", "location", "account", "content", "context"]

USER, ITEM, ARTIST, REQUEST = "user", "item", "artist", "request"
USER_VIEW, ITEM_VIEW, ARTIST_VIEW, CONTEXT_VIEW = (
    "user_listening_stats",
    "item_stats",
    "artist_stats",
    "request_context",
)
EVENT_TIMESTAMP = "event_timestamp"
CREATED = "created"


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: what it is, where it comes from, its default and sensitivity class.

    Freshness budgets are per view, in the settings (`features.freshness_hours`).
    """

    name: str
    view: str
    dtype: DType
    default: object
    description: str
    source: str
    sensitivity: Sensitivity
    length: int | None = None  # for list features: the domain they are indexed by

    @property
    def entity(self) -> str:
        """Entity the feature belongs to."""
        return {USER_VIEW: USER, ITEM_VIEW: ITEM, ARTIST_VIEW: ARTIST}.get(self.view, REQUEST)


def _vec(n: int) -> list[float]:
    return [0.0] * n


_EV = "lake events"
_U = "lake users"
_I = "lake items"

FEATURES: tuple[FeatureSpec, ...] = (
    # listener (user) features, snapshot at the start of each UTC day
    FeatureSpec(
        "user_plays_7d", USER_VIEW, "int64", 0, "plays in the last 7 days", _EV, "behavioural"
    ),
    FeatureSpec(
        "user_plays_28d",
        USER_VIEW,
        "int64",
        0,
        "plays in the last 28 days",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "user_skip_rate_7d",
        USER_VIEW,
        "float32",
        0.3,
        "share of plays skipped, 7 days",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "user_skip_rate_28d",
        USER_VIEW,
        "float32",
        0.3,
        "share of plays skipped, 28 days",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "user_completion_rate_28d",
        USER_VIEW,
        "float32",
        0.5,
        "share of plays that ended at the track's end",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "user_save_rate_28d",
        USER_VIEW,
        "float32",
        0.0,
        "share of plays saved",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "user_distinct_artists_28d",
        USER_VIEW,
        "int64",
        0,
        "distinct artists played, 28 days",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "user_genre_affinity_28d",
        USER_VIEW,
        "float32_list",
        _vec(len(D.GENRES)),
        "share of plays per genre (domains.GENRES order)",
        _EV,
        "behavioural",
        len(D.GENRES),
    ),
    FeatureSpec(
        "user_language_affinity_28d",
        USER_VIEW,
        "float32_list",
        _vec(len(D.LANGUAGES)),
        "share of plays per language (domains.LANGUAGES order)",
        _EV,
        "behavioural",
        len(D.LANGUAGES),
    ),
    FeatureSpec(
        "user_active_hours_28d",
        USER_VIEW,
        "float32_list",
        _vec(24),
        "share of plays per UTC hour of day",
        _EV,
        "behavioural",
        24,
    ),
    FeatureSpec(
        "user_device_mix_28d",
        USER_VIEW,
        "float32_list",
        _vec(len(D.DEVICES)),
        "share of plays per device (domains.DEVICES order)",
        _EV,
        "behavioural",
        len(D.DEVICES),
    ),
    FeatureSpec(
        "user_tier", USER_VIEW, "string", "ad_supported", "subscription tier", _U, "account"
    ),
    FeatureSpec("user_country", USER_VIEW, "string", D.UNKNOWN_COUNTRY, "market", _U, "location"),
    FeatureSpec(
        "user_age_bucket",
        USER_VIEW,
        "string",
        D.UNKNOWN,
        "age bucket (unknown is treated as a minor)",
        _U,
        "demographic_age",
    ),
    FeatureSpec(
        "user_days_since_signup", USER_VIEW, "int64", 0, "days since sign-up", _U, "account"
    ),
    # item (track or episode) features
    FeatureSpec(
        "item_plays_7d", ITEM_VIEW, "int64", 0, "plays in the last 7 days", _EV, "behavioural"
    ),
    FeatureSpec(
        "item_plays_28d",
        ITEM_VIEW,
        "int64",
        0,
        "plays in the last 28 days",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "item_popularity_28d",
        ITEM_VIEW,
        "float32",
        0.0,
        "percentile of 28-day plays among items (0-1)",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "item_market_plays_28d",
        ITEM_VIEW,
        "float32_list",
        _vec(len(D.MARKETS)),
        "28-day plays per market (domains.MARKETS order)",
        _EV,
        "behavioural",
        len(D.MARKETS),
    ),
    FeatureSpec(
        "item_skip_rate_28d",
        ITEM_VIEW,
        "float32",
        0.3,
        "share of plays skipped",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "item_save_rate_28d",
        ITEM_VIEW,
        "float32",
        0.0,
        "share of plays saved",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "item_completion_rate_28d",
        ITEM_VIEW,
        "float32",
        0.5,
        "share of plays completed",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "item_days_since_release",
        ITEM_VIEW,
        "int64",
        0,
        "days since release (negative: not yet out)",
        _I,
        "content",
    ),
    FeatureSpec("item_duration_ms", ITEM_VIEW, "int64", 210_000, "duration", _I, "content"),
    FeatureSpec(
        "item_explicit",
        ITEM_VIEW,
        "bool",
        True,
        "explicit content (missing: treated as explicit)",
        _I,
        "content",
    ),
    FeatureSpec(
        "item_content_type", ITEM_VIEW, "string", "track", "track or episode", _I, "content"
    ),
    FeatureSpec("item_genre", ITEM_VIEW, "string", D.UNKNOWN, "genre", _I, "content"),
    FeatureSpec("item_language", ITEM_VIEW, "string", D.UNKNOWN, "language", _I, "content"),
    FeatureSpec(
        "item_danceability",
        ITEM_VIEW,
        "float32",
        0.5,
        "audio: danceability 0-1",
        _I,
        "content",
    ),
    FeatureSpec("item_energy", ITEM_VIEW, "float32", 0.5, "audio: energy 0-1", _I, "content"),
    FeatureSpec("item_valence", ITEM_VIEW, "float32", 0.5, "audio: valence 0-1", _I, "content"),
    FeatureSpec("item_tempo", ITEM_VIEW, "float32", 120.0, "audio: tempo (BPM)", _I, "content"),
    FeatureSpec(
        "item_acousticness",
        ITEM_VIEW,
        "float32",
        0.3,
        "audio: acousticness 0-1",
        _I,
        "content",
    ),
    FeatureSpec(
        "item_speechiness", ITEM_VIEW, "float32", 0.1, "audio: speechiness 0-1", _I, "content"
    ),
    # artist features
    FeatureSpec(
        "artist_listeners_7d",
        ARTIST_VIEW,
        "int64",
        0,
        "distinct listeners, 7 days",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "artist_listeners_28d",
        ARTIST_VIEW,
        "int64",
        0,
        "distinct listeners, 28 days",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "artist_listener_growth_7d",
        ARTIST_VIEW,
        "float32",
        0.0,
        "listeners last 7 days vs the 7 before, minus 1",
        _EV,
        "behavioural",
    ),
    FeatureSpec(
        "artist_followers",
        ARTIST_VIEW,
        "int64",
        0,
        "follows recorded so far",
        _EV,
        "behavioural",
    ),
    # request context (on demand, computed per request)
    FeatureSpec(
        "ctx_hour_local",
        CONTEXT_VIEW,
        "int64",
        12,
        "hour of day in the listener's time zone",
        "request",
        "context",
    ),
    FeatureSpec(
        "ctx_day_of_week_local",
        CONTEXT_VIEW,
        "int64",
        0,
        "day of week (Mon=0) in the listener's time zone",
        "request",
        "context",
    ),
    FeatureSpec(
        "ctx_is_weekend",
        CONTEXT_VIEW,
        "int64",
        0,
        "1 on Saturday and Sunday, local time",
        "request",
        "context",
    ),
    FeatureSpec(
        "ctx_device",
        CONTEXT_VIEW,
        "string",
        D.UNKNOWN,
        "device of the request",
        "request",
        "context",
    ),
    FeatureSpec(
        "ctx_platform",
        CONTEXT_VIEW,
        "string",
        D.UNKNOWN,
        "platform of the request",
        "request",
        "context",
    ),
)

BY_NAME: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}


def view_features(view: str) -> list[FeatureSpec]:
    """The features of one view, in catalogue order."""
    return [f for f in FEATURES if f.view == view]


def defaults(view: str) -> dict[str, object]:
    """Documented default of each feature of a view (used when a value is stale or missing)."""
    return {f.name: f.default for f in view_features(view)}
