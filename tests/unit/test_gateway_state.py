"""The gateway's view of the rollout state, read from a real (SQLite) rollout store."""

from __future__ import annotations

import asyncio
import time

import pytest

from crossfade.config import Settings
from deployments.gateway.reconcile import SlotReconciler
from deployments.gateway.state import StateCache, route_table
from deployments.rollout.store import RolloutState, RolloutStore


def test_idle_state_sends_everyone_to_blue_and_uses_the_idle_shadow_share() -> None:
    table = route_table(RolloutState(), idle_shadow_share=0.1, read_at=1.0)
    assert table.green_bp == 0 and table.shadow_bp == 1_000 and table.phase == "IDLE"


@pytest.mark.parametrize(
    ("phase", "green", "shadow", "green_bp", "shadow_bp"),
    [
        ("SHADOW", 0.0, 0.2, 0, 2_000),
        ("CANARY", 25.0, 0.0, 2_500, 0),
        ("SWITCH", 100.0, 0.0, 10_000, 0),
        ("ROLLED_BACK", 0.0, 0.0, 0, 0),
    ],
)
def test_rollout_phases_translate_to_basis_points(
    phase: str, green: float, shadow: float, green_bp: int, shadow_bp: int
) -> None:
    state = RolloutState(version=3, phase=phase, green_percent=green, shadow_share=shadow)
    table = route_table(state, idle_shadow_share=0.5, read_at=1.0)
    assert (table.green_bp, table.shadow_bp) == (green_bp, shadow_bp)


def test_cache_follows_the_store_and_fails_closed_when_it_goes_stale(settings: Settings) -> None:
    store = RolloutStore.from_settings(settings)
    store.compare_and_set(
        0, RolloutState(phase="CANARY", green_percent=50.0, slots={"green": {"candidates": "2"}})
    )
    broken = False
    seen: list[int] = []

    def read() -> RolloutState:
        if broken:
            raise ConnectionError("store down")
        return store.read_state()

    cache = StateCache(read, refresh_seconds=0.01, idle_shadow_share=0.0, stale_after=0.05)
    cache.listeners.append(lambda table: seen.append(table.green_bp))
    assert not cache.loaded and cache.current().green_bp == 0  # nothing read yet: all blue
    asyncio.run(cache.refresh())
    assert cache.loaded and cache.current().green_bp == 5_000 and seen == [5_000]
    broken = True
    asyncio.run(cache.refresh())
    assert cache.read_errors == 1 and seen == [5_000]
    time.sleep(0.1)  # older than stale_after: the last view is no longer trusted
    assert cache.current().green_bp == 0 and cache.current().shadow_bp == 0


def test_no_listener_reaches_a_slot_before_it_confirms_its_assigned_versions(
    settings: Settings,
) -> None:
    store = RolloutStore.from_settings(settings)
    assigned = {"candidates": "2", "ranker": "2"}
    store.compare_and_set(
        0,
        RolloutState(phase="SHADOW", shadow_share=0.2, slots={"shadow": assigned, "green": None}),
    )
    reconciler = SlotReconciler({}, admin_token=None, timeout_s=1.0)
    cache = StateCache(store.read_state, refresh_seconds=0.01, idle_shadow_share=0.0)
    cache.confirmed = reconciler.confirmed
    asyncio.run(cache.refresh())
    assert cache.current().shadow_bp == 0  # still loading: nothing mirrored yet
    reconciler.applied["shadow"] = {"candidates": "2", "ranker": "1"}  # an older assignment
    asyncio.run(cache.refresh())
    assert cache.current().shadow_bp == 0
    reconciler.applied["shadow"] = dict(assigned)  # the reload answered
    asyncio.run(cache.refresh())
    assert cache.current().shadow_bp == 2_000

    state = store.read_state()
    store.compare_and_set(
        state.version,
        state.evolve(
            phase="CANARY", green_percent=5.0, shadow_share=0.0, slots={"green": assigned}
        ),
    )
    asyncio.run(cache.refresh())
    assert cache.current().green_bp == 0
    reconciler.served["green"] = dict(assigned)  # green's own answers show the versions
    asyncio.run(cache.refresh())
    assert cache.current().green_bp == 500


def test_a_slot_confirmation_is_forgotten_when_its_assignment_changes(settings: Settings) -> None:
    """A green slot restarted between two rollouts of the same candidate must reload again."""
    store = RolloutStore.from_settings(settings)
    assigned = {"candidates": "2", "ranker": "2"}
    store.compare_and_set(
        0, RolloutState(phase="CANARY", green_percent=5.0, slots={"green": assigned})
    )
    reconciler = SlotReconciler({}, admin_token=None, timeout_s=1.0)
    cache = StateCache(store.read_state, refresh_seconds=0.01, idle_shadow_share=0.0)
    cache.confirmed = reconciler.confirmed
    cache.listeners.append(reconciler.on_state)  # as the gateway wires it
    asyncio.run(cache.refresh())
    reconciler.applied["green"] = dict(assigned)  # the reload answered
    asyncio.run(cache.refresh())
    assert cache.current().green_bp == 500

    state = store.read_state()  # rolled back: green idle (and perhaps restarted meanwhile)
    store.compare_and_set(
        state.version, state.evolve(phase="ROLLED_BACK", green_percent=0.0, slots={"green": None})
    )
    asyncio.run(cache.refresh())
    state = store.read_state()  # the same candidate is rolled out again
    store.compare_and_set(
        state.version, state.evolve(phase="CANARY", green_percent=5.0, slots={"green": assigned})
    )
    asyncio.run(cache.refresh())
    assert cache.current().green_bp == 0  # not confirmed until green answers a new reload
    reconciler.applied["green"] = dict(assigned)
    asyncio.run(cache.refresh())
    assert cache.current().green_bp == 500
