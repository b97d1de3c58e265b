"""Privacy by design end to end: after the main job (ingest, features, candidates, ranker) and
a real recommender answering a client's account id, no raw simulator id is in any store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import lake
from crossfade.data.simulator import World
from crossfade.safety.privacy import KEY_FILE, local_key_path, pseudonym_key, pseudonymize
from crossfade.serving import fallbacks as F
from crossfade.serving.logs import FEEDBACK, REQUESTS, logs_dir, read_rows
from deployments.process import start_service
from deployments.recommender.loading import load_models
from deployments.serve import RECOMMENDER, settings_env
from tests.fixtures.stack import recommend_body, trained_world

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def _strings_in_parquet(folder: Path) -> set[str]:
    """Every string value of every Parquet file under `folder` (any column)."""
    found: set[str] = set()
    for path in folder.rglob("*.parquet"):
        table = pq.read_table(path)
        for name in table.column_names:
            column = table[name]
            if str(column.type) in ("string", "large_string"):
                found.update(v for v in column.to_pylist() if v is not None)
    return found


def _raw_ids(settings: Settings) -> set[str]:
    batch = lake.manifests(settings.lake_dir)[-1]["batch_id"]
    return set(map(str, World.load(settings.truth_dir / batch).listeners.user_ids))


def test_no_raw_listener_id_in_lake_features_models_or_serving_logs(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = trained_world(tmp_path_factory)
    raw = _raw_ids(settings)
    key = pseudonym_key(settings)  # the local profile's own key file, made at ingestion
    assert local_key_path(settings).is_file()
    assert (settings.data_root / "privacy" / KEY_FILE).is_file()
    pseudonyms = {pseudonymize(u, key) for u in raw}

    lake_users = set(lake.read_lake_table(settings.lake_dir, "users")[C.USER_ID].to_pylist())
    assert lake_users and lake_users <= pseudonyms
    assert not _strings_in_parquet(settings.lake_dir) & raw
    feature_strings = _strings_in_parquet(settings.features_dir)
    assert feature_strings & pseudonyms and not feature_strings & raw

    models = load_models(settings, "champion", "champion")
    model_users = set(map(str, models.candidates.cf.user_ids)) | set(
        map(str, models.candidates.listeners[C.USER_ID])
    )
    assert model_users and model_users <= pseudonyms

    # A client sends the account id; the recommender finds the listener's online features
    # under the pseudonym and logs nothing else.
    users = lake.read_lake_table(settings.lake_dir, "events")[C.USER_ID].to_pylist()
    listener = next(u for u in raw if pseudonymize(u, key) == max(set(users), key=users.count))
    env = {
        **settings_env(settings),
        "CROSSFADE_SERVING__SLOT": "blue",
        "CROSSFADE_SERVING__LOG_BATCH_SIZE": "1",
    }
    # Other tests share this trained world and its logs: judge only the rows this test adds.
    before = {
        k: {json.dumps(r, sort_keys=True) for r in read_rows(logs_dir(settings.data_root, k))}
        for k in (REQUESTS, FEEDBACK)
    }
    process = start_service(RECOMMENDER, env, ready_timeout=180)
    try:
        with httpx.Client(base_url=process.url, timeout=30) as http:
            answer = http.post("/recommend", json=recommend_body(listener))
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["items"] and F.USER_FEATURES_MISSING not in body["fallbacks"]
            assert body["listener_id"] == pseudonymize(listener, key)
            feedback = {
                "listener_id": listener,
                "item_id": body["items"][0]["item_id"],
                "event": "play",
                "ms_played": 1000,
                "timestamp": "2026-01-13T08:31:00Z",
            }
            assert http.post("/feedback", json=feedback).status_code == 202
        rows: dict[str, list[dict[str, object]]] = {}
        for _ in range(120):  # log rows land on disk within the flush interval
            rows = {
                k: [
                    r
                    for r in read_rows(logs_dir(settings.data_root, k))
                    if json.dumps(r, sort_keys=True) not in before[k]
                ]
                for k in (REQUESTS, FEEDBACK)
            }
            if all(rows.values()):
                break
            time.sleep(0.25)
    finally:
        process.stop()
    assert all(rows.values()), rows
    logged = {str(r["listener_id"]) for kind in rows.values() for r in kind}
    assert logged == {pseudonymize(listener, key)}
    for kind in (REQUESTS, FEEDBACK):
        for path in logs_dir(settings.data_root, kind).glob("*.jsonl"):
            # No raw id of any listener reached any log, whichever test wrote the row.
            assert listener not in path.read_text()
            logged_anywhere = {
                str(json.loads(line)["listener_id"]) for line in path.read_text().splitlines()
            }
            assert not logged_anywhere & raw, (
                "a raw listener id reached the request or feedback log"
            )
            assert all(json.loads(line) for line in path.read_text().splitlines())
