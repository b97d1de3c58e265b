"""Simulated listeners as real HTTP clients: steady load with feedback from the ground truth.

Each virtual listener repeatedly asks the gateway (or a recommender) for a shelf, then plays
the answer to the simulated listener behind the id (`World.respond`: skips, plays and saves
drawn from the hidden true taste) and posts that feedback. This is the traffic behind the
rollout guardrails in the main job, the serving drills and the serving benchmark, and it runs
in its own process so that it never shares an event loop or a core budget with the services:

    python -m deployments.traffic --url http://127.0.0.1:3000 --listeners 20 --seconds 30

Bots are never sent (they are not the listeners a release is judged on). Listener ids are
never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from crossfade import columns as C
from crossfade.config import Settings, load_settings
from crossfade.data import lake
from crossfade.data.simulator import World
from crossfade.data.simulator.clients import listener_context

SHELVES = ("home", "discover_weekly")


@dataclass
class TrafficReport:
    """What the load saw, from the listeners' side."""

    requests: int = 0
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    transport_errors: int = 0
    feedback_sent: int = 0
    feedback_failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Listener-facing failures: anything that was not a 2xx answer."""
        return self.requests - self.ok

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary with throughput and latency percentiles."""
        lat = np.asarray(self.latencies_ms, dtype=float)
        out = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        out["failed"] = self.failed
        out["throughput_rps"] = self.requests / self.seconds if self.seconds else 0.0
        for q in (50, 90, 99):
            out[f"p{q}_ms"] = float(np.percentile(lat, q)) if len(lat) else None
        return out


class SimulatedListeners:
    """Requests and feedback for the human listeners of a simulated world."""

    def __init__(self, world: World, seed: int, k: int = 10) -> None:
        self.world = world
        self.k = k
        self.rng = np.random.default_rng(seed)
        lis = world.listeners
        day = world.sim.days - 1
        humans = (~lis.is_bot) & (lis.signup_day <= day)
        self.index = np.flatnonzero(humans)
        if len(self.index) == 0:
            raise ValueError("the simulated world has no human listeners to send")
        self.last_day = world.start + timedelta(days=day)

    def now(self) -> datetime:
        """Wall-clock time of day, on the world's last day (responses need a day it knows)."""
        clock = datetime.now(UTC)
        return datetime.combine(self.last_day, clock.timetz()).replace(microsecond=0)

    def request(self) -> tuple[int, dict[str, Any]]:
        """A /recommend body for a random human listener (index into the world's arrays)."""
        u = int(self.rng.choice(self.index))
        body = {
            "listener_id": str(self.world.listeners.user_ids[u]),
            "context": listener_context(self.world, u, self.now()),
            "shelf": SHELVES[int(self.rng.random() < 0.2)],
            "k": self.k,
        }
        return u, body

    def feedback(self, body: dict[str, Any], answer: dict[str, Any]) -> list[dict[str, Any]]:
        """The listener plays the answer; one /feedback body per play, skip or save."""
        items = [str(item["item_id"]) for item in answer.get("items", [])]
        if not items:
            return []
        ts = datetime.fromisoformat(body["context"]["timestamp"])
        events = self.world.respond(body["listener_id"], items, ts, self.rng).to_pylist()
        out = []
        for event in events:
            kind = "save" if event[C.SAVED] else ("skip" if event[C.SKIPPED] else "play")
            out.append(
                {
                    "listener_id": body["listener_id"],
                    "item_id": event[C.ITEM_ID],
                    "event": kind,
                    "ms_played": int(event[C.MS_PLAYED]),
                    "timestamp": event[C.TS].isoformat(),
                    "slot": answer.get("slot"),
                }
            )
        return out


async def _listener(
    client: httpx.AsyncClient,
    listeners: SimulatedListeners,
    report: TrafficReport,
    deadline: float,
    think_seconds: float,
    feedback: bool,
    stop: asyncio.Event,
) -> None:
    while time.perf_counter() < deadline and not stop.is_set():
        _, body = listeners.request()
        started = time.perf_counter()
        report.requests += 1
        try:
            response = await client.post("/recommend", json=body)
        except httpx.HTTPError:
            report.transport_errors += 1
            await asyncio.sleep(think_seconds)
            continue
        report.latencies_ms.append((time.perf_counter() - started) * 1000)
        status = str(response.status_code)
        report.statuses[status] = report.statuses.get(status, 0) + 1
        if response.is_success:
            report.ok += 1
            if feedback:
                await _send_feedback(client, listeners, body, response.json(), report)
        await asyncio.sleep(think_seconds * (0.5 + listeners.rng.random()))


async def _send_feedback(
    client: httpx.AsyncClient,
    listeners: SimulatedListeners,
    body: dict[str, Any],
    answer: dict[str, Any],
    report: TrafficReport,
) -> None:
    events = listeners.feedback(body, answer)
    for kind, count in Counter(e["event"] for e in events).items():
        report.outcomes[kind] = report.outcomes.get(kind, 0) + count
    if not events:
        return
    try:  # one call per listening session, as a client app sends it
        sent = await client.post("/feedback/batch", json={"events": events})
        ok = sent.is_success
    except httpx.HTTPError:
        ok = False
    report.feedback_sent += len(events) if ok else 0
    report.feedback_failed += 0 if ok else len(events)


async def drive(
    url: str,
    listeners: SimulatedListeners,
    seconds: float,
    concurrency: int = 20,
    think_seconds: float = 0.5,
    feedback: bool = True,
    timeout_seconds: float = 5.0,
) -> TrafficReport:
    """Run `concurrency` virtual listeners against `url` for `seconds` (or until SIGTERM);
    return what they saw."""
    report = TrafficReport()
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # SIGTERM: finish and report
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=timeout_seconds, limits=limits) as client:
        deadline = started + seconds
        await asyncio.gather(
            *(
                _listener(client, listeners, report, deadline, think_seconds, feedback, stop)
                for _ in range(concurrency)
            )
        )
    report.seconds = time.perf_counter() - started
    return report


def latest_world(settings: Settings) -> World:
    """The ground truth behind the newest simulated batch in the lake."""
    published = [m for m in lake.manifests(settings.lake_dir) if m["source"] == "simulator"]
    if not published:
        raise ValueError(
            f"no simulated batch in the lake at {settings.lake_dir}: run `crossfade run` or "
            "`crossfade data ingest` first"
        )
    return World.load(settings.truth_dir / published[-1]["batch_id"])


def main(argv: list[str] | None = None) -> int:
    """Command line: drive load, print a JSON summary (and write it with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="gateway or recommender base URL")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--listeners", type=int, default=20, help="concurrent listeners")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--think", type=float, default=0.5, help="mean pause between requests")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--no-feedback", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = parser.parse_args(argv)
    settings = load_settings(args.profile)
    listeners = SimulatedListeners(latest_world(settings), args.seed, k=args.k)
    report = asyncio.run(
        drive(
            args.url,
            listeners,
            args.seconds,
            concurrency=args.listeners,
            think_seconds=args.think,
            feedback=not args.no_feedback,
        )
    )
    summary = json.dumps(report.summary(), sort_keys=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
