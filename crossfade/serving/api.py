"""Request and response bodies of the recommender and the gateway: one definition for both.

Strict pydantic models: unknown keys, wrong types and out-of-range values are rejected with
an error whose location names the field (`context.timezone`, `k`, ...), which the service
turns into a 4xx. The gateway and every recommender slot validate listener requests and
feedback with these very classes (tests/drills/test_gateway_limits.py checks that they agree);
ids follow the data contracts' rule (crossfade.data.domains), so serving accepts exactly the
ids the lake may hold. Nothing here touches a model or a store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crossfade.data.domains import ID_MAX_LENGTH, ID_PATTERN

Shelf = Literal["home", "discover_weekly"]
SlotName = Literal["blue", "green", "shadow"]
FeedbackEvent = Literal["play", "skip", "save"]
MAX_K = 100
MAX_FEEDBACK_BATCH = 500
# One play longer than a day is no play: a bound that also keeps the number exact in every
# JSON library on the way (a float past 2**53 is not).
MAX_MS_PLAYED = 86_400_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RequestContext(_Body):
    """Where and when the listener asks: device, platform, market, time zone, time."""

    device: str = Field(min_length=1, max_length=32)
    platform: str = Field(min_length=1, max_length=32)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2, upper case")
    timezone: str = Field(min_length=1, max_length=64, description="IANA name, e.g. Europe/Paris")
    timestamp: datetime = Field(description="ISO-8601 with an offset")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Paris)") from None
        return value

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp needs a UTC offset (e.g. 2026-01-15T08:30:00Z)")
        return value


class RecommendRequest(_Body):
    """POST /recommend."""

    listener_id: str = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    context: RequestContext
    shelf: Shelf
    k: int = Field(ge=1, le=MAX_K)


class FeedbackRequest(_Body):
    """POST /feedback: what the listener did with a recommended item."""

    listener_id: str = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    item_id: str = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    event: FeedbackEvent
    ms_played: int | None = Field(None, ge=0, le=MAX_MS_PLAYED)
    timestamp: datetime
    slot: SlotName | None = Field(None, description="the slot whose answer the listener saw")

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp needs a UTC offset (e.g. 2026-01-15T08:30:00Z)")
        return value


class FeedbackBatch(_Body):
    """POST /feedback/batch: the plays, skips and saves of one listening session in one call,
    as a client app sends them (one round trip instead of one per event)."""

    events: list[FeedbackRequest] = Field(min_length=1, max_length=MAX_FEEDBACK_BATCH)


class ReloadRequest(_Body):
    """POST /admin/reload: MLflow aliases ("champion") or version numbers ("3")."""

    candidates: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    ranker: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class Item(_Body):
    """One recommended item: its score, the source that found it, why it is there."""

    item_id: str
    score: float
    source: str
    reasons: list[str]


class ModelVersions(_Body):
    """Versions of the models that answered."""

    candidates: str
    ranker: str


class RecommendResponse(_Body):
    """The answer to a /recommend request."""

    listener_id: str
    shelf: Shelf
    slot: str
    model: ModelVersions
    items: list[Item]
    fallbacks: list[str]
    stage_ms: dict[str, float]
