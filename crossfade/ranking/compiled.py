"""The ranker's trees compiled to native code for the request path (lleaves, over LLVM).

LightGBM's `predict` walks every tree through a general interpreter, and a request scores a
few hundred candidates with a few hundred trees: that was most of a recommender's CPU per
request. lleaves turns each tree into branches of machine code and gives the same scores
(to float rounding) several times faster, and its call releases the GIL. Compiling takes
seconds to tens of seconds per booster, so objects are cached on disk, keyed by the model text
(trees cut at the best iteration), the lleaves version and the host CPU: each version compiles
once per machine, and the training flow can compile ahead so a serving process only loads.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossfade.data.lake import atomic_write_text
from crossfade.ranking.ranker import RankerModel


class CompileError(RuntimeError):
    """The trees could not be compiled (the caller keeps LightGBM's own predict)."""


@dataclass(frozen=True)
class CompiledForest:
    """One booster's trees as native code: `predict` scores a float matrix of inputs."""

    model: Any  # lleaves.Model, compiled
    key: str

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Scores of the rows of `matrix` (the booster's inputs), on this thread only."""
        rows = np.ascontiguousarray(matrix, dtype=np.float64)
        return np.asarray(self.model.predict(rows, n_jobs=1), dtype=np.float64)


def _host() -> str:
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    return f"{llvm.get_process_triple()}:{llvm.get_host_cpu_name()}"


def model_key(model_text: str) -> str:
    """Cache key of a compiled model: its text, the compiler's version and the host CPU."""
    import lleaves

    digest = hashlib.sha256()
    for part in (model_text, getattr(lleaves, "__version__", "?"), _host()):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def compile_booster(booster: Any, cache_dir: Path, num_iteration: int | None) -> CompiledForest:
    """Compile a LightGBM booster's first `num_iteration` trees (all when None), or load
    them from `cache_dir` when this model was compiled on this machine before.

    A lock file per model lets one process compile while the others wait, and the object is
    written under a temporary name and renamed into place, so no process loads a half-written
    file.
    """
    try:
        import lleaves
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise CompileError(f"lleaves is not installed: {exc}") from exc
    text = booster.model_to_string(num_iteration=num_iteration or -1)
    key = model_key(text)
    cache_dir.mkdir(parents=True, exist_ok=True)
    model_file = cache_dir / f"{key}.txt"
    object_file = cache_dir / f"{key}.o"
    try:
        if not model_file.exists():
            atomic_write_text(model_file, text)
        model = lleaves.Model(model_file=str(model_file))
        with _exclusive(cache_dir / f".{key}.lock"):
            # blue, green and shadow often load one version at once: one compiles, the
            # others wait for it and load its object
            _compile_or_load(model, object_file, cache_dir, key)
    except Exception as exc:
        raise CompileError(f"compiling ranker trees {key} failed: {exc}") from exc
    return CompiledForest(model, key)


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compile_or_load(model: Any, object_file: Path, cache_dir: Path, key: str) -> None:
    digest_file = object_file.with_suffix(".sha256")
    if object_file.exists():
        # LLVM crashes the process on a damaged object, so a cached object is loaded only
        # when it still has the digest written after it was compiled; otherwise recompile
        if digest_file.exists() and digest_file.read_text() == _digest(object_file):
            model.compile(cache=str(object_file))
            return
        object_file.unlink()
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{key}.", suffix=".o")
    os.close(fd)
    os.unlink(tmp)  # lleaves writes the cache file itself when it does not exist
    try:
        model.compile(cache=tmp)
        os.replace(tmp, object_file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    atomic_write_text(digest_file, _digest(object_file))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compile_ranker(ranker: RankerModel, cache_dir: Path) -> dict[str, CompiledForest]:
    """Every tier's booster of `ranker`, compiled (or loaded from the cache)."""
    return {
        tier: compile_booster(booster, cache_dir, ranker.best_iterations.get(tier) or None)
        for tier, booster in ranker.boosters.items()
    }


def agree(
    compiled: Mapping[str, CompiledForest], ranker: RankerModel, rows: Mapping[str, np.ndarray]
) -> float:
    """Largest absolute difference between compiled and LightGBM scores on sample inputs
    per tier (a load-time check that the native code scores what the booster scores)."""
    worst = 0.0
    for tier, matrix in rows.items():
        booster = ranker.boosters[tier]
        expected = booster.predict(
            matrix, num_iteration=ranker.best_iterations.get(tier) or None, num_threads=1
        )
        got = compiled[tier].predict(matrix)
        worst = max(worst, float(np.max(np.abs(np.asarray(expected) - got), initial=0.0)))
    return worst
