"""Erasure reads quarantined files in every encoding the importers recognise, and says when a
binary file cannot be checked for a listener's id instead of calling it clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossfade.safety.erasure import MixedTreeEraser

CSV = "user_id,item_id,timestamp\n196,242,881250949\n22,377,878887116\n196,51,883599478\n"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32", "utf-16", "utf-8-sig"])
def test_quarantined_wide_text_is_found_and_cleaned(codec: str, tmp_path: Path) -> None:
    path = tmp_path / "raw" / "plays.csv"
    path.parent.mkdir()
    path.write_bytes(CSV.encode(codec))
    eraser = MixedTreeEraser("quarantine", tmp_path, raw=True)
    found = eraser.find(frozenset({"196"}))
    assert [(f.rows, f.cleanable) for f in found] == [(2, True)], codec
    eraser.erase(frozenset({"196"}))
    text = path.read_bytes().decode(codec)
    assert "196," not in text and "22,377" in text
    assert eraser.find(frozenset({"196"})) == []


def test_a_binary_file_that_cannot_be_scanned_for_short_ids_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "raw" / "plays.xlsx"
    path.parent.mkdir()
    path.write_bytes(b"PK\x03\x04\x00\x00" + bytes(range(256)) * 4)
    found = MixedTreeEraser("quarantine", tmp_path, raw=True).find(frozenset({"196"}))
    assert len(found) == 1 and not found[0].cleanable
    assert "cannot be scanned" in found[0].note and "delete" in found[0].note
