"""Locust load for `benchmarks/serving.py`: simulated listeners asking for a shelf, in a loop.

Run only in its own process (locust monkey-patches the standard library with gevent), e.g.

    BENCH_SERVING_REQUESTS=bodies.jsonl BENCH_SERVING_OUT=lat.json \
        locust -f benchmarks/locustfile.py --headless -u 50 -r 50 -t 30s --host URL

Each user is one listener session: it posts a /recommend body drawn from the prepared file
(real listener ids and contexts of the simulated world, made by the benchmark), then waits a
think time drawn uniformly from [BENCH_SERVING_THINK_MIN, BENCH_SERVING_THINK_MAX] seconds
before the next one (both 0: a closed loop without pauses). Every request's start time,
latency and status go to BENCH_SERVING_OUT as JSON when the run ends, so the benchmark
computes its own percentiles from exact values (locust's CSV rounds them).
Only the standard library and locust are imported here, on purpose.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, constant, events, task

REQUESTS_FILE = Path(os.environ["BENCH_SERVING_REQUESTS"])
OUT_FILE = Path(os.environ["BENCH_SERVING_OUT"])
THINK_MIN = float(os.environ.get("BENCH_SERVING_THINK_MIN", "0.5"))
THINK_MAX = float(os.environ.get("BENCH_SERVING_THINK_MAX", "1.5"))
SEED = int(os.environ.get("BENCH_SERVING_SEED", "0"))

BODIES: list[str] = [line for line in REQUESTS_FILE.read_text().splitlines() if line]
if not BODIES:
    raise SystemExit(f"{REQUESTS_FILE} holds no request bodies; the benchmark writes them")
SAMPLES: list[tuple[float, float, int]] = []  # (start unix s, latency ms, HTTP status or 0)
_rng = random.Random(SEED)


@events.request.add_listener
def _record(
    response_time: float,
    start_time: float,
    response: Any = None,
    exception: BaseException | None = None,
    **_: Any,
) -> None:
    """Keep every request's exact latency (ms) and status."""
    status = getattr(response, "status_code", 0) or 0
    SAMPLES.append((float(start_time), float(response_time), 0 if exception else int(status)))


@events.quitting.add_listener
def _dump(**_: Any) -> None:
    """Write the samples for the benchmark process."""
    OUT_FILE.write_text(json.dumps(SAMPLES))


class Listener(FastHttpUser):
    """One simulated listener: ask for a shelf, look at it, ask again."""

    wait_time = between(THINK_MIN, THINK_MAX) if THINK_MAX > 0 else constant(0)

    @task
    def recommend(self) -> None:
        """POST one prepared /recommend body; a non-2xx counts as a failure."""
        body = BODIES[_rng.randrange(len(BODIES))]
        with self.client.post(
            "/recommend",
            data=body,
            headers={"content-type": "application/json"},
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
