"""ANN retrieval: one `ItemIndex` interface over exact NumPy, Annoy and voyager backends.

Semantics are maximum inner product search, the score the ALS model serves (user · item): a
query returns item ids and their inner products, best first. An index is built once per model
version from the item ids and their float32 vectors, written with `save` (temp folder next to
the target, then a rename) and read back with `ItemIndex.load`; it is never updated in place,
because Annoy cannot take items after `build()` (see STACK-NOTES, "Annoy and retrieval").

Every backend returns exact inner products for the ids it returns (candidates are re-scored
against the stored vectors), so backends differ only in which ids they find, never in how they
score them. Backends: `exact` (matrix product + argpartition, the ground truth), `annoy`
(crossfade/candidates/index_annoy.py) and `voyager` (crossfade/candidates/index_voyager.py).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from crossfade.config import IndexSettings
from crossfade.data.lake import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
METRIC = "inner_product"
META_FILE = "index.json"
IDS_FILE = "ids.json"
VECTORS_FILE = "vectors.npy"
BACKENDS = ("exact", "annoy", "voyager")
_BATCH_BYTES = 64 * 2**20  # score-matrix budget per chunk of an exact batch query


class AnnIndexError(IndexError):
    """An index cannot answer correctly: a broken library build, or a missing/corrupt folder.

    Raised instead of returning a silently short or wrong result, e.g. when Annoy returns fewer
    neighbours than asked for although the index holds enough items (spotify/annoy#679).
    """


# --- validation -----------------------------------------------------------------------------


def validate_catalogue(
    item_ids: Sequence[str], vectors: np.ndarray | Sequence[Sequence[float]]
) -> tuple[tuple[str, ...], np.ndarray]:
    """Check ids and vectors for a build; return the ids and a private float32 C-order copy.

    Raises ValueError (naming the offending items) for an empty catalogue, a count mismatch,
    duplicate or non-string ids, a non-2-D matrix, or a non-finite vector, so a bad model
    version fails at build time instead of serving NaN scores.
    """
    ids = tuple(item_ids)
    matrix = np.asarray(vectors)
    if matrix.ndim != 2:
        raise ValueError(
            f"item vectors must be a 2-D (n_items, dim) array, got shape {matrix.shape}"
        )
    if len(ids) != matrix.shape[0]:
        raise ValueError(f"{len(ids)} item ids but {matrix.shape[0]} vectors: they must match")
    if not ids:
        raise ValueError("empty catalogue: an item index needs at least one item")
    if matrix.shape[1] == 0:
        raise ValueError("item vectors have dimension 0")
    bad_type = [i for i in ids if not isinstance(i, str)]
    if bad_type:
        raise ValueError(
            f"item ids must be strings, got {type(bad_type[0]).__name__}: {bad_type[:3]}"
        )
    if len(set(ids)) != len(ids):
        dupes = sorted(i for i, count in Counter(ids).items() if count > 1)
        raise ValueError(f"duplicate item ids: {dupes[:5]}")
    if not np.issubdtype(matrix.dtype, np.number) or np.issubdtype(
        matrix.dtype, np.complexfloating
    ):
        raise ValueError(f"item vectors must be real numbers, got dtype {matrix.dtype}")
    out = np.array(matrix, dtype=np.float32, order="C", copy=True)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        bad = [ids[i] for i in np.flatnonzero(~finite)[:5]]
        raise ValueError(
            f"{int((~finite).sum())} item vector(s) contain NaN or inf (after float32 "
            f"conversion), e.g. item {bad[0]!r}; first ones: {bad}"
        )
    out.flags.writeable = False
    return ids, out


def _check_k(k: int) -> int:
    """k as a plain non-negative int (bools and floats are rejected: they are always bugs)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return int(k)


def select_top(scores: np.ndarray, want: int) -> np.ndarray:
    """Positions of the `want` best scores, ties broken by the lower position; unsorted.

    argpartition alone picks an arbitrary member of a tie at the cut; taking every position
    tied with the cut score and sorting later makes the result deterministic.
    """
    n = scores.shape[0]
    if want >= n:
        return np.arange(n)
    if want <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, want - 1)[:want]
    cut = scores[part].min()
    return np.flatnonzero(scores >= cut)


def sort_results(rows: np.ndarray, scores: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
    """The `want` best (row, score) pairs, score descending, ties by ascending row."""
    order = np.lexsort((rows, -scores))[:want]
    return rows[order], scores[order].astype(np.float32, copy=False)


# --- the interface ----------------------------------------------------------------------------


class ItemIndex(ABC):
    """Inner-product retrieval over a fixed catalogue of item vectors (one model version).

    Build with `build(...)` (the module function, which picks the backend from settings),
    query with `query`/`query_batch`, persist with `save` and read back with `ItemIndex.load`.
    """

    backend: ClassVar[str]

    def __init__(
        self, item_ids: tuple[str, ...], vectors: np.ndarray, settings: IndexSettings, seed: int
    ) -> None:
        self._ids = item_ids
        self._vectors = vectors
        self._rows = {item: row for row, item in enumerate(item_ids)}
        self.settings = settings
        self.seed = seed

    # -- backend hooks --

    @classmethod
    @abstractmethod
    def _build(
        cls,
        item_ids: tuple[str, ...],
        vectors: np.ndarray,
        settings: IndexSettings,
        seed: int,
        **options: Any,
    ) -> ItemIndex:
        """Build the backend structures for validated ids and vectors."""

    @abstractmethod
    def _search(
        self, query: np.ndarray, want: int, fetch: int, excluded: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidate rows (none of them in `excluded`) and their exact inner products.

        Must return at least `want` rows; `fetch` (= want + number of excluded rows, capped
        at the catalogue size) is how many neighbours an ANN library must be asked for so
        that `want` survive the exclusion.
        """

    @abstractmethod
    def _write(self, folder: Path) -> dict[str, Any]:
        """Write the backend's own files into `folder`; return extra metadata for index.json."""

    @classmethod
    @abstractmethod
    def _read(
        cls,
        folder: Path,
        item_ids: tuple[str, ...],
        vectors: np.ndarray,
        settings: IndexSettings,
        seed: int,
        meta: dict[str, Any],
    ) -> ItemIndex:
        """Open the backend's files in `folder` (written by `_write`)."""

    # -- properties --

    @property
    def item_ids(self) -> tuple[str, ...]:
        """Item ids in row order."""
        return self._ids

    @property
    def vectors(self) -> np.ndarray:
        """Read-only float32 (n, dim) item vectors in row order."""
        return self._vectors

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._vectors.shape[1])

    def __len__(self) -> int:
        """Number of items in the index."""
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        """Whether `item_id` is in the catalogue."""
        return item_id in self._rows

    def vectors_of(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of `item_ids` (zeros where unknown) and a mask of the known ones."""
        rows = np.array([self._rows.get(i, -1) for i in item_ids], dtype=np.int64)
        known = rows >= 0
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        out[known] = self._vectors[rows[known]]
        return out, known

    def __repr__(self) -> str:
        """Backend, size and dimension, for logs."""
        return f"<{type(self).__name__} backend={self.backend} n={len(self)} dim={self.dim}>"

    # -- queries --

    def _check_query(self, vector: np.ndarray | Sequence[float]) -> np.ndarray:
        """The query as a finite float32 vector of the index's dimension (else ValueError)."""
        q = np.asarray(vector, dtype=np.float32)
        if q.ndim != 1:
            raise ValueError(
                f"a query must be a 1-D vector of length {self.dim}, got shape {q.shape}"
            )
        if q.shape[0] != self.dim:
            raise ValueError(
                f"query has dimension {q.shape[0]}, the index has dimension {self.dim}"
            )
        if not np.isfinite(q).all():
            raise ValueError("query vector contains NaN or inf")
        return np.ascontiguousarray(q)

    def _check_queries(self, vectors: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Queries as a finite float32 (m, dim) matrix (else ValueError)."""
        qs = np.asarray(vectors, dtype=np.float32)
        if qs.ndim != 2 or qs.shape[1] != self.dim:
            raise ValueError(f"queries must be an (m, {self.dim}) matrix, got shape {qs.shape}")
        bad = ~np.isfinite(qs).all(axis=1)
        if bad.any():
            raise ValueError(f"query rows {np.flatnonzero(bad)[:5].tolist()} contain NaN or inf")
        return np.ascontiguousarray(qs)

    def _excluded_rows(self, exclude: Iterable[str] | None) -> np.ndarray:
        """Sorted rows of the excluded ids that are in the catalogue (unknown ids are ignored)."""
        if not exclude:
            return np.empty(0, dtype=np.int64)
        rows = [self._rows[i] for i in set(exclude) if i in self._rows]
        return np.sort(np.asarray(rows, dtype=np.int64))

    def query(
        self,
        vector: np.ndarray | Sequence[float],
        k: int,
        exclude: set[str] | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """Top-k items by inner product with `vector`: ids and float32 scores, best first.

        Items in `exclude` (e.g. what the listener already played) never appear; the backend
        over-fetches by their number, so k results come back whenever the catalogue minus the
        exclusions holds k items. Fewer than k only when it does not (k > n returns all n).
        """
        q = self._check_query(vector)
        k = _check_k(k)
        excluded = self._excluded_rows(exclude)
        want = min(k, len(self) - excluded.size)
        if want <= 0:
            return [], np.empty(0, dtype=np.float32)
        fetch = min(len(self), want + excluded.size)
        rows, scores = self._search(q, want, fetch, excluded)
        if rows.size < want:
            raise AnnIndexError(
                f"{self.backend} index found {rows.size} of the {want} items asked for "
                f"(catalogue {len(self)}, {excluded.size} excluded): the backend broke its contract"
            )
        rows, scores = sort_results(rows, scores, want)
        return list(map(self._ids.__getitem__, rows.tolist())), scores

    def query_batch(
        self, vectors: np.ndarray | Sequence[Sequence[float]], k: int
    ) -> tuple[list[list[str]], np.ndarray]:
        """Top-k for each row of `vectors`: id lists and an (m, min(k, n)) score matrix.

        Same results as calling `query` per row; backends override it where the library can
        answer a batch faster (exact: one matrix product per chunk).
        """
        qs = self._check_queries(vectors)
        k = _check_k(k)
        width = min(k, len(self))
        ids: list[list[str]] = []
        scores = np.empty((qs.shape[0], width), dtype=np.float32)
        for i, q in enumerate(qs):
            row_ids, row_scores = self.query(q, k)
            ids.append(row_ids)
            scores[i] = row_scores
        return ids, scores

    # -- persistence --

    def save(self, folder: Path) -> None:
        """Write the index to `folder`, replacing any index there, all or nothing.

        Everything goes into a temp folder next to the target first (index.json last); then
        the old folder, if any, is renamed away, the temp folder renamed into place and the
        old one removed. A failure before the swap leaves the old index untouched. Refuses to
        replace a non-empty folder that is not an item index, so a wrong path cannot wipe data.
        """
        target = Path(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        foreign = target.exists() and not (target / META_FILE).is_file()
        if foreign and (not target.is_dir() or any(target.iterdir())):
            raise AnnIndexError(
                f"refusing to replace {target}: it exists and is not an item index (no {META_FILE})"
            )
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
        tmp.mkdir()
        try:
            extra = self._write(tmp)
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(self._vectors), allow_pickle=False)
            atomic_write_bytes(tmp / VECTORS_FILE, buffer.getvalue())
            atomic_write_text(tmp / IDS_FILE, json.dumps(list(self._ids)))
            meta = {
                "format_version": FORMAT_VERSION,
                "backend": self.backend,
                "metric": METRIC,
                "dim": self.dim,
                "n": len(self),
                "seed": self.seed,
                "settings": self.settings.model_dump(mode="json"),
                self.backend: extra,
            }
            atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
            _swap_in(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info(
            "item index saved",
            extra={"backend": self.backend, "n": len(self), "folder": str(target)},
        )

    @classmethod
    def load(cls, folder: Path) -> ItemIndex:
        """Read an index written by `save`, whatever its backend (AnnIndexError if unusable)."""
        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise AnnIndexError(f"no item index at {folder}: {META_FILE} is missing")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise AnnIndexError(f"unreadable {meta_path}: {exc}") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise AnnIndexError(
                f"{meta_path} has format_version {meta.get('format_version')!r}, "
                f"this code reads {FORMAT_VERSION}"
            )
        if meta.get("metric") != METRIC:
            raise AnnIndexError(f"{meta_path} has metric {meta.get('metric')!r}, expected {METRIC}")
        backend_cls = backend_class(str(meta.get("backend")))
        if not issubclass(backend_cls, cls):
            raise AnnIndexError(
                f"{folder} holds a {backend_cls.backend} index, not a {cls.__name__}"
            )
        try:
            ids = tuple(json.loads((folder / IDS_FILE).read_text()))
            vectors = np.load(folder / VECTORS_FILE, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise AnnIndexError(f"cannot read ids/vectors of the index at {folder}: {exc}") from exc
        n, dim = int(meta["n"]), int(meta["dim"])
        if len(ids) != n or vectors.shape != (n, dim) or vectors.dtype != np.float32:
            raise AnnIndexError(
                f"index at {folder} is inconsistent: index.json says n={n} dim={dim}, found "
                f"{len(ids)} ids and vectors {vectors.shape} {vectors.dtype}"
            )
        vectors = np.ascontiguousarray(vectors)
        vectors.flags.writeable = False
        settings = IndexSettings.model_validate(meta["settings"])
        return backend_cls._read(
            folder, ids, vectors, settings, int(meta["seed"]), meta.get(backend_cls.backend, {})
        )


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename `tmp` to `target`; an existing target is renamed away first, then removed."""
    if not (target.exists() or target.is_symlink()):
        os.rename(tmp, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)  # put the previous index back
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


# --- exact backend ------------------------------------------------------------------------------


class ExactItemIndex(ItemIndex):
    """Brute force: one matrix-vector product and argpartition. The ground truth for the others.

    About 2.5 ms per query on 100k x 64 on one thread: fine for small catalogues, tests and
    measuring recall, too slow to be the only serving path for large ones.
    """

    backend = "exact"

    @classmethod
    def _build(
        cls,
        item_ids: tuple[str, ...],
        vectors: np.ndarray,
        settings: IndexSettings,
        seed: int,
        **options: Any,
    ) -> ExactItemIndex:
        """Nothing to build: the vectors are the index."""
        return cls(item_ids, vectors, settings, seed)

    def _search(
        self, query: np.ndarray, want: int, fetch: int, excluded: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score every item, mask the excluded ones, keep the best `want` (ties included)."""
        scores = self._vectors @ query
        if excluded.size:
            scores[excluded] = -np.inf
        rows = select_top(scores, want)
        return rows, scores[rows]

    def query_batch(
        self, vectors: np.ndarray | Sequence[Sequence[float]], k: int
    ) -> tuple[list[list[str]], np.ndarray]:
        """Top-k per row with one matrix product per chunk of queries (bounded memory)."""
        qs = self._check_queries(vectors)
        k = _check_k(k)
        width = min(k, len(self))
        out = np.empty((qs.shape[0], width), dtype=np.float32)
        ids: list[list[str]] = []
        chunk = max(1, _BATCH_BYTES // (4 * len(self)))
        for start in range(0, qs.shape[0], chunk):
            block = qs[start : start + chunk] @ self._vectors.T
            for i, scores in enumerate(block):
                rows = select_top(scores, width)
                rows, top = sort_results(rows, scores[rows], width)
                ids.append([self._ids[r] for r in rows])
                out[start + i] = top
        return ids, out

    def _write(self, folder: Path) -> dict[str, Any]:
        """No files beyond the shared vectors and ids."""
        return {}

    @classmethod
    def _read(
        cls,
        folder: Path,
        item_ids: tuple[str, ...],
        vectors: np.ndarray,
        settings: IndexSettings,
        seed: int,
        meta: dict[str, Any],
    ) -> ExactItemIndex:
        """The shared vectors are all it needs."""
        return cls(item_ids, vectors, settings, seed)


# --- factory ------------------------------------------------------------------------------------


def backend_class(name: str) -> type[ItemIndex]:
    """The ItemIndex subclass for a backend name (AnnIndexError for an unknown one)."""
    if name == "exact":
        return ExactItemIndex
    if name == "annoy":
        from crossfade.candidates.index_annoy import AnnoyItemIndex

        return AnnoyItemIndex
    if name == "voyager":
        from crossfade.candidates.index_voyager import VoyagerItemIndex

        return VoyagerItemIndex
    raise AnnIndexError(f"unknown index backend {name!r}; known: {', '.join(BACKENDS)}")


def build(
    item_ids: Sequence[str],
    vectors: np.ndarray | Sequence[Sequence[float]],
    settings: IndexSettings,
    seed: int,
    *,
    exact_head: int | None = None,
) -> ItemIndex:
    """Build the index `settings.backend` names over one model version's item vectors.

    Validates the catalogue first (ValueError naming bad items). `exact_head` is an Annoy
    option (how many highest-norm items are scanned exactly; default
    `index_annoy.EXACT_HEAD`) and is ignored by the other backends. Deterministic for a seed.
    """
    ids, matrix = validate_catalogue(item_ids, vectors)
    cls = backend_class(settings.backend)
    options: dict[str, Any] = {}
    if exact_head is not None and settings.backend == "annoy":
        options["exact_head"] = exact_head
    start = time.perf_counter()
    index = cls._build(ids, matrix, settings, seed, **options)
    logger.info(
        "item index built",
        extra={
            "backend": settings.backend,
            "n": len(ids),
            "dim": int(matrix.shape[1]),
            "seconds": round(time.perf_counter() - start, 3),
        },
    )
    return index


def load_index(folder: Path) -> ItemIndex:
    """Read an index written by `ItemIndex.save` (same as `ItemIndex.load`)."""
    return ItemIndex.load(folder)
