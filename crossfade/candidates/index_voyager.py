"""voyager backend: an HNSW graph in voyager's InnerProduct space.

`m` (graph degree) and `ef_construction` set build cost and graph quality; `ef_search` is the
query-time beam (raised to the number of neighbours fetched when that is larger, which voyager
requires). Items are inserted on one thread with `random_seed=seed`, so a build is
deterministic (multi-threaded insertion makes the graph depend on thread timing). voyager's
distance is 1 - q·x; candidates are re-scored with the stored vectors like every backend.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import voyager

from crossfade.candidates.index import AnnIndexError, ItemIndex, _check_k, sort_results
from crossfade.config import IndexSettings

INDEX_FILE = "index.voy"


class VoyagerItemIndex(ItemIndex):
    """Approximate inner-product search with voyager (Spotify's HNSW library)."""

    backend = "voyager"

    def __init__(
        self,
        item_ids: tuple[str, ...],
        vectors: np.ndarray,
        settings: IndexSettings,
        seed: int,
        graph: voyager.Index,
    ) -> None:
        super().__init__(item_ids, vectors, settings, seed)
        self._graph = graph
        self._graph.ef = settings.ef_search

    @classmethod
    def _build(
        cls,
        item_ids: tuple[str, ...],
        vectors: np.ndarray,
        settings: IndexSettings,
        seed: int,
        **options: Any,
    ) -> VoyagerItemIndex:
        """Insert every vector (ids = rows) into a new InnerProduct graph, single-threaded."""
        if options:
            raise TypeError(f"unknown voyager options: {sorted(options)}")
        graph = voyager.Index(
            voyager.Space.InnerProduct,
            num_dimensions=vectors.shape[1],
            M=settings.m,
            ef_construction=settings.ef_construction,
            random_seed=seed,
            max_elements=len(item_ids),
        )
        order = np.argsort(-np.linalg.norm(vectors.astype(np.float64), axis=1), kind="stable")
        graph.add_items(
            np.array(vectors[order], copy=True),  # writable copy: nanobind refuses read-only
            ids=order.tolist(),
            num_threads=1,
        )
        return cls(item_ids, vectors, settings, seed, graph)

    def _neighbours(self, queries: np.ndarray, fetch: int) -> np.ndarray:
        """Rows of voyager's `fetch` nearest items for one query (1-D) or a batch (2-D)."""
        try:
            ids, _ = self._graph.query(
                np.require(queries, requirements=["C", "W"]),  # nanobind refuses read-only
                k=fetch,
                num_threads=1,
                query_ef=max(self.settings.ef_search, fetch),
            )
        except voyager.RecallError as exc:
            raise AnnIndexError(
                f"voyager found fewer than {fetch} neighbours in an index of {len(self)}: {exc}"
            ) from exc
        return np.asarray(ids, dtype=np.int64)

    def _search(
        self, query: np.ndarray, want: int, fetch: int, excluded: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ask the graph for `fetch` neighbours, drop excluded rows, re-score exactly."""
        rows = self._neighbours(query, fetch)
        if excluded.size:
            rows = rows[~np.isin(rows, excluded)]
        return rows, self._vectors[rows] @ query

    def query_batch(self, vectors: np.ndarray | Any, k: int) -> tuple[list[list[str]], np.ndarray]:
        """Top-k per row through one voyager batch call (still one thread), re-scored exactly."""
        qs = self._check_queries(vectors)
        k = _check_k(k)
        width = min(k, len(self))
        out = np.empty((qs.shape[0], width), dtype=np.float32)
        if width == 0 or qs.shape[0] == 0:
            return [[] for _ in range(qs.shape[0])], out
        neighbours = self._neighbours(qs, width).reshape(qs.shape[0], width)
        ids: list[list[str]] = []
        for i, rows in enumerate(neighbours):
            rows, scores = sort_results(rows, self._vectors[rows] @ qs[i], width)
            ids.append([self._ids[r] for r in rows])
            out[i] = scores
        return ids, out

    def _write(self, folder: Path) -> dict[str, Any]:
        """voyager's own file format (it records space, dimension and graph parameters)."""
        self._graph.save(str(folder / INDEX_FILE))
        return {"file": INDEX_FILE, "space": "InnerProduct", "version": metadata.version("voyager")}

    @classmethod
    def _read(
        cls,
        folder: Path,
        item_ids: tuple[str, ...],
        vectors: np.ndarray,
        settings: IndexSettings,
        seed: int,
        meta: dict[str, Any],
    ) -> VoyagerItemIndex:
        """Load the graph and check it matches the ids and vectors next to it."""
        path = folder / str(meta.get("file", INDEX_FILE))
        if not path.is_file():
            raise AnnIndexError(f"voyager index file {path} is missing")
        try:
            graph = voyager.Index.load(str(path))
        except Exception as exc:  # voyager raises RuntimeError/ValueError for bad files
            raise AnnIndexError(f"cannot load voyager index {path}: {exc}") from exc
        if graph.space != voyager.Space.InnerProduct:
            raise AnnIndexError(f"voyager index {path} uses {graph.space}, expected InnerProduct")
        if graph.num_elements != len(item_ids) or graph.num_dimensions != vectors.shape[1]:
            raise AnnIndexError(
                f"voyager index {path} holds {graph.num_elements} x {graph.num_dimensions}, "
                f"expected {len(item_ids)} x {vectors.shape[1]}"
            )
        return cls(item_ids, vectors, settings, seed, graph)
