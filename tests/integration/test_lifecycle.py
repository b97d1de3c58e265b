"""The main job on a small world: the lifecycle twice, real processes, real stores.

Run 1 ingests all but the held-back days, trains, and makes the first version live (the
serving stack starts). Run 2 ingests the held-back days, retrains and releases under
guardrails with simulated listeners whatever passed its gate: the new ranker, or the new
candidate model alone with the champion ranker; whatever the outcome, the run ends cleanly,
the report explains it, and the champion and the gateway are consistent with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from crossfade.config import Settings, load_settings
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


def test_the_main_job_twice(world_env: Settings) -> None:
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
    second = lifecycle_flow()
    stages = _stages(second["report"])
    assert stages["ingest"] == "published", stages
    assert len(lake.manifests(settings.lake_dir)) == 2
    new_champion = version_by_alias(c, RANKER, "champion")
    assert new_champion is not None
    release = second["stages"].get("release")
    if stages["candidates"] == "refused" and stages["ranker"] == "refused":
        # nothing passed a gate: the run says so and nothing moved
        assert release is None and second["status"].startswith("stopped at ranker")
        assert str(new_champion.version) == str(champion.version)
    else:
        # a second model goes out: the new ranker, or the new candidate model alone with the
        # champion ranker when the ranker's gate refused
        assert release is not None, stages
        if stages["ranker"] == "refused":
            assert release["candidate"]["ranker"] == str(champion.version)
            assert release["candidate"]["candidates"] == str(
                second["stages"]["candidates"]["version"]
            )
        state = RolloutStore.from_settings(settings).read_state()
        assert release["status"] in ("promoted", "rolled_back", "paused"), release["summary"]
        assert release["traffic"]["requests"] > 0
        assert release["traffic"]["failed"] == 0, "no listener-facing failure during a rollout"
        assert release["transitions"][0]["phase"] == "SHADOW"
        if release["status"] == "promoted":
            assert state.phase == "PROMOTED"
            assert str(new_champion.version) == release["candidate"]["ranker"]
            assert stages["experiment"] in ("ship", "abort", "continue", "inconclusive")
            assert Path(second["stages"]["experiment"]["report"]).is_file()
        else:
            assert str(new_champion.version) == str(champion.version)
    assert _recommend(gateway).status_code == 200, "the gateway keeps serving the champion"
