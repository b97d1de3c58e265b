"""The simulated listening world ("the world"): a seeded latent-taste model of listeners, a
catalogue of tracks and podcast episodes, and the logs they produce, with the ground truth
kept apart for evaluation, bot detection and online experiments.

Public API:

- `simulate(sim, seed, staging_dir, truth_dir, progress=None, days=None) -> Path`: one staged
  batch (of the window's `days` only, when given; `split_days` cuts a window into batches);
- `build_world(sim, seed) -> World`, `World.load(truth_dir / batch_id) -> World`;
- `World.true_affinity(user_id, item_ids)` and `World.respond(user_id, ranked_item_ids, ts, rng)`.

Realism targets (checked by tests/unit/test_simulator_realism.py on a 1,000-listener world):

- overall skip rate of human plays between 20% and 40%;
- the top 1% of tracks take at least 15% of track plays (heavy-tailed popularity);
- a weekly rhythm: over 14 days, plays on the busiest weekday exceed the quietest by >= 10%
  (Friday busiest, Sunday quietest);
- a daily rhythm: plays peak in the local evening (18:00-23:00 in the listener's time zone);
- minors hear explicit content far less often than adults (parental filters, penalties);
- Ad-supported listeners get an ad break every 3-5 tracks, Premium listeners none;
- bots: plays just over 30 s, flat hour-of-day profile, a handful of tracks, no saves.
"""

from crossfade.data.simulator.run import simulate, split_days
from crossfade.data.simulator.world import World, WorldFileError, build_world

__all__ = ["World", "WorldFileError", "build_world", "simulate", "split_days"]
