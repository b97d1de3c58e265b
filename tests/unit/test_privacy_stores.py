"""Erasure of quarantined raw files and reports, the erased-listeners set, owner-only files."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.config import Settings, load_settings
from crossfade.safety.erased import ErasedListeners, erased_path, read_erased, record_erased
from crossfade.safety.erasure import ERASED_MARK, MixedTreeEraser, core_stores
from crossfade.serving import fallbacks as F
from crossfade.serving.pipeline import RecommendationPipeline
from tests.unit.test_serving_pipeline import Served, _user, request, served  # noqa: F401

VICTIM = "u-0042"
OTHER = "u-0043"
IDS = frozenset({VICTIM})


def _quarantine(settings: Settings) -> Path:
    """A quarantined import that could not be read (raw files kept) and its report."""
    batch = settings.quarantine_dir / "interactions-rejected-1"
    raw = batch / "raw"
    raw.mkdir(parents=True)
    (raw / "plays.csv").write_text(
        "user_id,item_id,ts\n"
        f"{VICTIM},t1,2026-01-01T00:00:00Z\n"
        f"{OTHER},t1,2026-01-01T00:01:00Z\n"
        f'"{VICTIM}",t2,2026-01-01T00:02:00Z\n'
        "broken,,,\n"
    )
    # MovieLens style: no header, listener first, `::`; a catalogue file must stay whole
    (raw / "ratings.dat").write_text(f"{VICTIM}::10::5::1\n{OTHER}::10::4::2\n")
    (raw / "movies.dat").write_text(f"{VICTIM}::A film named like the listener::Drama\n")
    (raw / "plays-utf16.tsv").write_bytes(
        f"user_id\titem_id\n{VICTIM}\tt3\n{OTHER}\tt4\n".encode("utf-16")
    )
    (raw / "dump.bin").write_bytes(b"\x00\x01ppp")  # binary without the listener
    report = {"success": False, "partial_unexpected_list": [VICTIM, OTHER], "input": "x.csv"}
    (batch / "report.json").write_text(json.dumps(report))
    return batch


def test_quarantine_raw_files_and_reports_are_found_and_rewritten(settings: Settings) -> None:
    batch = _quarantine(settings)
    long_id = "listener-000000042"  # long enough to be told apart inside binary bytes
    (batch / "raw" / "blob.gz").write_bytes(b"\x1f\x8b\x00" + long_id.encode())
    store = MixedTreeEraser("quarantine", settings.quarantine_dir, raw=True)
    ids = IDS | {long_id}

    found = {Path(f.location).name: f for f in store.find(ids)}
    assert {n: f.rows for n, f in found.items()} == {
        "plays.csv": 2, "ratings.dat": 1, "plays-utf16.tsv": 1, "report.json": 1, "blob.gz": 1,
        "dump.bin": 0,
    }  # fmt: skip
    assert not found["blob.gz"].cleanable and "delete" in found["blob.gz"].note
    # a binary file cannot be searched for short ids: reported as such, never called clean
    assert not found["dump.bin"].cleanable and "delete" in found["dump.bin"].note

    removed = store.erase(ids)
    assert {Path(f.location).name for f in removed} == {
        "plays.csv", "ratings.dat", "plays-utf16.tsv", "report.json",
    }  # fmt: skip
    left = store.find(ids)
    assert sorted(Path(f.location).name for f in left) == ["blob.gz", "dump.bin"]  # reported
    raw = batch / "raw"
    assert (raw / "plays.csv").read_text().splitlines() == [
        "user_id,item_id,ts", f"{OTHER},t1,2026-01-01T00:01:00Z", "broken,,,",
    ]  # fmt: skip
    assert (raw / "ratings.dat").read_text() == f"{OTHER}::10::4::2\n"
    assert VICTIM in (raw / "movies.dat").read_text()  # a catalogue row, not the listener's
    assert (raw / "plays-utf16.tsv").read_bytes().decode("utf-16").splitlines() == [
        "user_id\titem_id", f"{OTHER}\tt4",
    ]  # fmt: skip
    report = json.loads((batch / "report.json").read_text())
    assert report["partial_unexpected_list"] == [ERASED_MARK, OTHER]


def test_core_stores_cover_quarantine_and_reports(settings: Settings) -> None:
    _quarantine(settings)
    docs = settings.reports_dir / "validation" / "index.html"
    docs.parent.mkdir(parents=True)
    pseudonym = "p" + "ab" * 12
    docs.write_text(f"<td>{pseudonym}</td><td>{OTHER}</td>")
    ids = IDS | {pseudonym}
    names = {s.name for s in core_stores(settings)}
    assert {"quarantine", "reports"} <= names
    found = {f.store for s in core_stores(settings) for f in s.find(ids)}
    assert found == {"quarantine", "reports"}
    for s in core_stores(settings):
        s.erase(ids)
    assert pseudonym not in docs.read_text() and OTHER in docs.read_text()


def test_erased_set_is_read_after_the_refresh_interval(settings: Settings) -> None:
    now = [0.0]
    erased = ErasedListeners(erased_path(settings), 2.0, clock=lambda: now[0], background=False)
    assert VICTIM not in erased  # no file yet: nobody is erased
    record_erased(settings, [VICTIM])
    assert VICTIM not in erased  # cached until the interval has passed
    now[0] = 2.5
    assert VICTIM in erased and OTHER not in erased
    first = read_erased(settings)[VICTIM]["erased_at"]
    record_erased(settings, [VICTIM, OTHER])
    assert read_erased(settings)[VICTIM]["erased_at"] == first  # idempotent
    erased_path(settings).write_text("{ not json")
    now[0] = 5.0
    assert VICTIM in erased  # an unreadable file never forgets who was erased


def test_a_serving_process_rereads_the_set_off_the_request_path(settings: Settings) -> None:
    record_erased(settings, [OTHER])
    erased = ErasedListeners(erased_path(settings), 0.01)
    assert OTHER in erased  # read when made (load time)
    record_erased(settings, [VICTIM])
    deadline = time.monotonic() + 30
    while VICTIM not in erased and time.monotonic() < deadline:
        time.sleep(0.01)
    assert VICTIM in erased and OTHER in erased


def _pipeline(served: Served, settings: Settings) -> RecommendationPipeline:  # noqa: F811
    return served.pipeline(erased=ErasedListeners.of(settings))


def test_an_erased_listener_gets_the_popular_fallback_and_others_do_not(
    served: Served,  # noqa: F811
    settings: Settings,
) -> None:
    user, country = _user(served, minor=False)
    other = next(u for u in served.candidates.profile_ids if u != user)
    pipe = _pipeline(served, settings)
    before = pipe.recommend(request(user, country=country))
    assert F.LISTENER_ERASED not in before.fallbacks
    assert {i["source"] for i in before.items} - {"popular_in_cohort"}

    record_erased(settings, [user])
    pipe = _pipeline(served, settings)
    after = pipe.recommend(request(user, country=country))
    assert after.fallbacks[:2] == [F.LISTENER_ERASED, F.POPULAR_IN_COHORT]
    assert after.items and {i["source"] for i in after.items} == {"popular_in_cohort"}
    reasons = {r for i in after.items for r in i["reasons"]}
    assert not any("you played" in r.lower() for r in reasons), reasons
    neighbour = pipe.recommend(request(other, country=country))
    assert F.LISTENER_ERASED not in neighbour.fallbacks

    # a model that does not hold the listener (retrained without them) serves them normally
    pipe._held = frozenset()
    assert F.LISTENER_ERASED not in pipe.recommend(request(user, country=country)).fallbacks


def _loose(root: Path) -> list[str]:
    return [
        f"{p} {stat.filemode(p.stat().st_mode)}"
        for p in [root, *root.rglob("*")]
        if not p.is_symlink() and p.stat().st_mode & 0o077
    ]


def test_owner_only_shuts_an_old_data_root_away_without_walking_it(tmp_path: Path) -> None:
    root = tmp_path / "old"
    (root / "lake").mkdir(parents=True)
    os.chmod(root, 0o755)
    os.chmod(root / "lake", 0o755)
    (root / "rollout.db").write_text("state")
    os.chmod(root / "rollout.db", 0o644)
    settings = load_settings("local", data_root=root)
    assert stat.S_IMODE(settings.data_root.stat().st_mode) == 0o700  # nothing below is reachable
    assert stat.S_IMODE((root / "rollout.db").stat().st_mode) == 0o644  # contents not walked
    (root / "late.db").touch()
    assert (
        stat.S_IMODE((root / "late.db").stat().st_mode) == 0o600
    )  # the umask this process runs under


@pytest.fixture(autouse=True)
def _restore_umask() -> object:
    old = os.umask(0o022)
    os.umask(old)
    yield None
    os.umask(old)


def test_frames_of_listening_survive_for_the_other_listeners(settings: Settings) -> None:
    folder = settings.quarantine_dir / "b1"
    folder.mkdir(parents=True)
    pd.DataFrame({C.USER_ID: [VICTIM, OTHER], C.ITEM_ID: ["a", "b"]}).to_parquet(
        folder / "events.parquet"
    )
    store = MixedTreeEraser("quarantine", settings.quarantine_dir, raw=True)
    assert [f.rows for f in store.erase(IDS)] == [1]
    assert pd.read_parquet(folder / "events.parquet")[C.USER_ID].tolist() == [OTHER]
