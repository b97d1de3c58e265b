"""The main job on a small world: the lifecycle twice, real processes, real stores.

Run 1 ingests all but the held-back days, trains, and makes the first version live (the
serving stack starts). Run 2 ingests the held-back days and retrains under a ranker gate no
version can pass, so it takes the path a refused ranker takes: the new candidate model goes
out alone with the champion ranker, under guardrails with simulated listeners (the path of a
passing ranker is the same release with both models new, exercised by `make run` and the
rollout tests); whatever the outcome, the run ends cleanly, the report explains it, and the
champions and the gateway are consistent with it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from crossfade.config import Settings, default_config_dir, load_settings
from crossfade.data import lake
from deployments.rollout.store import RolloutStore
from flows.lifecycle import lifecycle_flow, next_window
from flows.release import running_gateway, stop_stack
from model_registry.ranker import MODEL_NAME as RANKER
from model_registry.registry import client, version_by_alias
from tests.conftest import SMALL_WORLD

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


@pytest.fixture
def world_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    """The small world through the environment (the flows load their own settings)."""
    for key, value in SMALL_WORLD.items():
        monkeypatch.setenv(f"CROSSFADE_SIMULATOR__{key.upper()}", str(value))
    monkeypatch.setenv("CROSSFADE_LIFECYCLE__TRAFFIC_LISTENERS", "8")
    monkeypatch.setenv("CROSSFADE_LIFECYCLE__HOLDBACK_DAYS", "2")  # of the small world's 7
    settings = load_settings()
    assert settings.data_root == tmp_path / "data"
    yield settings
    stop_stack(settings)


def _stages(report: str) -> dict[str, str]:
    page = Path(report).read_text()
    return dict(re.findall(r"<tr><td>([^<]+)</td><td class='[a-z]+'>([^<]+)</td>", page))


def _recommend(url: str) -> httpx.Response:
    body: dict[str, Any] = {
        "listener_id": "u-not-in-the-world",
        "context": {"device": "phone", "platform": "ios", "country": "SE",
                    "timezone": "Europe/Stockholm", "timestamp": datetime.now(UTC).isoformat()},
        "shelf": "home", "k": 5,
    }  # fmt: skip
    return httpx.post(f"{url}/recommend", json=body, timeout=30)


def unbeatable_ranker_gate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The shipped configs, except that a ranker must beat the champion's NDCG@10 by 1.0."""
    configs = tmp_path / "configs"
    shutil.copytree(default_config_dir(), configs)
    tree = configs / "metrics.yaml"
    text = tree.read_text()
    assert "min_primary_improvement: 0.0" in text
    tree.write_text(text.replace("min_primary_improvement: 0.0", "min_primary_improvement: 1.0"))
    monkeypatch.setenv("CROSSFADE_CONFIG_DIR", str(configs))


def test_the_main_job_twice(
    world_env: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = world_env
    assert next_window(settings) == (0, SMALL_WORLD["days"] - 2)

    first = lifecycle_flow()
    stages = _stages(first["report"])
    assert first["status"] == "completed", stages
    assert stages["ingest"] == "published" and stages["ranker"] == "passed"
    assert stages["release"] == "live" and stages["experiment"] == "not run"
    c = client(settings.tracking_uri)
    champion = version_by_alias(c, RANKER, "champion")
    assert champion is not None
    gateway = running_gateway(settings)
    assert gateway is not None, "the first version must be live behind the gateway"
    answer = _recommend(gateway)
    assert answer.status_code == 200 and len(answer.json()["items"]) == 5  # cold start works

    assert next_window(settings) == (SMALL_WORLD["days"] - 2, SMALL_WORLD["days"])
    # Run 2 with a ranker gate no version can pass, so the new ranker is refused
    # deterministically and the release is the new candidate model with the champion ranker.
    unbeatable_ranker_gate(monkeypatch, tmp_path)
    candidates_name = settings.candidates.model_name
    old_candidates = version_by_alias(c, candidates_name, "champion")
    assert old_candidates is not None
    second = lifecycle_flow()
    stages = _stages(second["report"])
    assert stages["ingest"] == "published" and stages["ranker"] == "refused", stages
    assert len(lake.manifests(settings.lake_dir)) == 2
    new_ranker = version_by_alias(c, RANKER, "champion")
    assert new_ranker is not None and str(new_ranker.version) == str(champion.version)
    release = second["stages"].get("release")
    if stages["candidates"] == "refused":  # nothing passed a gate: the run stops, nothing moved
        assert release is None and second["status"].startswith("stopped at ranker")
    else:
        assert release is not None, stages
        fresh = str(second["stages"]["candidates"]["version"])
        assert release["candidate"] == {"candidates": fresh, "ranker": str(champion.version)}
        assert release["status"] in ("promoted", "rolled_back", "paused"), release["summary"]
        assert release["traffic"]["requests"] > 0
        assert release["traffic"]["failed"] == 0, "no listener-facing failure during a rollout"
        assert release["transitions"][0]["phase"] == "SHADOW"
        state = RolloutStore.from_settings(settings).read_state()
        now_candidates = version_by_alias(c, candidates_name, "champion")
        assert now_candidates is not None
        if release["status"] == "promoted":
            assert state.phase == "PROMOTED" and str(now_candidates.version) == fresh
            assert stages["experiment"] in ("ship", "abort", "continue", "inconclusive")
            assert Path(second["stages"]["experiment"]["report"]).is_file()
        else:
            assert str(now_candidates.version) == str(old_candidates.version)
    assert _recommend(gateway).status_code == 200, "the gateway keeps serving the champion"
