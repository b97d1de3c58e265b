"""Every import format gives a re-sent export the same ids, whatever its file or folder name."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from crossfade import columns as C
from crossfade.data import domains as D
from crossfade.data import lake
from crossfade.data.importers import FORMATS, ImportFormatError, import_path
from crossfade.data.importers.staging import key_event_ids
from tests.fixtures.importer_samples import interactions_frame, write_lastfm, write_udata


def _interactions(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "plays.csv"
    interactions_frame().to_csv(path, index=False)
    return path


def _recbole(folder: Path) -> Path:
    folder.mkdir(parents=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += ["1\t10\t5\t874965758", "1\t20\t1\t874965478", "2\t10\t3\t874700000"]
    (folder / "ml-100k.inter").write_text("\n".join(lines) + "\n")
    return folder / "ml-100k.inter"


# One sample writer per format (a new format must add one): returns the path to import.
SAMPLES: dict[str, Callable[[Path], Path]] = {
    "interactions": _interactions,
    "movielens": lambda folder: write_udata(folder),
    "recbole": _recbole,
    "lastfm1k": lambda folder: write_lastfm(folder),
}


def _renamed(path: Path, root: Path) -> Path:
    """The same export under another folder and file name."""
    folder = path if path.is_dir() else path.parent
    copy = root / "resent-2024-final"
    shutil.copytree(folder, copy)
    if path.is_dir():
        return copy
    renamed = copy / f"export-v2{path.suffix}"
    (copy / path.name).rename(renamed)
    return renamed


def test_every_format_has_a_sample() -> None:
    assert set(SAMPLES) == set(FORMATS)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_renamed_resend_gets_the_same_ids(fmt: str, tmp_path: Path) -> None:
    first = SAMPLES[fmt](tmp_path / "ml-100k-2024")
    again = _renamed(first, tmp_path)
    batches = [import_path(fmt, p, tmp_path / "staging") for p in (first, again)]
    for table, column in (("events", C.EVENT_ID), ("users", C.USER_ID), ("items", C.ITEM_ID)):
        ids = [set(lake.read_batch_table(b, table)[column].to_pylist()) for b in batches]
        assert ids[0] and ids[0] == ids[1], (fmt, table)


def test_an_id_too_long_once_prefixed_is_refused_at_import(tmp_path: Path) -> None:
    frame = interactions_frame()
    long_id = "t" * (D.ID_MAX_LENGTH - 4)  # passes the raw rule, not as "interactions-i..."
    frame.loc[2, "item_id"] = long_id
    path = tmp_path / "plays.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ImportFormatError, match=r"data row 3 has a item id .* at most 114"):
        import_path("interactions", path, tmp_path / "staging")
    assert not (tmp_path / "staging").exists()


def test_old_style_lakes_are_detected(tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    plain = import_path("interactions", _interactions(tmp_path / "a"), tmp_path / "staging")
    keyed = import_path("interactions", _interactions(tmp_path / "b"), tmp_path / "staging")
    key_event_ids(keyed, b"k" * 32, "kid")
    ids = {p.name: lake.read_batch_info(p).batch_id for p in (plain, keyed)}
    for batch in (plain, keyed):
        lake.publish_batch(batch, lake_dir)
    old = json.loads(next((lake_dir / lake.MANIFESTS).glob("*.json")).read_text())
    old.pop(lake.EVENT_ID_SCHEME)  # as written before content event ids
    old["batch_id"] = "interactions-old"
    (lake_dir / lake.MANIFESTS / "interactions-old.json").write_text(json.dumps(old))
    pseudonymous = lake.old_style_imports(lake_dir, FORMATS, lake.KEYED_CONTENT_IDS)
    assert sorted(pseudonymous) == sorted(["interactions-old", ids[plain.name]])
    raw = lake.old_style_imports(lake_dir, FORMATS, lake.CONTENT_IDS)
    assert sorted(raw) == sorted(["interactions-old", ids[keyed.name]])
    assert lake.old_style_imports(lake_dir, ["simulator"], lake.CONTENT_IDS) == []
