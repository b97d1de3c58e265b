"""Simulated online experiment: two policies serve the simulator's listeners for some days;
the listeners respond from the ground truth (`World.respond`), assignment and exposure are
logged as in production, and the daily signals feed the same analysis as real data.

Model of a day: each human listener comes back with their base activity probability, scaled
by how their last session went (the share of plays they listened to the end), so better
recommendations also move the retention proxy. A returning listener makes one request, gets
a slate from the policy of their variant and plays it. Days before 0 are the pre-period (all
listeners on the control policy), used by CUPED.

Listener ids are those of the world given: `run.load_world` gives the listener view
(`crossfade.safety.privacy.listener_view`), so units, daily rows, exposures and the ids policies
are asked for are the stores' pseudonyms, and `World.respond` answers to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import domains as D
from crossfade.data.simulator import markets as M
from crossfade.data.simulator.world import World
from crossfade.experiments.assignment import EXPOSURE_DAY, VARIANT, assign, log_exposures
from crossfade.experiments.definition import ExperimentDefinition, ExperimentError
from crossfade.experiments.metrics import DAY, SIGNALS
from crossfade.experiments.policies import Policy

LONG_SESSION_MS = 30 * 60 * 1000
RETURN_BASE = 0.6  # activity multiplier after a session with no completed play
RETURN_GAIN = 0.8  # extra multiplier per unit of completion share


@dataclass
class SimulatedExperiment:
    """The simulated units and daily signals (inputs of `analyze`)."""

    units: pd.DataFrame
    daily: pd.DataFrame
    start: datetime


def _signals(
    events: pd.DataFrame,
    slate: list[str],
    artist_of: dict[str, str],
    ad_every: int,
    ad_supported: bool,
    cost: float,
    error: bool,
) -> dict[str, float]:
    plays = len(events)
    completions = int((events[C.REASON_END] == "trackdone").sum()) if plays else 0
    played_ms = int(events[C.MS_PLAYED].sum()) if plays else 0
    artists = {artist_of.get(i, i) for i in slate}
    return {
        "plays": plays,
        "skips": int(events[C.SKIPPED].sum()) if plays else 0,
        "completions": completions,
        "saves": int(events[C.SAVED].sum() + events[C.ADDED_TO_PLAYLIST].sum()) if plays else 0,
        "sessions": 1,
        "long_sessions": int(played_ms >= LONG_SESSION_MS),
        "ad_impressions": plays // ad_every if ad_supported and ad_every > 0 else 0,
        "requests": 1,
        "errors": int(error),
        "cost_usd": cost,
        "diversity": len(artists) / len(slate) if slate else 0.0,
        "slates": 1,
        "active": 1,
    }


def simulate_experiment(
    world: World,
    definition: ExperimentDefinition,
    policies: dict[str, Policy],
    days: int,
    seed: int,
    start: datetime | None = None,
    pre_days: int = 2,
    slate_size: int = 20,
    settings: Settings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SimulatedExperiment:
    """Run the experiment for `days` days; exposures are logged when `settings` is given."""
    missing = [v for v in definition.variants if v not in policies]
    if missing:
        raise ExperimentError(f"no policy for variant(s) {missing}; pass one per variant")
    if days < 1:
        raise ExperimentError(f"days must be >= 1, got {days}")
    lis, cat = world.listeners, world.catalogue
    rng = np.random.default_rng(seed)
    start = start or datetime.combine(
        world.start + timedelta(days=world.sim.days), datetime.min.time(), UTC
    )
    humans = np.flatnonzero(~lis.is_bot)
    ids = [str(u) for u in lis.user_ids[humans]]
    artist_of = dict(
        zip(map(str, cat.item_ids), map(str, cat.artist_ids[cat.item_artist]), strict=True)
    )
    platform = M.platform_of(
        lis.primary_device[humans], lis.phone_os[humans], lis.desktop_os[humans]
    )
    last_share = np.full(len(humans), 0.6)
    exposure: dict[str, tuple[str, int]] = {}
    rows: list[dict[str, object]] = []
    total = days + pre_days
    for step, day in enumerate(range(-pre_days, days)):
        p = lis.activity[humans] * (RETURN_BASE + RETURN_GAIN * last_share)
        active = np.flatnonzero(rng.random(len(humans)) < np.minimum(p, 0.98))
        active_ids = [ids[i] for i in active]
        variants = assign(definition, active_ids, day) if day >= 0 else [None] * len(active)
        at = start + timedelta(days=day, hours=float(rng.uniform(8, 22)))
        groups: dict[str, list[int]] = {}
        new_exposures = []
        for i, uid, variant in zip(active, active_ids, variants, strict=True):
            if day < 0:
                groups.setdefault(definition.control, []).append(int(i))
                continue
            if variant is None:
                continue
            if uid not in exposure:
                exposure[uid] = (variant, day)
                new_exposures.append((uid, variant))
            groups.setdefault(exposure[uid][0], []).append(int(i))
        for variant, members in groups.items():
            users = [ids[i] for i in members]
            slates = policies[variant].recommend(users, at, slate_size)
            for j, uid, slate in zip(members, users, slates, strict=True):
                row = int(humans[j])
                events = (
                    world.respond(uid, slate.item_ids, at, rng).to_pandas()
                    if slate.item_ids
                    else pd.DataFrame(columns=[C.REASON_END, C.MS_PLAYED])
                )
                signals = _signals(
                    events,
                    slate.item_ids,
                    artist_of,
                    int(lis.ad_every[row]),
                    bool(lis.tier[row] == D.TIERS.index("ad_supported")),
                    slate.cost_usd,
                    slate.error,
                )
                rows.append({C.USER_ID: uid, DAY: day, **signals})
                plays = signals["plays"]
                last_share[j] = signals["completions"] / plays if plays else 0.0
        if settings is not None and new_exposures:
            frame = pd.DataFrame(
                {
                    C.USER_ID: [u for u, _ in new_exposures],
                    VARIANT: [v for _, v in new_exposures],
                    C.TS: pd.Timestamp(at),
                    EXPOSURE_DAY: day,
                }
            )
            log_exposures(settings, definition.name, at.date(), frame)
        if progress is not None:
            progress(step + 1, total)
    if not exposure:
        raise ExperimentError("nobody was exposed: check the ramp, holdout and layer range")
    index = {uid: k for k, uid in enumerate(ids)}
    exposed = list(exposure)
    rows_idx = [int(humans[index[u]]) for u in exposed]
    units = pd.DataFrame(
        {
            C.USER_ID: exposed,
            VARIANT: [exposure[u][0] for u in exposed],
            EXPOSURE_DAY: [exposure[u][1] for u in exposed],
            C.COUNTRY: [D.MARKETS[lis.country[r]] for r in rows_idx],
            C.PLATFORM: [D.PLATFORMS[platform[index[u]]] for u in exposed],
            C.TIER: [D.TIERS[lis.tier[r]] for r in rows_idx],
        }
    )
    daily = pd.DataFrame(rows, columns=[C.USER_ID, DAY, *SIGNALS])
    daily = daily[daily[C.USER_ID].isin(set(exposed))].reset_index(drop=True)
    return SimulatedExperiment(units, daily, start)
