"""After `crossfade privacy erase X`, a live recommender stops personalizing for X (within the
erased set's refresh interval) and keeps personalizing for everyone else."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crossfade.config import load_settings
from crossfade.serving import fallbacks as F
from deployments.process import ServiceProcess
from model_registry.candidates import load_candidates
from tests.integration.test_recommender_service import recommender
from tests.unit.test_serving_pipeline import body

REFRESH_SECONDS = "0.5"
POLL_SECONDS = 0.2  # between polls of the recommender while the erasure reaches it
# The test world's ids are raw: the recommender must not pseudonymize them at its edge.
ENV = {
    "CROSSFADE_PRIVACY__PSEUDONYMIZE_AT_INGEST": "false",
    "CROSSFADE_PRIVACY__ERASED_REFRESH_SECONDS": REFRESH_SECONDS,
}
PERSONAL = {"collaborative", "content"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, Path]]:
    yield from recommender(tmp_path_factory.mktemp("privacy-serving"), ENV)


def _answer(http: httpx.Client, listener: str, country: str) -> dict[str, Any]:
    reply = http.post("/recommend", json=body(listener, k=10, country=country))
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def _personal(answer: dict[str, Any]) -> bool:
    sources = {i["source"] for i in answer["items"]}
    return F.LISTENER_ERASED not in answer["fallbacks"] and bool(sources & PERSONAL)


def test_an_erased_listener_is_answered_with_the_fallback_within_the_refresh(
    live: tuple[ServiceProcess, Path],
) -> None:
    process, data_root = live
    settings = load_settings("local", data_root=data_root)
    model = load_candidates(settings, "1").unwrap_python_model().model
    listeners = model.listeners.set_index("user_id")["country"]
    known = sorted(set(model.recent) & set(model.profile_ids) & set(listeners.index))
    with httpx.Client(base_url=process.url, timeout=30) as http:
        personal = [u for u in known[:40] if _personal(_answer(http, u, listeners[u]))]
        assert len(personal) >= 2, "the test world must personalize for known listeners"
        victim, other = personal[:2]

        env = {**os.environ, "CROSSFADE_DATA_ROOT": str(data_root), **ENV}
        erased = subprocess.run(
            [sys.executable, "-m", "crossfade.cli", "privacy", "erase", victim],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert erased.returncode == 0, erased.stdout + erased.stderr
        assert "NOT CLEANED HERE" in erased.stdout  # the model's parameters, said honestly

        deadline = time.monotonic() + 60 * float(REFRESH_SECONDS)
        answer = _answer(http, victim, listeners[victim])
        while F.LISTENER_ERASED not in answer["fallbacks"] and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)  # a pause between polls, not a wait for the outcome
            answer = _answer(http, victim, listeners[victim])
        assert F.LISTENER_ERASED in answer["fallbacks"], answer["fallbacks"]
        assert F.POPULAR_IN_COHORT in answer["fallbacks"]
        assert {i["source"] for i in answer["items"]} == {"popular_in_cohort"}
        assert _personal(_answer(http, other, listeners[other]))

    verify = subprocess.run(
        [sys.executable, "-m", "crossfade.cli", "privacy", "verify", victim],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert verify.returncode == 1  # the model still holds them: verify never says clean
    assert "model_artifacts" in verify.stdout and "retrain" in verify.stdout
