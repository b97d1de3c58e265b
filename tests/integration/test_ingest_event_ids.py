"""Event ids in a pseudonymous lake reveal nothing about the raw listener ids behind them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.config import load_settings
from crossfade.data import lake
from crossfade.data.importers import common as K
from crossfade.data.importers.staging import keyed_event_hashes
from crossfade.safety.privacy import pseudonym_key, pseudonymize
from flows.ingest import ingest_flow

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_lake_event_ids_cannot_be_rebuilt_from_a_guessed_raw_id(tmp_path: Path) -> None:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    raw = pd.DataFrame(
        {
            "user_id": [str(196 + i % 3) for i in range(30)],
            "item_id": [f"t{i % 7}" for i in range(30)],
            "timestamp": [(base + timedelta(minutes=i)).isoformat() for i in range(30)],
        }
    )
    path = tmp_path / "plays.csv"
    raw.to_csv(path, index=False)
    assert ingest_flow(fmt="interactions", path=str(path))["status"] == "published"

    settings = load_settings()
    events = lake.read_lake_table(settings.lake_dir, "events").to_pandas()
    key = pseudonym_key(settings)
    assert set(events[C.USER_ID]) == {
        pseudonymize(f"interactions-u{u}", key) for u in raw["user_id"]
    }
    # The attacker knows the format, the item, the time and the outcome of every row, and
    # guesses raw ids: without the key no guess rebuilds any stored event id.
    times = pd.to_datetime(events[C.TS], utc=True).astype("int64") // 1_000
    lake_ids = set(events[C.EVENT_ID])
    for guess in map(str, range(1, 1_000)):
        chunk = pd.DataFrame(
            {K.ROW: 0, K.USER: guess, K.ITEM: events[C.ITEM_ID].str.slice(len("interactions-i")),
             K.TS_US: times.to_numpy()}
        )  # fmt: skip
        guessed = {f"interactions{K.EVENT_KEY}{h}" for h in K.event_hashes(chunk)}
        assert not guessed & lake_ids, guess
    # With the key the ids are deterministic: the same data + key give the same ids.
    chunk = pd.DataFrame(
        {K.ROW: 0, K.USER: raw["user_id"], K.ITEM: raw["item_id"],
         K.TS_US: pd.to_datetime(raw["timestamp"], utc=True).astype("int64") // 1_000}
    )  # fmt: skip
    rebuilt = keyed_event_hashes(K.event_hashes(chunk), key)
    assert {f"interactions{K.EVENT_KEY}{h}" for h in rebuilt} == lake_ids
