"""The streaming writer: build the world, then write one staged batch day by day.

Memory is bounded by one day of plays: each day is generated, converted, written as its own
Parquet part and dropped. Plays that run past UTC midnight (a session that started late) are
carried into the next day's part, so every part holds exactly its day's timestamps; on the last
day they fall outside the batch window and are dropped.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from crossfade import columns as C
from crossfade.config import SimulatorSettings
from crossfade.data.contracts import TS_TYPE
from crossfade.data.lake import BatchInfo, create_batch, new_batch_id, update_batch_info, write_part
from crossfade.data.simulator.bots import bot_day
from crossfade.data.simulator.daylog import Lookups, concat
from crossfade.data.simulator.rotation import build_rotation, daily_charts
from crossfade.data.simulator.sessions import human_day
from crossfade.data.simulator.tables import (
    artists_table,
    items_table,
    onboarding_table,
    users_table,
)
from crossfade.data.simulator.world import (
    STREAM_DAYS,
    STREAM_ROTATION,
    World,
    build_world,
    child_rng,
)

SOURCE = "simulator"
Progress = Callable[[int, int], None]


def _split(
    carried: pa.Table | None, fresh: pa.Table, key: str, end_us: int, last: bool
) -> tuple[pa.Table, pa.Table | None]:
    """Rows of `carried` + `fresh` before `end_us` (sorted by time, then id) and the rest."""
    rows = pa.concat_tables([carried, fresh]) if carried is not None else fresh
    before = pc.less(rows[C.TS], pa.scalar(end_us, TS_TYPE))
    today = rows.filter(before).sort_by([(C.TS, "ascending"), (key, "ascending")])
    rest = None if last else rows.filter(pc.invert(before))
    return today, rest


def _within(table: pa.Table, column: str, start_us: int, end_us: int) -> pa.Table:
    """Rows whose `column` timestamp lies in [start_us, end_us)."""
    ts = table[column]
    keep = pc.and_(
        pc.greater_equal(ts, pa.scalar(start_us, TS_TYPE)),
        pc.less(ts, pa.scalar(end_us, TS_TYPE)),
    )
    return table.filter(keep)


def _write_days(
    world: World,
    batch_dir: Path,
    counts: dict[str, int],
    progress: Progress | None,
    days: range,
) -> None:
    """Write the fact tables of `days`; earlier days are simulated (not written) so that plays
    carried past midnight into the first written day are exactly those of a whole-window run."""
    sim, seed = world.sim, world.seed
    rotation = build_rotation(world, child_rng(seed, STREAM_ROTATION))
    lookups = Lookups(world)
    carry_events: pa.Table | None = None
    carry_ads: pa.Table | None = None
    for day in range(days.stop):
        rng = child_rng(seed, STREAM_DAYS, day)
        charts = daily_charts(world, rotation, day)
        events, ads = human_day(world, rotation, charts, day, rng)
        base = int(events.session.max()) + 1 if len(events) else 0
        bot_events, bot_ads = bot_day(world, day, rng, session_base=base)
        events, ads = concat([events, bot_events]), concat([ads, bot_ads])
        end_us = world.day_start_us(day + 1)
        last = day == sim.days - 1
        day_events, carry_events = _split(
            carry_events, lookups.events_table(day, events), C.EVENT_ID, end_us, last
        )
        day_ads, carry_ads = _split(
            carry_ads, lookups.ads_table(day, ads), C.IMPRESSION_ID, end_us, last
        )
        if day in days:
            date = world.start + timedelta(days=day)
            write_part(batch_dir, "events", day_events, 0, day=date)
            write_part(batch_dir, "ad_impressions", day_ads, 0, day=date)
            counts["events"] += day_events.num_rows
            counts["ad_impressions"] += day_ads.num_rows
        del events, ads, bot_events, bot_ads, day_events, day_ads
        if progress is not None:
            progress(day + 1, days.stop)


def simulate(
    sim: SimulatorSettings,
    seed: int,
    staging_dir: Path,
    truth_dir: Path,
    progress: Progress | None = None,
    days: range | None = None,
) -> Path:
    """Simulate a listening world into one staged batch and return the batch folder.

    The batch (source "simulator", window start_date .. start_date + days - 1) holds all six
    contract tables; events and ad impressions are one part per day. `days` (window day
    numbers, default all) limits the timestamped tables to part of the window, so one world can
    arrive as consecutive batches (`split_days`), the way new listening arrives week after
    week, with the same events as one whole-window batch. The ground truth (factors,
    biases, bot labels, everything `World.load` needs) goes to `truth_dir/<batch_id>/`, apart
    from the observable logs. Same settings and seed give identical tables. `progress(done,
    total)` is called after each simulated day. On failure nothing half-written is left behind.
    """
    days = range(sim.days) if days is None else days
    if not days or days.start < 0 or days.stop > sim.days or days.step != 1:
        raise ValueError(
            f"day range {days.start}..{days.stop - 1} is not a non-empty part of the "
            f"simulated window 0..{sim.days - 1}"
        )
    world = build_world(sim, seed)
    info = BatchInfo(
        batch_id=new_batch_id(SOURCE),
        source=SOURCE,
        window_start=sim.start_date + timedelta(days=days.start),
        window_end=sim.start_date + timedelta(days=days.stop - 1),
        details={
            "seed": seed,
            "days": [days.start, days.stop],
            "simulator": sim.model_dump(mode="json"),
            "world": world.summary(),
        },
    )
    batch_dir = create_batch(staging_dir, info)
    truth = truth_dir / info.batch_id
    try:
        world.save(truth)
        counts = {"events": 0, "ad_impressions": 0}
        dimensions = {
            "users": users_table(world),
            "artists": artists_table(world),
            "items": items_table(world),
            "onboarding": _within(
                onboarding_table(world),
                C.PICKED_AT,
                world.day_start_us(days.start),
                world.day_start_us(days.stop),
            ),
        }
        for name, table in dimensions.items():
            write_part(batch_dir, name, table, 0)
            counts[name] = table.num_rows
        del dimensions
        _write_days(world, batch_dir, counts, progress, days)
        info.row_counts = {name: counts[name] for name in sorted(counts)}
        update_batch_info(batch_dir, info)
    except BaseException:
        shutil.rmtree(batch_dir, ignore_errors=True)
        shutil.rmtree(truth, ignore_errors=True)
        raise
    return batch_dir


def split_days(total: int, holdback: int) -> list[range]:
    """The window's days as arriving batches: all but the last `holdback` days first, then
    the held-back days (one batch), so a second lifecycle run sees new listening."""
    if not 0 <= holdback < total:
        raise ValueError(f"holdback of {holdback} days must be below the window's {total} days")
    cut = total - holdback
    return [range(0, cut)] + ([range(cut, total)] if holdback else [])
