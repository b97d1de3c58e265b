"""The gateway's view of the rollout: split and shadow share, re-read at most every ~1 s.

The request path only reads `StateCache.current()` (a field read, no I/O); a background task
re-reads the rollout store. If the store cannot be read the last good view is kept, and once it
is older than `stale_after` seconds the gateway fails closed: every listener to blue (the live
model), no mirroring. A missing state (no rollout yet) means the same, plus the idle shadow share.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from deployments.gateway.routing import percent_to_basis_points, share_to_basis_points
from deployments.rollout.store import RolloutState

log = logging.getLogger(__name__)

IDLE_PHASES = frozenset({"IDLE"})


@dataclass(frozen=True)
class RouteTable:
    """What routing needs from the rollout state, in basis points."""

    green_bp: int = 0
    shadow_bp: int = 0
    phase: str = "IDLE"
    state_version: int = 0
    slots: dict[str, dict[str, str] | None] = field(default_factory=dict)
    read_at: float = 0.0  # monotonic seconds; 0 = never read


def route_table(state: RolloutState, idle_shadow_share: float, read_at: float) -> RouteTable:
    """Translate a rollout state into a route table (idle: everything to blue)."""
    idle = state.phase in IDLE_PHASES or state.version == 0
    shadow = idle_shadow_share if idle else state.shadow_share
    return RouteTable(
        green_bp=0 if idle else percent_to_basis_points(min(max(state.green_percent, 0.0), 100.0)),
        shadow_bp=share_to_basis_points(min(max(shadow, 0.0), 1.0)),
        phase=state.phase,
        state_version=state.version,
        slots=dict(state.slots),
        read_at=read_at,
    )


class StateCache:
    """Holds the latest route table; `run()` keeps it fresh from a (blocking) state reader."""

    def __init__(
        self,
        read_state: Callable[[], RolloutState],
        *,
        refresh_seconds: float,
        idle_shadow_share: float,
        stale_after: float | None = None,
    ) -> None:
        self._read_state = read_state
        self.refresh_seconds = refresh_seconds
        self.idle_shadow_share = idle_shadow_share
        self.stale_after = stale_after if stale_after is not None else 10 * refresh_seconds
        self._table = RouteTable(shadow_bp=share_to_basis_points(idle_shadow_share))
        self.read_errors = 0
        self.listeners: list[Callable[[RouteTable], None]] = []
        # Which assigned slots may take traffic yet (the reconciler's confirmations); None:
        # every assigned slot at once.
        self.confirmed: Callable[[str, RouteTable], bool] | None = None

    def current(self) -> RouteTable:
        """The route table to use now: the last good one, or all-blue once it is stale."""
        table = self._table
        if table.read_at and time.monotonic() - table.read_at > self.stale_after:
            return RouteTable(phase=table.phase, state_version=table.state_version, slots={})
        return table

    @property
    def loaded(self) -> bool:
        """Whether the state has been read at least once."""
        return self._table.read_at > 0

    async def refresh(self) -> RouteTable:
        """Read the store once (in a worker thread) and publish the new table."""
        try:
            state = await asyncio.to_thread(self._read_state)
        except Exception as exc:  # the store is down: keep the last view, count it
            self.read_errors += 1
            log.warning("rollout state unreadable, keeping the last view: %s", exc)
            return self.current()
        table = route_table(state, self.idle_shadow_share, time.monotonic())
        for listener in self.listeners:
            try:
                listener(table)
            except Exception:  # a listener's bug must not stop the refreshes
                log.exception("state listener %r failed", listener)
        self._table = self.gated(table)
        return self._table

    def gated(self, table: RouteTable) -> RouteTable:
        """`table` with no listener routed to green and nothing mirrored to shadow until that
        slot confirmed serving the versions the rollout assigns it: a canary or shadow window
        never judges the slot's previous model, nor a slot still busy loading."""
        if self.confirmed is None:
            return table
        changes: dict[str, int] = {}
        if table.green_bp and not self.confirmed("green", table):
            changes["green_bp"] = 0
        if table.shadow_bp and not self.confirmed("shadow", table):
            changes["shadow_bp"] = 0
        return replace(table, **changes) if changes else table

    async def run(self) -> None:
        """Refresh forever, every `refresh_seconds` (cancel the task to stop)."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_seconds)
