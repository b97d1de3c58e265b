"""ItemIndex: one contract, checked for every backend (exact, annoy, voyager).

Like benfred/implicit's recommender tests, a mixin holds the tests and one small class per
backend runs them. The exact backend must return the true top-k; the approximate ones must
reach recall@10 >= 0.9 against it on a few thousand 32-d clustered items.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from crossfade.candidates import index as index_module
from crossfade.candidates import index_annoy
from crossfade.candidates.index import (
    AnnIndexError,
    ExactItemIndex,
    ItemIndex,
    build,
    load_index,
)
from crossfade.config import IndexSettings

SEED = 7
N_ITEMS, DIM, N_QUERIES = 3000, 32, 60


def _settings(backend: str) -> IndexSettings:
    """Test settings: defaults, with fewer Annoy trees to keep the suite fast."""
    if backend == "annoy":
        return IndexSettings(backend="annoy", n_trees=20)
    return IndexSettings.model_validate({"backend": backend})


def make_index(backend: str, ids: list[str], vectors: np.ndarray, seed: int = SEED) -> ItemIndex:
    """Build a backend; Annoy without the exact head, so its trees answer every query."""
    exact_head = 0 if backend == "annoy" else None
    return build(ids, vectors, _settings(backend), seed, exact_head=exact_head)


def clustered_catalogue(
    n: int = N_ITEMS, dim: int = DIM, n_queries: int = N_QUERIES, seed: int = 0
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Items around 30 genre centres with popularity-varying norms; listener-like queries."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, dim))
    genre = rng.integers(0, 30, size=n)
    items = centres[genre] + 0.5 * rng.normal(size=(n, dim))
    items *= rng.lognormal(0.0, 0.5, size=(n, 1)) / np.linalg.norm(items, axis=1, keepdims=True)
    tastes = rng.integers(0, 30, size=(n_queries, 2))
    queries = centres[tastes].mean(axis=1) + 0.3 * rng.normal(size=(n_queries, dim))
    return [f"item-{i}" for i in range(n)], items.astype(np.float32), queries.astype(np.float32)


def axis_catalogue() -> tuple[list[str], np.ndarray]:
    """20 orthogonal genres x 50 items: item j of genre g scores (10 - j/10) against e_g.

    Off-axis noise is orthogonal to the item's own axis, so the true top-k for the query e_g
    is known by construction: genre g's items in order j = 0, 1, 2, ...
    """
    rng = np.random.default_rng(1)
    ids, rows = [], []
    for g in range(20):
        for j in range(50):
            v = 0.05 * rng.normal(size=20)
            v[g] = 10.0 - j / 10
            ids.append(f"g{g}-j{j}")
            rows.append(v)
    return ids, np.asarray(rows, dtype=np.float32)


@pytest.fixture(scope="module")
def catalogue() -> tuple[list[str], np.ndarray, np.ndarray]:
    """The shared clustered catalogue and its queries."""
    return clustered_catalogue()


@pytest.fixture(scope="module")
def truth(catalogue: tuple[list[str], np.ndarray, np.ndarray]) -> list[list[str]]:
    """Brute-force top-10 ids per query (NumPy sort over all items)."""
    ids, items, queries = catalogue
    scores = queries @ items.T
    return [[ids[i] for i in np.argsort(-row, kind="stable")[:10]] for row in scores]


_BUILT: dict[str, ItemIndex] = {}


class ItemIndexContract:
    """Tests every backend must pass; subclasses set `backend`."""

    backend: ClassVar[str]
    min_recall: ClassVar[float] = 0.9

    @pytest.fixture
    def index(self, catalogue: tuple[list[str], np.ndarray, np.ndarray]) -> ItemIndex:
        """This backend over the shared catalogue (built once per backend)."""
        if self.backend not in _BUILT:
            ids, items, _ = catalogue
            _BUILT[self.backend] = make_index(self.backend, ids, items)
        return _BUILT[self.backend]

    def test_backend_and_shape(self, index: ItemIndex) -> None:
        assert index.backend == self.backend
        assert len(index) == N_ITEMS and index.dim == DIM
        assert "item-0" in index and "nope" not in index

    def test_known_answer_on_orthogonal_genres(self) -> None:
        ids, items = axis_catalogue()
        idx = make_index(self.backend, ids, items)
        for g in (0, 7, 19):
            q = np.zeros(20, dtype=np.float32)
            q[g] = 1.0
            got, scores = idx.query(q, 10)
            assert got == [f"g{g}-j{j}" for j in range(10)]
            np.testing.assert_allclose(scores, [10.0 - j / 10 for j in range(10)], rtol=1e-5)

    def test_recall_at_10_against_exact(
        self,
        index: ItemIndex,
        catalogue: tuple[list[str], np.ndarray, np.ndarray],
        truth: list[list[str]],
    ) -> None:
        _, _, queries = catalogue
        hits = [
            len(set(index.query(q, 10)[0]) & set(t)) / 10
            for q, t in zip(queries, truth, strict=True)
        ]
        recall = float(np.mean(hits))
        if self.backend == "exact":
            assert recall == 1.0
        assert recall >= self.min_recall, f"{self.backend} recall@10 = {recall:.3f}"

    def test_scores_are_exact_inner_products_best_first(
        self, index: ItemIndex, catalogue: tuple[list[str], np.ndarray, np.ndarray]
    ) -> None:
        ids, items, queries = catalogue
        row = {item: i for i, item in enumerate(ids)}
        got, scores = index.query(queries[0], 25)
        assert len(got) == 25 == len(set(got))
        assert scores.dtype == np.float32
        assert np.all(np.diff(scores) <= 0)
        np.testing.assert_allclose(scores, items[[row[i] for i in got]] @ queries[0], rtol=1e-5)

    def test_exclude_still_returns_k(self, index: ItemIndex, truth: list[list[str]]) -> None:
        _, _, queries = clustered_catalogue()
        excluded = set(truth[0][:5]) | {"not-in-catalogue"}
        got, _ = index.query(queries[0], 10, exclude=excluded)
        assert len(got) == 10
        assert not excluded & set(got)
        exact_rest = [i for i in truth[0] if i not in excluded]
        assert len(set(got) & set(exact_rest)) >= 4  # the 5 true items left, mostly found

    def test_exclude_almost_everything(self) -> None:
        ids, items, queries = clustered_catalogue(n=200, n_queries=1)
        idx = make_index(self.backend, ids, items)
        keep = {"item-3", "item-50", "item-199"}
        got, scores = idx.query(queries[0], 10, exclude=set(ids) - keep)
        assert set(got) == keep and len(scores) == 3
        assert idx.query(queries[0], 10, exclude=set(ids)) == ([], pytest.approx([]))

    def test_k_edge_cases(self, index: ItemIndex) -> None:
        q = np.ones(DIM, dtype=np.float32)
        got, scores = index.query(q, 0)
        assert got == [] and scores.shape == (0,)
        small_ids, small_items, _ = clustered_catalogue(n=7, n_queries=1)
        small = make_index(self.backend, small_ids, small_items)
        got, _ = small.query(q, 50)
        assert sorted(got) == sorted(small_ids)  # k > n returns all n
        with pytest.raises(ValueError, match="k must be"):
            index.query(q, -1)

    def test_query_checks_dimension_and_finiteness(self, index: ItemIndex) -> None:
        with pytest.raises(ValueError, match="dimension 31, the index has dimension 32"):
            index.query(np.ones(DIM - 1), 5)
        with pytest.raises(ValueError, match="1-D"):
            index.query(np.ones((2, DIM)), 5)
        bad = np.ones(DIM)
        bad[3] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            index.query(bad, 5)
        with pytest.raises(ValueError, match=r"\(m, 32\)"):
            index.query_batch(np.ones((3, DIM + 1)), 5)

    def test_query_batch_matches_query(
        self, index: ItemIndex, catalogue: tuple[list[str], np.ndarray, np.ndarray]
    ) -> None:
        _, _, queries = catalogue
        ids, scores = index.query_batch(queries[:8], 12)
        assert scores.shape == (8, 12)
        for i, q in enumerate(queries[:8]):
            single_ids, single_scores = index.query(q, 12)
            assert set(ids[i]) == set(single_ids)
            np.testing.assert_allclose(np.sort(scores[i]), np.sort(single_scores), rtol=1e-5)

    def test_same_seed_same_results(self) -> None:
        ids, items, queries = clustered_catalogue(n=800, n_queries=5, seed=3)
        a = make_index(self.backend, ids, items, seed=11)
        b = make_index(self.backend, ids, items, seed=11)
        for q in queries:
            assert a.query(q, 20)[0] == b.query(q, 20)[0]

    def test_save_load_round_trip(
        self,
        index: ItemIndex,
        catalogue: tuple[list[str], np.ndarray, np.ndarray],
        tmp_path: Path,
    ) -> None:
        _, _, queries = catalogue
        folder = tmp_path / "indexes" / "v1"
        index.save(folder)
        meta = json.loads((folder / index_module.META_FILE).read_text())
        assert meta["backend"] == self.backend and meta["metric"] == "inner_product"
        assert (meta["n"], meta["dim"]) == (N_ITEMS, DIM)
        assert meta["settings"]["backend"] == self.backend
        loaded = ItemIndex.load(folder)
        assert type(loaded) is type(index) and loaded.item_ids == index.item_ids
        for q in queries[:10]:
            a_ids, a_scores = index.query(q, 15, exclude={"item-1"})
            b_ids, b_scores = loaded.query(q, 15, exclude={"item-1"})
            assert a_ids == b_ids
            np.testing.assert_array_equal(a_scores, b_scores)
        assert sorted(p.name for p in folder.parent.iterdir()) == ["v1"]  # no temp leftovers

    def test_save_swaps_atomically_and_failure_keeps_old(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        old_ids, old_items, queries = clustered_catalogue(n=300, n_queries=3, seed=4)
        new_ids = [f"new-{i}" for i in range(250)]
        new_items = clustered_catalogue(n=250, seed=5)[1]
        folder = tmp_path / "current"
        make_index(self.backend, old_ids, old_items).save(folder)
        expected = load_index(folder).query(queries[0], 5)

        make_index(self.backend, new_ids, new_items).save(folder)  # swap in a new version
        swapped = load_index(folder)
        assert len(swapped) == 250 and swapped.query(queries[0], 5)[0][0].startswith("new-")
        assert [p.name for p in tmp_path.iterdir()] == ["current"]

        make_index(self.backend, old_ids, old_items).save(folder)
        real_write = index_module.atomic_write_text

        def failing_write(path: Path, text: str) -> None:
            if path.name == index_module.META_FILE:
                raise OSError("disk full")
            real_write(path, text)

        monkeypatch.setattr(index_module, "atomic_write_text", failing_write)
        with pytest.raises(OSError, match="disk full"):
            make_index(self.backend, new_ids, new_items).save(folder)
        still = load_index(folder)
        assert len(still) == 300
        assert still.query(queries[0], 5)[0] == expected[0]
        assert [p.name for p in tmp_path.iterdir()] == ["current"]


class TestExactIndex(ItemIndexContract):
    backend = "exact"


class TestAnnoyIndex(ItemIndexContract):
    backend = "annoy"


class TestVoyagerIndex(ItemIndexContract):
    backend = "voyager"


# --- build validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["exact", "annoy", "voyager"])
def test_build_rejects_bad_catalogues(backend: str) -> None:
    s = _settings(backend)
    with pytest.raises(ValueError, match="empty catalogue"):
        build([], np.zeros((0, 4), dtype=np.float32), s, SEED)
    with pytest.raises(ValueError, match="3 item ids but 2 vectors"):
        build(["a", "b", "c"], np.ones((2, 4)), s, SEED)
    with pytest.raises(ValueError, match="2-D"):
        build(["a"], np.ones(4), s, SEED)
    with pytest.raises(ValueError, match="duplicate item ids: \\['a'\\]"):
        build(["a", "b", "a"], np.ones((3, 4)), s, SEED)
    vectors = np.ones((3, 4))
    vectors[1, 2] = np.nan
    with pytest.raises(ValueError, match="item 'b'"):
        build(["a", "b", "c"], vectors, s, SEED)
    with pytest.raises(ValueError, match="strings"):
        build([1, 2], np.ones((2, 4)), s, SEED)  # type: ignore[list-item]


def test_build_copies_the_vectors() -> None:
    vectors = np.eye(3, dtype=np.float32)
    idx = build(["a", "b", "c"], vectors, _settings("exact"), SEED)
    vectors[0, 0] = 100.0
    assert idx.query(np.array([1.0, 0, 0]), 1) == (["a"], pytest.approx([1.0]))
    assert vectors.flags.writeable  # the caller's array is left alone


def test_single_item_catalogue_every_backend() -> None:
    for backend in ("exact", "annoy", "voyager"):
        idx = build(["only"], np.array([[0.5, 1.0]]), _settings(backend), SEED)
        ids, scores = idx.query(np.array([1.0, 1.0]), 3)
        assert ids == ["only"] and scores == pytest.approx([1.5])


# --- loading and saving failures ---------------------------------------------------------------


def test_load_missing_or_corrupt(tmp_path: Path) -> None:
    with pytest.raises(AnnIndexError, match=r"index\.json is missing"):
        load_index(tmp_path / "nothing")
    ids, items, _ = clustered_catalogue(n=100, n_queries=1)
    folder = tmp_path / "idx"
    make_index("annoy", ids, items).save(folder)
    next(folder.glob("shard-*.ann")).unlink()
    with pytest.raises(AnnIndexError, match=r"shard file .* is missing"):
        load_index(folder)
    meta = json.loads((folder / "index.json").read_text())
    meta["backend"] = "faiss"
    (folder / "index.json").write_text(json.dumps(meta))
    with pytest.raises(AnnIndexError, match="unknown index backend 'faiss'"):
        load_index(folder)


def test_load_checks_the_requested_class(tmp_path: Path) -> None:
    ids, items, _ = clustered_catalogue(n=50, n_queries=1)
    make_index("voyager", ids, items).save(tmp_path / "v")
    with pytest.raises(AnnIndexError, match="holds a voyager index"):
        ExactItemIndex.load(tmp_path / "v")


def test_save_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    precious = tmp_path / "data"
    precious.mkdir()
    (precious / "plays.parquet").write_text("keep me")
    idx = build(["a"], np.ones((1, 2)), _settings("exact"), SEED)
    with pytest.raises(AnnIndexError, match="not an item index"):
        idx.save(precious)
    assert (precious / "plays.parquet").read_text() == "keep me"


# --- Annoy specifics ----------------------------------------------------------------------------


def test_annoy_short_answer_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """spotify/annoy#679: a build that returns one neighbour whatever n is must fail loudly."""
    ids, items, queries = clustered_catalogue(n=500, n_queries=1)
    idx = make_index("annoy", ids, items)

    def one_neighbour(index: Any, vector: np.ndarray, n: int, search_k: int) -> list[int]:
        return [0]

    monkeypatch.setattr(index_annoy, "_annoy_nns", one_neighbour)
    with pytest.raises(
        AnnIndexError, match=r"returned 1 neighbours where 10 .*every leaf.*annoy#679"
    ):
        idx.query(queries[0], 10)


def test_annoy_short_answer_is_retried_with_a_larger_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids, items, queries = clustered_catalogue(n=500, n_queries=1)
    idx = make_index("annoy", ids, items)
    real = index_annoy._annoy_nns
    calls: list[int] = []

    def short_once(index: Any, vector: np.ndarray, n: int, search_k: int) -> list[int]:
        calls.append(search_k)
        result = real(index, vector, n, search_k)
        return result[:1] if len(calls) == 1 else result

    monkeypatch.setattr(index_annoy, "_annoy_nns", short_once)
    got, _ = idx.query(queries[0], 10)
    assert len(got) == 10
    assert isinstance(idx, index_annoy.AnnoyItemIndex) and idx.short_answers == 1
    assert calls[0] == -1 and calls[1] > 0  # the retry has an explicit, larger budget


def test_annoy_head_and_shards_layout() -> None:
    assert index_annoy.shard_bounds(100_000, 8192) == [
        (8192, 24576),
        (24576, 57344),
        (57344, 100_000),
    ]
    assert index_annoy.shard_bounds(10_000, 8192) == [(8192, 10_000)]
    assert index_annoy.shard_bounds(3000, 0) == [(0, 1024), (1024, 3000)]
    assert index_annoy.shard_bounds(500, 8192) == []


def test_annoy_exact_head_gives_exact_answers_on_small_catalogues(
    catalogue: tuple[list[str], np.ndarray, np.ndarray], truth: list[list[str]]
) -> None:
    ids, items, queries = catalogue
    idx = build(ids, items, _settings("annoy"), SEED)  # default head covers all 3,000 items
    assert all(idx.query(q, 10)[0] == t for q, t in zip(queries, truth, strict=True))


# --- exact equals brute force -------------------------------------------------------------------


@st.composite
def small_problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, set[int]]:
    """A random small matrix (ties and zeros allowed), a query, k and an exclusion set."""
    n = draw(st.integers(1, 25))
    d = draw(st.integers(1, 6))
    elements = st.floats(-10, 10, allow_nan=False, width=32) | st.sampled_from([0.0, 1.0])
    matrix = draw(hnp.arrays(np.float32, (n, d), elements=elements))
    query = draw(hnp.arrays(np.float32, (d,), elements=elements))
    k = draw(st.integers(0, n + 3))
    exclude = draw(st.sets(st.integers(0, n - 1), max_size=n))
    return matrix, query, k, exclude


@settings(max_examples=25, deadline=None)
@given(small_problems())
def test_exact_query_equals_brute_force_sort(
    problem: tuple[np.ndarray, np.ndarray, int, set[int]],
) -> None:
    matrix, query, k, exclude = problem
    ids = [f"i{r}" for r in range(len(matrix))]
    idx = build(ids, matrix, _settings("exact"), SEED)
    scores = matrix @ query
    rows = [r for r in sorted(range(len(ids)), key=lambda r: (-scores[r], r)) if r not in exclude]
    got_ids, got_scores = idx.query(query, k, exclude={ids[r] for r in exclude})
    assert got_ids == [ids[r] for r in rows[:k]]
    np.testing.assert_array_equal(got_scores, scores[rows[:k]])
