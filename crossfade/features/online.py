"""Online feature retrieval for serving: fresh user features, cached item features.

Feast's TTL does not protect online reads (stale values come back as present,
feast-dev/feast#6821), so every value's event timestamp is compared with the view's
freshness budget from the settings; a stale or missing value is replaced by the feature's
documented default, counted, and reported to the caller. Item features change only when a
materialization lands, so they are served from an in-process cache keyed by the
materialization id: one bulk read per materialization instead of a round trip per item.

The core does not import Feast: a `OnlineReader` (see `feature_repo/online_reader.py`)
adapts whatever online store the profile uses.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd

from crossfade.features import catalog
from crossfade.features.policy import FeaturePolicy


@dataclass
class FeatureRead:
    """Raw rows from an online store: per key, feature values (or None) and event time."""

    values: list[dict[str, Any] | None]
    event_ts: list[datetime | None]


class OnlineReader(Protocol):
    """What crossfade needs from an online store."""

    def read(
        self, view: str, key_name: str, keys: Sequence[str], features: list[str]
    ) -> FeatureRead:
        """Read the named features of a view for these entity keys."""
        ...

    def materialization_id(self) -> str:
        """Changes whenever a materialization lands (cache key for item features)."""
        ...

    def all_keys(self, view: str, key_name: str) -> list[str]:
        """Every entity key the view was materialized for (to fill the item cache)."""
        ...


@dataclass
class FeatureVector:
    """One entity's served features, with what had to be defaulted and why."""

    values: dict[str, Any]
    age_seconds: float | None
    missing: bool = False  # no row at all in the online store
    stale: bool = False  # a row, older than the freshness budget
    withheld: list[str] = field(default_factory=list)  # denied by the minimization policy

    @property
    def defaulted(self) -> bool:
        """True when the values are the documented defaults, not what the store held."""
        return self.missing or self.stale


@dataclass
class ItemFeatures:
    """Features of a batch of candidate items, column-wise, in the order asked for."""

    item_ids: list[str]
    columns: dict[str, np.ndarray]
    missing: int
    stale: int
    materialization_id: str

    def frame(self) -> pd.DataFrame:
        """The batch as a DataFrame (one row per item)."""
        data = {k: (list(v) if v.ndim == 2 else v) for k, v in self.columns.items()}
        return pd.DataFrame({"item_id": self.item_ids, **data})


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _ItemCache:
    materialization_id: str
    index: dict[str, int]
    columns: dict[str, np.ndarray]
    event_ts: np.ndarray  # epoch seconds, NaN where missing
    defaults: dict[str, np.ndarray]
    # per item universe (keyed by the id of its id array): universe row -> cache row
    remaps: dict[int, tuple[Sequence[str] | np.ndarray, np.ndarray]] = field(default_factory=dict)

    def rows_of(self, universe: Sequence[str] | np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Cache row of each universe row (-1: unknown there or here), by indexing an array
        built once per universe and materialization instead of a lookup per id."""
        held = self.remaps.get(id(universe))
        if held is None or held[0] is not universe:
            held = (universe, row_map(universe, self.index))
            self.remaps[id(universe)] = held
        return through(held[1], rows)


def row_map(ids: Sequence[object] | np.ndarray, position: Mapping[str, int]) -> np.ndarray:
    """Each id's row in a table whose `position` maps ids to rows (-1 where absent): built
    once per load, so requests translate rows between tables by indexing (`through`)."""
    get = position.get
    return np.fromiter((get(str(i), -1) for i in ids), dtype=np.int64, count=len(ids))


def through(remap: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`rows` of one table as rows of another via a `row_map` array (-1 stays -1)."""
    out = np.full(len(rows), -1, dtype=np.int64)
    known = rows >= 0
    out[known] = remap[rows[known]]
    return out


class OnlineFeatures:
    """The serving path's feature access: freshness-checked, policy-enforced, counted."""

    def __init__(
        self,
        reader: OnlineReader,
        freshness_hours: dict[str, float],
        policy: FeaturePolicy | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.reader = reader
        self.freshness_hours = freshness_hours
        self.policy = policy
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self._items: _ItemCache | None = None
        self._lock = threading.Lock()
        self._user_features = [f.name for f in catalog.view_features(catalog.USER_VIEW)]
        self._item_features = [f.name for f in catalog.view_features(catalog.ITEM_VIEW)]

    def _budget_seconds(self, view: str) -> float:
        return float(self.freshness_hours[view]) * 3600.0

    def user(self, user_id: str, now: datetime | None = None) -> FeatureVector:
        """A listener's features; defaults when missing or stale; policy applied."""
        now = now or self.clock()
        read = self.reader.read(catalog.USER_VIEW, "user_id", [user_id], self._user_features)
        row, ts = read.values[0], read.event_ts[0]
        defaults = catalog.defaults(catalog.USER_VIEW)
        if row is None or ts is None:
            self.counters["user_missing"] += 1
            vector = FeatureVector(dict(defaults), age_seconds=None, missing=True)
        else:
            age = (now - ts).total_seconds()
            if age > self._budget_seconds(catalog.USER_VIEW):
                self.counters["user_stale"] += 1
                vector = FeatureVector(dict(defaults), age_seconds=age, stale=True)
            else:
                values = {k: (defaults[k] if row.get(k) is None else row[k]) for k in defaults}
                vector = FeatureVector(values, age_seconds=age)
        if self.policy is not None:
            denied = self.policy.denied_features(
                str(vector.values.get("user_country")), str(vector.values.get("user_age_bucket"))
            )
            for name in denied:
                if name in vector.values:
                    vector.values[name] = catalog.BY_NAME[name].default
                    vector.withheld.append(name)
        return vector

    def _load_items(self) -> _ItemCache:
        """Bulk-read every item once per materialization."""
        mid = self.reader.materialization_id()
        cache = self._items
        if cache is not None and cache.materialization_id == mid:
            return cache
        with self._lock:
            if self._items is not None and self._items.materialization_id == mid:
                return self._items
            keys = self.reader.all_keys(catalog.ITEM_VIEW, "item_id")
            read = self.reader.read(catalog.ITEM_VIEW, "item_id", keys, self._item_features)
            specs = catalog.view_features(catalog.ITEM_VIEW)
            columns: dict[str, np.ndarray] = {}
            defaults: dict[str, np.ndarray] = {}
            for spec in specs:
                default = spec.default
                raw = [
                    default if row is None or row.get(spec.name) is None else row[spec.name]
                    for row in read.values
                ]
                columns[spec.name] = _as_array(raw, spec)
                defaults[spec.name] = _as_array([default], spec)[0]
            event_ts = np.array(
                [t.timestamp() if t is not None else np.nan for t in read.event_ts], dtype=float
            )
            self._items = _ItemCache(
                mid, {k: i for i, k in enumerate(keys)}, columns, event_ts, defaults
            )
            self.counters["item_cache_loads"] += 1
            return self._items

    def warm(self) -> str:
        """Fill the item cache now (at start-up, or right after a materialization lands), so
        no request pays the bulk read; returns the materialization id it holds."""
        return self._load_items().materialization_id

    def items(
        self,
        item_ids: Sequence[str],
        now: datetime | None = None,
        *,
        rows: np.ndarray | None = None,
        universe: Sequence[str] | np.ndarray | None = None,
    ) -> ItemFeatures:
        """Features for a batch of candidates from the cache; defaults where missing or stale.

        With `rows` (each item's row in `universe`, an id array the caller keeps for the
        process's life, such as the serving catalogue's) the items are found by indexing,
        not by a lookup per id.
        """
        now = now or self.clock()
        cache = self._load_items()
        if rows is not None and universe is not None:
            index = cache.rows_of(universe, rows)
        else:
            index = np.fromiter(
                (cache.index.get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids)
            )
        known = index >= 0
        safe = np.where(known, index, 0)
        age = now.timestamp() - cache.event_ts[safe] if len(safe) else np.zeros(0)
        fresh = known & (age <= self._budget_seconds(catalog.ITEM_VIEW))
        missing = int((~known).sum())
        stale = int((known & ~fresh).sum())
        columns = {}
        for name, values in cache.columns.items():
            picked = values[safe].copy()
            picked[~fresh] = cache.defaults[name]
            columns[name] = picked
        self.counters["item_missing"] += missing
        self.counters["item_stale"] += stale
        return ItemFeatures(list(item_ids), columns, missing, stale, cache.materialization_id)


def _as_array(values: list[Any], spec: catalog.FeatureSpec) -> np.ndarray:
    if spec.dtype == "float32_list":
        length = spec.length or len(spec.default)  # type: ignore[arg-type]
        return np.array(
            [list(v)[:length] + [0.0] * (length - len(v)) for v in values], dtype=np.float32
        ).reshape(-1, length)
    if spec.dtype == "float32":
        return np.array(values, dtype=np.float32)
    if spec.dtype == "int64":
        return np.array(values, dtype=np.int64)
    if spec.dtype == "bool":
        return np.array(values, dtype=bool)
    return np.array(values, dtype=object)
