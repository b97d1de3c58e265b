"""Minors never receive explicit content through the whole offline stack.

Candidates come from a real candidate model trained on a small simulated world; the ranking
stage is adversarial (hypothesis draws any scores, so the property holds for every ranker);
half the requests also get explicit items injected after retrieval, as a broken candidate
source would; the re-ranker (configs/reranking.yaml) and the final response check follow.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.candidates.generator import Listener
from crossfade.candidates.model import CandidateModel, train_candidates
from crossfade.config import load_settings
from crossfade.data import domains as D
from crossfade.data import lake
from crossfade.data.simulator import simulate
from crossfade.reranking.config import load_reranking
from crossfade.reranking.frame import PLAY_SHARE_ABOVE, SCORE
from crossfade.reranking.pipeline import RequestContext, Reranker
from crossfade.reranking.safety import is_minor
from crossfade.safety.age import assert_age_safe, unsafe_items
from tests.conftest import SMALL_WORLD

Stack = tuple[CandidateModel, pd.DataFrame, list[str], Reranker]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    root: Path = tmp_path_factory.mktemp("age")
    settings = load_settings("local", data_root=root, simulator=SMALL_WORLD)
    batch = simulate(settings.simulator, 11, settings.staging_dir, settings.truth_dir)
    frames = {n: lake.read_batch_table(batch, n).to_pandas() for n in ("events", "items",
              "users", "onboarding")}  # fmt: skip
    model = train_candidates(
        frames["events"], frames["items"], frames["users"], frames["onboarding"],
        settings.candidates, 11,
    )  # fmt: skip
    items = frames["items"].drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)
    assert items[C.EXPLICIT].any(), "the world needs explicit items for this test to bite"
    reranker = Reranker(load_reranking(settings.config_path / "reranking.yaml"))
    return model, items, sorted(frames["users"][C.USER_ID]), reranker


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    user=st.integers(0, 10_000),
    age=st.sampled_from([*D.AGE_BUCKETS, None, "12", ""]),
    country=st.sampled_from([*D.COUNTRIES, "XX"]),
    seed=st.integers(0, 2**31 - 1),
    inject=st.booleans(),
    k=st.integers(1, 30),
)
def test_no_explicit_item_reaches_a_minor(
    stack: Stack, user: int, age: str | None, country: str, seed: int, inject: bool, k: int
) -> None:
    model, items, users, reranker = stack
    user_id = users[user % len(users)]
    listener = Listener(user_id, country=country, age_bucket=age or D.UNKNOWN)
    now = datetime.now(UTC) + timedelta(days=1)
    found = [c.item_id for c in model.generate(user_id, now=now, listener=listener, k=200)]
    if listener.is_minor:
        assert not unsafe_items(found, age or D.UNKNOWN, items[C.EXPLICIT].to_dict())
    rng = np.random.default_rng(seed)
    if inject:  # a broken source: explicit items slip past retrieval
        explicit = items.index[items[C.EXPLICIT]].to_numpy()
        found += list(rng.choice(explicit, size=min(20, len(explicit)), replace=False))
    frame = items.reindex(found).reset_index()
    frame[SCORE] = rng.normal(size=len(frame)) + np.where(frame[C.EXPLICIT], 3.0, 0.0)
    frame[PLAY_SHARE_ABOVE] = rng.random(len(frame))
    result = reranker.rerank(frame, RequestContext(country, age, now), k)
    explicit_of = items[C.EXPLICIT].to_dict()
    assert_age_safe(result.item_ids, age, explicit_of)
    if is_minor(age) and inject:
        assert any(tag == "safety_explicit" for tag in result.removed.values())
