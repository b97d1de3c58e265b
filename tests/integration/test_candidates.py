"""Candidate generation end to end on a simulated world, and the registered model."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.candidates.generator import SOURCES, Listener
from crossfade.candidates.model import CandidateModel, train_candidates
from crossfade.config import Settings, SimulatorSettings
from crossfade.data import domains as D
from crossfade.data import lake
from crossfade.data.simulator import simulate

WORLD = SimulatorSettings(
    users=300, days=10, artists=80, tracks=900, episodes=60, start_date=date(2026, 1, 5)
)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    root = tmp_path_factory.mktemp("world")
    batch = simulate(WORLD, 7, root / "staging", root / "truth")
    return {
        name: lake.read_batch_table(batch, name).to_pandas()
        for name in ("events", "items", "users", "onboarding")
    }


@pytest.fixture(scope="module")
def model(frames: dict[str, pd.DataFrame]) -> CandidateModel:
    from crossfade.config import CandidateSettings

    return train_candidates(
        frames["events"], frames["items"], frames["users"], frames["onboarding"],
        CandidateSettings(), seed=7,
    )  # fmt: skip


def _active_adult(model: CandidateModel, frames: dict[str, pd.DataFrame]) -> str:
    plays = frames["events"].groupby(C.USER_ID).size()
    users = frames["users"].set_index(C.USER_ID)
    adults = users[~users[C.AGE_BUCKET].isin(D.MINOR_AGE_BUCKETS)].index
    ranked = plays[plays.index.isin(adults)].sort_values()
    return str(ranked.index[int(len(ranked) * 0.8)])  # a regular listener, not the busiest


def test_a_listener_gets_candidates_from_every_source(
    model: CandidateModel, frames: dict[str, pd.DataFrame]
) -> None:
    user = _active_adult(model, frames)
    found = model.generate(user, now=model.trained_at, k=480)
    sources = {s for c in found for s in c.sources}  # an item found twice keeps both sources
    assert sources == set(SOURCES), f"missing sources: {set(SOURCES) - sources}"
    assert len({c.item_id for c in found}) == len(found)  # de-duplicated
    assert all(c.score == c.score for c in found)  # every candidate carries a score
    heard = model.recent.get(user, set())
    assert not heard & {c.item_id for c in found}  # recently heard items are filtered


def test_a_release_added_today_is_retrievable(frames: dict[str, pd.DataFrame]) -> None:
    from crossfade.config import CandidateSettings

    items = frames["items"].copy()
    now = frames["events"][C.TS].max().to_pydatetime()
    template = items[items[C.CONTENT_TYPE] == "track"].iloc[0].copy()
    template[C.ITEM_ID] = "t-released-today"
    template[C.RELEASE_DATE] = now.date()
    template[C.EXPLICIT] = False
    template[C.AVAILABLE_MARKETS] = ",".join(D.MARKETS)
    items = pd.concat([items, template.to_frame().T], ignore_index=True)
    fresh = train_candidates(
        frames["events"], items, frames["users"], frames["onboarding"],
        CandidateSettings(), seed=7, now=now,
    )  # fmt: skip
    assert fresh.cold_index is not None
    assert "t-released-today" in fresh.cf_index  # in the collaborative space on day one
    user = _active_adult(fresh, frames)
    vector = fresh.cf.user_vector(user)
    ids, _ = fresh.cf_index.query(vector, k=len(fresh.cf_index))
    assert "t-released-today" in ids
    country = fresh.listener(user).country
    fresh_ids, _ = fresh.popularity.fresh_releases(country, now + timedelta(hours=1), 14, 500)
    assert "t-released-today" in fresh_ids


def test_a_new_listener_gets_cohort_candidates(model: CandidateModel) -> None:
    newcomer = Listener("u-brand-new", "BR", "25-34", "premium")
    found = model.generate("u-brand-new", listener=newcomer)
    assert found, "a new listener must get candidates"
    assert any(c.source == "cold_start" for c in found)
    assert not {"collaborative", "content"} & {c.source for c in found}


@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    index=st.integers(0, 10_000),
    country=st.sampled_from(D.COUNTRIES),
    age=st.sampled_from(D.MINOR_AGE_BUCKETS),
    tier=st.sampled_from(D.TIERS),
    k=st.integers(1, 480),
)
def test_minors_never_get_explicit_candidates(
    model: CandidateModel,
    frames: dict[str, pd.DataFrame],
    index: int,
    country: str,
    age: str,
    tier: str,
    k: int,
) -> None:
    users = [*frames["users"][C.USER_ID].tolist(), "u-unknown-listener"]
    user = users[index % len(users)]
    found = model.generate(user, listener=Listener(user, country, age, tier), k=k)
    explicit = set(frames["items"].loc[frames["items"][C.EXPLICIT], C.ITEM_ID])
    assert not explicit & {c.item_id for c in found}


def test_unknown_listeners_are_minor_safe_by_default(
    model: CandidateModel, frames: dict[str, pd.DataFrame]
) -> None:
    found = model.generate("u-nobody-knows")
    explicit = set(frames["items"].loc[frames["items"][C.EXPLICIT], C.ITEM_ID])
    assert found and not explicit & {c.item_id for c in found}


def test_save_and_load_give_the_same_candidates(model: CandidateModel, tmp_path: Path) -> None:
    user = model.profile_ids[0]
    now = datetime(2026, 1, 15, tzinfo=UTC)
    before = [(c.item_id, c.source) for c in model.generate(user, now=now)]
    again = CandidateModel.load(model.save(tmp_path / "m"))
    assert [(c.item_id, c.source) for c in again.generate(user, now=now)] == before


@pytest.mark.usefixtures("prefect_server")
def test_training_flow_registers_a_version_loadable_in_a_fresh_process(settings: Settings) -> None:
    from flows.train import train_candidates_flow

    batch = simulate(settings.simulator, settings.seed, settings.staging_dir, settings.truth_dir)
    lake.publish_batch(batch, settings.lake_dir)
    outcome = train_candidates_flow()
    assert outcome["version"] == "1"
    assert outcome["metrics"]["recall_at_100"] > 0
    assert outcome["gate_passed"], outcome["reasons"]
    user = lake.read_lake_table(settings.lake_dir, "users")[C.USER_ID][0].as_py()
    script = (
        "import json, sys, pandas as pd\n"
        "from crossfade.config import load_settings\n"
        "from model_registry.candidates import load_candidates\n"
        "s = load_settings()\n"
        "out = {}\n"
        "for ref in ('1', '@challenger'):\n"
        f"    request = pd.DataFrame({{'user_id': ['{user}'], 'k': [25]}})\n"
        "    frame = load_candidates(s, ref).predict(request)\n"
        "    out[ref] = frame['item_id'].tolist()\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(loaded["1"]) == 25 and loaded["1"] == loaded["@challenger"]
