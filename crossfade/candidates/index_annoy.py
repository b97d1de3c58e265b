"""Annoy backend: inner product via norm-ranged shards with norm augmentation, and an exact head.

Annoy has no inner-product space that works well here (its "dot" metric measured worst, see
docs/candidates.md "ANN retrieval"), so inner product is reduced to Euclidean distance: each
item x of a shard whose largest norm is M becomes [x, sqrt(M^2 - |x|^2)] (all augmented items
then have norm M), and the query q becomes [q * M/|q|, 0]. Then |q' - x'|^2 = 2M^2 - 2(M/|q|) q·x,
so the nearest augmented items are exactly the largest inner products.

ALS item vectors have very unequal norms (norm grows with popularity), and one augmented index
over all of them puts the long tail of small-norm items in a tight cluster around the extra axis,
where Annoy's splits are poor. So items are sorted by norm, descending, and:

- the `exact_head` largest-norm items (default 8,192) are scanned exactly: a 8k x 64 product
  costs tens of microseconds, less than one tree search, and holds most top-k answers;
- the rest is cut into shards of doubling size (16k, 32k, ...), each its own augmented Annoy
  index with its own M, so each shard spans a narrower norm range;
- shards are visited in descending norm order and the search stops as soon as the k-th best
  score found is at least |q| * M_shard: by Cauchy-Schwarz no item of that shard or any later
  one can beat it, so skipping them costs no recall.

Trees are built on one thread after `set_seed(seed)`, so a build is deterministic.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np
from annoy import AnnoyIndex

from crossfade.candidates.index import AnnIndexError, ItemIndex, select_top
from crossfade.config import IndexSettings
from crossfade.data.lake import atomic_write_bytes

logger = logging.getLogger(__name__)

EXACT_HEAD = 8192  # largest-norm items scanned exactly
MIN_SHARD = 1024  # smallest Annoy shard (when the head is smaller than half of it)
ANNOY_METRIC: Final = "euclidean"  # on augmented vectors; measured better than "angular" and "dot"
ORDER_FILE = "order.npy"
_PRUNE_SLACK = 1e-6  # relative float32 rounding allowance in the Cauchy-Schwarz bound


def shard_bounds(n: int, head: int) -> list[tuple[int, int]]:
    """[start, stop) positions (in norm order) of the Annoy shards after the exact head.

    Sizes double from max(2 * head, MIN_SHARD); a remainder smaller than the next size
    becomes the last shard, so there is never a tiny trailing shard.
    """
    bounds: list[tuple[int, int]] = []
    start, size = head, max(2 * head, MIN_SHARD)
    while start < n:
        stop = min(n, start + size)
        if n - stop < size:  # what would be left is smaller than this shard: take it now
            stop = n
        bounds.append((start, stop))
        start, size = stop, size * 2
    return bounds


def _annoy_nns(index: AnnoyIndex, vector: np.ndarray, n: int, search_k: int) -> list[int]:
    """Annoy's get_nns_by_vector, isolated so tests can simulate a short answer."""
    result: list[int] = index.get_nns_by_vector(vector, n, search_k=search_k)
    return result


@dataclass
class _Shard:
    """One Annoy index over positions [start, stop) of the norm order."""

    start: int
    stop: int
    max_norm: float
    annoy: AnnoyIndex

    @property
    def size(self) -> int:
        """Number of items in the shard."""
        return self.stop - self.start

    @property
    def file(self) -> str:
        """File name of the shard inside an index folder."""
        return f"shard-{self.start}-{self.stop}.ann"


class AnnoyItemIndex(ItemIndex):
    """Approximate inner-product search with Annoy (see the module docstring for the layout)."""

    backend = "annoy"

    def __init__(
        self,
        item_ids: tuple[str, ...],
        vectors: np.ndarray,
        settings: IndexSettings,
        seed: int,
        order: np.ndarray,
        head: int,
        shards: list[_Shard],
    ) -> None:
        super().__init__(item_ids, vectors, settings, seed)
        self._order = order
        self._head = head
        self._head_vectors = np.ascontiguousarray(vectors[order[:head]])
        self._position = np.empty(len(order), dtype=np.int64)
        self._position[order] = np.arange(len(order))
        self._shards = shards
        self.searches = 0  # queries answered (counters for reports and monitoring)
        self.shard_searches = 0  # Annoy shard searches (the rest was settled by the exact head)
        self.short_answers = 0  # Annoy answers with too few neighbours (each one retried)

    @property
    def layout(self) -> dict[str, Any]:
        """Exact-head size and shard sizes/max norms, for reports."""
        return {
            "exact_head": self._head,
            "shards": [{"size": s.size, "max_norm": s.max_norm} for s in self._shards],
        }

    @classmethod
    def _build(
        cls,
        item_ids: tuple[str, ...],
        vectors: np.ndarray,
        settings: IndexSettings,
        seed: int,
        **options: Any,
    ) -> AnnoyItemIndex:
        """Sort by norm, keep the head for exact scans, build one augmented forest per shard."""
        exact_head = int(options.pop("exact_head", EXACT_HEAD))
        if options:
            raise TypeError(f"unknown annoy options: {sorted(options)}")
        if exact_head < 0:
            raise ValueError(f"exact_head must be >= 0, got {exact_head}")
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
        order = np.argsort(-norms, kind="stable")
        head = min(exact_head, len(order))
        shards = []
        for start, stop in shard_bounds(len(order), head):
            rows = order[start:stop]
            max_norm = float(norms[rows[0]])
            augmented = np.empty((rows.size, vectors.shape[1] + 1), dtype=np.float32)
            augmented[:, :-1] = vectors[rows]
            augmented[:, -1] = np.sqrt(np.maximum(max_norm**2 - norms[rows] ** 2, 0.0))
            forest = AnnoyIndex(vectors.shape[1] + 1, ANNOY_METRIC)
            forest.set_seed(seed)
            for i, row in enumerate(augmented):
                forest.add_item(i, row)
            forest.build(settings.n_trees, n_jobs=1)  # one thread: deterministic trees
            shards.append(_Shard(start, stop, max_norm, forest))
        return cls(item_ids, vectors, settings, seed, order, head, shards)

    def _shard_neighbours(
        self, shard: _Shard, query: np.ndarray, qnorm: float, n: int
    ) -> np.ndarray:
        """Positions (within the shard) of Annoy's n nearest augmented items to the query.

        Annoy legitimately returns fewer than n when `search_k` is small for n (its candidate
        list holds duplicates across trees); a short answer is retried with 4x the budget up to
        one that visits every leaf. Still short then, the Annoy build is broken
        (spotify/annoy#679) and AnnIndexError is raised rather than serving fewer candidates.
        """
        self.shard_searches += 1
        augmented = np.zeros(query.shape[0] + 1, dtype=np.float32)
        augmented[:-1] = query * (shard.max_norm / qnorm) if qnorm > 0 else query
        search_k = self.settings.search_k if self.settings.search_k > 0 else -1
        budget = search_k if search_k > 0 else self.settings.n_trees * n
        full = shard.size * self.settings.n_trees
        found = _annoy_nns(shard.annoy, augmented, n, search_k)
        while len(found) < n:
            self.short_answers += 1
            if budget >= full:
                raise AnnIndexError(
                    f"Annoy returned {len(found)} neighbours where {n} were asked for, from a "
                    f"shard of {shard.size} items, even with search_k={budget} (every leaf): "
                    "this annoy build is broken (spotify/annoy#679). Reinstall annoy from "
                    "source or use backend 'voyager' or 'exact'."
                )
            budget = min(full, max(budget, n) * 4)
            log = logger.debug if self.short_answers > 1 else logger.warning
            log(
                "annoy returned too few neighbours; retrying with a larger search_k "
                "(raise settings.candidates.index.search_k if this is frequent)",
                extra={"asked": n, "got": len(found), "shard_size": shard.size, "retry": budget},
            )
            found = _annoy_nns(shard.annoy, augmented, n, budget)
        return np.asarray(found[:n], dtype=np.int64)

    def _search(
        self, query: np.ndarray, want: int, fetch: int, excluded: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact head first, then shards in norm order until the Cauchy-Schwarz bound stops it."""
        self.searches += 1
        rows_parts: list[np.ndarray] = []
        score_parts: list[np.ndarray] = []
        excluded_positions = self._position[excluded] if excluded.size else excluded
        if self._head:
            scores = self._head_vectors @ query
            head_excluded = excluded_positions[excluded_positions < self._head]
            if head_excluded.size:
                scores[head_excluded] = -np.inf
            take = min(want, self._head - head_excluded.size)
            if take > 0:
                positions = select_top(scores, take)
                rows_parts.append(self._order[positions])
                score_parts.append(scores[positions])
        qnorm = float(np.linalg.norm(query.astype(np.float64)))
        found = sum(p.size for p in rows_parts)
        for shard in self._shards:
            if found >= want:
                kth = np.partition(np.concatenate(score_parts), found - want)[found - want]
                if kth >= qnorm * shard.max_norm * (1 + _PRUNE_SLACK):
                    break
            local = self._shard_neighbours(shard, query, qnorm, min(fetch, shard.size))
            rows = self._order[shard.start + local]
            if excluded.size:
                rows = rows[~np.isin(rows, excluded)]
            rows_parts.append(rows)
            score_parts.append(self._vectors[rows] @ query)
            found += rows.size
        if not rows_parts:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        return np.concatenate(rows_parts), np.concatenate(score_parts)

    def _write(self, folder: Path) -> dict[str, Any]:
        """The norm order and one .ann file per shard; shard layout goes to index.json."""
        buffer = io.BytesIO()
        np.save(buffer, self._order, allow_pickle=False)
        atomic_write_bytes(folder / ORDER_FILE, buffer.getvalue())
        for shard in self._shards:
            shard.annoy.save(str(folder / shard.file))
        return {
            "metric": ANNOY_METRIC,
            "augmented": True,
            "version": metadata.version("annoy"),
            "exact_head": self._head,
            "shards": [
                {"start": s.start, "stop": s.stop, "max_norm": s.max_norm, "file": s.file}
                for s in self._shards
            ],
        }

    @classmethod
    def _read(
        cls,
        folder: Path,
        item_ids: tuple[str, ...],
        vectors: np.ndarray,
        settings: IndexSettings,
        seed: int,
        meta: dict[str, Any],
    ) -> AnnoyItemIndex:
        """Memory-map each shard (a fresh AnnoyIndex per file: a failed load leaves it unusable)."""
        n = len(item_ids)
        try:
            order = np.load(folder / ORDER_FILE, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise AnnIndexError(f"cannot read {folder / ORDER_FILE}: {exc}") from exc
        if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
            raise AnnIndexError(f"{folder / ORDER_FILE} is not a permutation of {n} rows")
        if meta.get("metric") != ANNOY_METRIC or not meta.get("augmented"):
            raise AnnIndexError(f"annoy index at {folder} uses an unsupported layout: {meta}")
        head = int(meta["exact_head"])
        shards = []
        for spec in meta["shards"]:
            start, stop = int(spec["start"]), int(spec["stop"])
            path = folder / str(spec["file"])
            if not path.is_file():
                raise AnnIndexError(f"annoy shard file {path} is missing")
            forest = AnnoyIndex(vectors.shape[1] + 1, ANNOY_METRIC)
            try:
                forest.load(str(path))
            except OSError as exc:
                raise AnnIndexError(f"cannot load annoy shard {path}: {exc}") from exc
            if forest.get_n_items() != stop - start:
                raise AnnIndexError(
                    f"annoy shard {path} holds {forest.get_n_items()} items, "
                    f"expected {stop - start}"
                )
            shards.append(_Shard(start, stop, float(spec["max_norm"]), forest))
        covered: Sequence[int] = [head, *[s.stop - s.start for s in shards]]
        if sum(covered) != n:
            raise AnnIndexError(f"annoy index at {folder} covers {sum(covered)} of {n} items")
        return cls(item_ids, vectors, settings, seed, order, head, shards)
