"""Data contracts: the Arrow schema and the rules of every table crossfade ingests.

A contract is the single source of truth for a table's columns, types, nullability, value
domains, numeric ranges and id format (every `*_id` column follows `domains.ID_PATTERN`, the
rule the serving API applies to listener and item ids). The simulator writes to it,
importers map real data onto it, validation turns it into expectations, and
`docs/data-contracts.md` describes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from crossfade import columns as C
from crossfade.data import domains as D

TS_TYPE = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Contract:
    """One table's schema plus the rules validation enforces on it."""

    name: str
    schema: pa.Schema
    key: str
    description: str
    domains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    time_column: str | None = None
    # Columns whose values must exist in another table's key: column -> table name.
    references: dict[str, str] = field(default_factory=dict)
    dimension: bool = False  # dimension tables are snapshots; fact tables are append-only

    @property
    def column_names(self) -> list[str]:
        """Column names in contract order."""
        return list(self.schema.names)

    @property
    def id_columns(self) -> list[str]:
        """Text id columns (`*_id`): each value must follow the id rule serving accepts."""
        return [
            f.name for f in self.schema if f.name.endswith("_id") and pa.types.is_string(f.type)
        ]

    @property
    def required(self) -> list[str]:
        """Columns that may never be null."""
        return [f.name for f in self.schema if not f.nullable]

    def empty(self) -> pa.Table:
        """An empty table with exactly this schema."""
        return self.schema.empty_table()


def _f(name: str, typ: pa.DataType, nullable: bool = False, doc: str = "") -> pa.Field:
    return pa.field(name, typ, nullable=nullable, metadata={"doc": doc} if doc else None)


USERS = Contract(
    name="users",
    key=C.USER_ID,
    dimension=True,
    description="Listeners, one row per pseudonymous id (never a raw account id).",
    schema=pa.schema(
        [
            _f(C.USER_ID, pa.string(), doc="pseudonymous listener id"),
            _f(C.TIER, pa.string(), doc="subscription tier"),
            _f(C.COUNTRY, pa.string(), doc="ISO 3166 market code"),
            _f(C.AGE_BUCKET, pa.string(), doc="age bucket; 13-17 are minors"),
            _f(C.LANGUAGE, pa.string(), doc="preferred language"),
            _f(C.SIGNUP_DATE, pa.date32(), doc="UTC day of sign-up"),
        ]
    ),
    domains={
        C.TIER: D.TIERS,
        C.COUNTRY: D.COUNTRIES,
        C.AGE_BUCKET: D.AGE_BUCKETS,
        C.LANGUAGE: D.LANGUAGES,
    },
)

ARTISTS = Contract(
    name="artists",
    key=C.ARTIST_ID,
    dimension=True,
    description="Artists and podcast publishers.",
    schema=pa.schema(
        [
            _f(C.ARTIST_ID, pa.string()),
            _f(C.ARTIST_NAME, pa.string()),
            _f(C.COUNTRY, pa.string(), doc="home market of the artist"),
            _f(C.GENRE, pa.string(), doc="primary genre"),
            _f(C.DEBUT_DATE, pa.date32(), nullable=True),
        ]
    ),
    domains={C.COUNTRY: D.COUNTRIES, C.GENRE: D.GENRES},
)

ITEMS = Contract(
    name="items",
    key=C.ITEM_ID,
    dimension=True,
    description="Playable catalogue: music tracks and podcast episodes (content_type).",
    schema=pa.schema(
        [
            _f(C.ITEM_ID, pa.string()),
            _f(C.CONTENT_TYPE, pa.string()),
            _f(C.TITLE, pa.string()),
            _f(C.ARTIST_ID, pa.string(), doc="artist, or publisher for episodes"),
            _f(C.ALBUM_ID, pa.string(), nullable=True, doc="album, or show for episodes"),
            _f(C.GENRE, pa.string()),
            _f(C.LANGUAGE, pa.string()),
            _f(C.RELEASE_DATE, pa.date32()),
            _f(C.DURATION_MS, pa.int64()),
            _f(C.EXPLICIT, pa.bool_()),
            _f("danceability", pa.float32(), nullable=True),
            _f("energy", pa.float32(), nullable=True),
            _f("valence", pa.float32(), nullable=True),
            _f("tempo", pa.float32(), nullable=True, doc="beats per minute"),
            _f("acousticness", pa.float32(), nullable=True),
            _f("speechiness", pa.float32(), nullable=True),
            _f(C.TAGS, pa.string(), nullable=True, doc="space-separated descriptive tags"),
            _f(C.AVAILABLE_MARKETS, pa.string(), doc="comma-separated markets where playable"),
        ]
    ),
    domains={
        C.CONTENT_TYPE: D.CONTENT_TYPES,
        C.GENRE: D.GENRES,
        C.LANGUAGE: D.LANGUAGES,
    },
    ranges={
        C.DURATION_MS: (1_000, 6 * 3_600_000),
        "danceability": (0.0, 1.0),
        "energy": (0.0, 1.0),
        "valence": (0.0, 1.0),
        "tempo": (0.0, 300.0),
        "acousticness": (0.0, 1.0),
        "speechiness": (0.0, 1.0),
    },
    references={C.ARTIST_ID: "artists"},
)

EVENTS = Contract(
    name="events",
    key=C.EVENT_ID,
    time_column=C.TS,
    description="Listening events: one row per play of an item, closed when playback ends.",
    schema=pa.schema(
        [
            _f(C.EVENT_ID, pa.string()),
            _f(C.USER_ID, pa.string()),
            _f(C.ITEM_ID, pa.string()),
            _f(C.TS, TS_TYPE, doc="UTC start of playback"),
            _f(C.MS_PLAYED, pa.int64()),
            _f(C.REASON_START, pa.string()),
            _f(C.REASON_END, pa.string()),
            _f(C.SKIPPED, pa.bool_()),
            _f(C.SAVED, pa.bool_()),
            _f(C.ADDED_TO_PLAYLIST, pa.bool_()),
            _f(C.FOLLOWED_ARTIST, pa.bool_()),
            _f(C.REPLAY, pa.bool_()),
            _f(C.CONTEXT_TYPE, pa.string()),
            _f(C.DEVICE, pa.string()),
            _f(C.PLATFORM, pa.string()),
            _f(C.COUNTRY, pa.string(), doc="market the play happened in"),
            _f(C.TIER, pa.string(), doc="tier at the time of the play"),
            _f(C.SHUFFLE, pa.bool_()),
            _f(C.OFFLINE, pa.bool_()),
            _f(C.SESSION_ID, pa.string(), nullable=True),
        ]
    ),
    domains={
        C.REASON_START: D.REASONS_START,
        C.REASON_END: D.REASONS_END,
        C.CONTEXT_TYPE: D.CONTEXT_TYPES,
        C.DEVICE: D.DEVICES,
        C.PLATFORM: D.PLATFORMS,
        C.COUNTRY: D.COUNTRIES,
        C.TIER: D.TIERS,
    },
    ranges={C.MS_PLAYED: (0, None)},
    references={C.USER_ID: "users", C.ITEM_ID: "items"},
)

AD_IMPRESSIONS = Contract(
    name="ad_impressions",
    key=C.IMPRESSION_ID,
    time_column=C.TS,
    description="Audio ad impressions served to Ad-supported listeners during ad breaks.",
    schema=pa.schema(
        [
            _f(C.IMPRESSION_ID, pa.string()),
            _f(C.USER_ID, pa.string()),
            _f(C.TS, TS_TYPE),
            _f(C.SESSION_ID, pa.string(), nullable=True),
            _f(C.AD_ID, pa.string()),
            _f(C.DURATION_MS, pa.int64()),
            _f(C.CLICKED, pa.bool_()),
            _f(C.COUNTRY, pa.string()),
        ]
    ),
    domains={C.COUNTRY: D.COUNTRIES},
    ranges={C.DURATION_MS: (1_000, 120_000)},
    references={C.USER_ID: "users"},
)

ONBOARDING = Contract(
    name="onboarding",
    key="pick_id",
    time_column=C.PICKED_AT,
    description="Artists a new listener picked during onboarding (cold-start signal).",
    schema=pa.schema(
        [
            _f("pick_id", pa.string()),
            _f(C.USER_ID, pa.string()),
            _f(C.ARTIST_ID, pa.string()),
            _f(C.PICKED_AT, TS_TYPE),
        ]
    ),
    references={C.USER_ID: "users", C.ARTIST_ID: "artists"},
)

CONTRACTS: dict[str, Contract] = {
    c.name: c for c in (USERS, ARTISTS, ITEMS, EVENTS, AD_IMPRESSIONS, ONBOARDING)
}
# Dimension tables first: fact tables reference them.
TABLE_ORDER: tuple[str, ...] = tuple(CONTRACTS)


def contract(name: str) -> Contract:
    """Look a contract up by table name, with an error that lists the known tables."""
    try:
        return CONTRACTS[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known tables: {', '.join(CONTRACTS)}") from None


def conform(table: pa.Table, name: str) -> pa.Table:
    """Cast a table to its contract's schema (column order and types), without dropping data.

    Used by producers (simulator, importers) that build frames loosely. Missing or extra
    columns raise: silently fixing them would hide the schema drift validation must see.
    """
    target = contract(name).schema
    missing = [n for n in target.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in target.names]
    if missing or extra:
        raise ValueError(
            f"table {name!r} does not match its contract: missing={missing} extra={extra}"
        )
    return table.select(target.names).cast(target)
