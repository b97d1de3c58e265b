"""The recommender as a real `bentoml serve` process on loopback, models from MLflow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest

from crossfade.config import load_settings
from crossfade.ranking import features as RF
from crossfade.serving.api import MAX_FEEDBACK_BATCH
from crossfade.serving.logs import FEEDBACK, REQUESTS, logs_dir, read_rows
from deployments.process import ServiceProcess, start_service
from model_registry.candidates import register_candidates
from model_registry.ranker import MODEL_NAME, TIER, register_ranker
from model_registry.registry import CHAMPION
from tests.unit.test_serving_pipeline import body, build_world

TOKEN = "test-admin-token"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, Path]]:
    yield from recommender(tmp_path_factory.mktemp("recommender"))


def recommender(
    root: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[ServiceProcess, Path]]:
    """A green recommender serving the test world's models (champion aliases) from `root`;
    `extra_env` adds CROSSFADE_* settings (other test modules start their own this way)."""
    data_root = root / "data"
    served = build_world(root / "world")
    settings = load_settings("local", data_root=data_root)
    cand = register_candidates(served.candidates, settings, {}, {}, "# test candidates")
    example = pd.DataFrame({f: [0.0, 1.0] for f in RF.FEATURES}).assign(**{TIER: "premium"})
    _, ranker_version = register_ranker(served.ranker, settings, example, {}, {}, "# test ranker")
    client = mlflow.MlflowClient(settings.tracking_uri)
    client.set_registered_model_alias(settings.candidates.model_name, CHAMPION, cand.version)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, ranker_version)
    env = {
        "CROSSFADE_DATA_ROOT": str(data_root),
        "CROSSFADE_PROFILE": "local",
        "CROSSFADE_SERVING__SLOT": "green",
        "CROSSFADE_SERVING__ADMIN_TOKEN": TOKEN,
        "CROSSFADE_SERVING__LOG_BATCH_SIZE": "1",
        **(extra_env or {}),
    }
    process = start_service("deployments.recommender.service:Recommender", env, ready_timeout=180)
    try:
        yield process, data_root
    finally:
        process.stop()


def test_ready_recommend_feedback_metrics_and_reload(
    service: tuple[ServiceProcess, Path],
) -> None:
    process, data_root = service
    with httpx.Client(base_url=process.url, timeout=30) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200

        ok = http.post("/recommend", json=body("u-someone", k=7, country="DE"))
        assert ok.status_code == 200, ok.text
        answer = ok.json()
        assert answer["slot"] == "green" and answer["model"] == {"candidates": "1", "ranker": "1"}
        assert 0 < len(answer["items"]) <= 7
        assert {"item_id", "score", "source", "reasons"} <= set(answer["items"][0])
        assert "features_unavailable" in answer["fallbacks"]  # no store was materialized
        # the ranker serves compiled: one native object per tier's booster in the cache
        compiled = list((data_root / "cache" / "ranker").glob("*.o"))
        assert len(compiled) == 2, compiled  # premium and ad-supported boosters

        bad = body("u-someone")
        bad["context"]["timezone"] = "Mars/Base"
        rejected = http.post("/recommend", json=bad)
        assert rejected.status_code == 422 and "context.timezone" in rejected.text
        missing_k = body("u-someone")
        del missing_k["k"]
        assert http.post("/recommend", json=missing_k).status_code == 422

        feedback = {
            "listener_id": "u-someone",
            "item_id": answer["items"][0]["item_id"],
            "event": "save",
            "ms_played": 120000,
            "timestamp": "2026-01-13T08:31:00Z",
            "slot": "green",
        }
        assert http.post("/feedback", json=feedback).status_code == 202
        session = {"events": [{**feedback, "event": "play"}, {**feedback, "event": "skip"}]}
        batch = http.post("/feedback/batch", json=session)
        assert batch.status_code == 202 and batch.json()["events"] == 2, batch.text
        too_many = {"events": [feedback] * (MAX_FEEDBACK_BATCH + 1)}
        rejected_batch = http.post("/feedback/batch", json=too_many)
        assert rejected_batch.status_code == 422 and "events" in rejected_batch.json()["error"]

        metrics = http.get("/metrics").text
        for name in (
            "crossfade_recommender_stage_seconds",
            "crossfade_recommender_fallbacks_total",
            "crossfade_recommender_stale_features_total",
            "crossfade_recommender_feedback_total",
        ):
            assert name in metrics, name

        unauthorised = http.post("/admin/reload", json={"candidates": "1", "ranker": "1"})
        assert unauthorised.status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        refused = http.post(
            "/admin/reload", json={"candidates": "1", "ranker": "99"}, headers=headers
        )
        assert refused.status_code == 422 and "'99'" in refused.json()["error"]
        still = http.post("/recommend", json=body("u-someone", k=3))
        assert still.status_code == 200 and still.json()["model"]["ranker"] == "1"
        reloaded = http.post(
            "/admin/reload", json={"candidates": "champion", "ranker": "1"}, headers=headers
        )
        assert reloaded.status_code == 200, reloaded.text

    process.stop()  # shutdown flushes the logs
    requests = read_rows(logs_dir(data_root, REQUESTS))
    assert requests and all("listener_id" in r for r in requests)
    feedbacks = read_rows(logs_dir(data_root, FEEDBACK))
    assert [f["event"] for f in feedbacks] == ["save", "play", "skip"]
