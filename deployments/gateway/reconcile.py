"""Keep each recommender slot serving the model versions the rollout state assigns it.

The rollout state's `slots` maps blue / green / shadow to {"candidates": v, "ranker": v} (None
when the state leaves the slot as it is). Whenever the gateway reads a state whose assignment
differs from what a slot last confirmed, it asks that slot to reload (`POST /admin/reload`,
off the request path); the recommender loads the models first and swaps atomically, so the
slot keeps answering throughout. A failed reload is retried on the next state read. A slot
whose latest answer (seen by the gateway) already carries the assigned versions is not asked.
`confirmed` tells the state cache which assigned slots may take traffic: none before it
serves what it is assigned (deployments/gateway/state.py, `StateCache.gated`).

A confirmation holds only for the assignment it answered: when a slot's assignment changes (a
new rollout, a rollback that idles it), what the slot confirmed before is forgotten, because
the process may have been restarted in between (the supervisor restarts a dead slot on the
store's refs of that moment) and serve other versions than it once confirmed. A recommender
asked to reload the versions it already serves answers at once.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from deployments.gateway.state import RouteTable

log = logging.getLogger(__name__)


class SlotReconciler:
    """Sends /admin/reload to slots whose assigned versions changed; one reload per slot at once."""

    def __init__(
        self,
        clients: dict[str, httpx.AsyncClient],
        *,
        admin_token: str | None,
        timeout_s: float,
        served: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.clients = clients
        self.served = served if served is not None else {}
        self.timeout_s = timeout_s
        self.headers = {"authorization": f"Bearer {admin_token}"} if admin_token else {}
        self.applied: dict[str, dict[str, str]] = {}
        self.failures: dict[str, str] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._assigned: dict[str, dict[str, str] | None] = {}

    def _follow(self, slot: str, table: RouteTable) -> None:
        """Forget what `slot` confirmed when its assignment changed since the last table."""
        wanted = table.slots.get(slot)
        current = _refs(wanted) if wanted else None
        if slot in self._assigned and self._assigned[slot] == current:
            return
        self._assigned[slot] = current
        self.applied.pop(slot, None)
        self.served.pop(slot, None)

    def confirmed(self, slot: str, table: RouteTable) -> bool:
        """Whether `slot` serves what `table` assigns it (always, when nothing is assigned)."""
        self._follow(slot, table)
        wanted = table.slots.get(slot)
        if not wanted:
            return True
        refs = _refs(wanted)
        return self.applied.get(slot) == refs or self.served.get(slot) == refs

    def on_state(self, table: RouteTable) -> None:
        """Start a reload for every slot whose assignment differs from what it confirmed."""
        for slot in sorted(set(self.clients) | set(table.slots)):
            self._follow(slot, table)
            wanted = table.slots.get(slot)
            if slot not in self.clients or not wanted:
                continue
            refs = _refs(wanted)
            if self.applied.get(slot) == refs:
                continue
            if self.served.get(slot) == refs:  # its answers already show these versions
                self.applied[slot] = refs
                continue
            task = self._running.get(slot)
            if task is not None and not task.done():
                continue  # one reload per slot at a time; the next state read retries
            self._running[slot] = asyncio.get_running_loop().create_task(self._reload(slot, refs))

    async def _reload(self, slot: str, refs: dict[str, str]) -> None:
        try:
            response = await self.clients[slot].post(
                "/admin/reload", json=refs, headers=self.headers, timeout=self.timeout_s
            )
        except (httpx.HTTPError, OSError) as exc:
            self.failures[slot] = f"{type(exc).__name__}: {exc}"
            log.warning("reload of slot %s to %s failed: %s", slot, refs, exc)
            return
        if response.status_code >= 300:
            self.failures[slot] = f"HTTP {response.status_code}: {response.text[:300]}"
            log.warning("slot %s refused reload to %s: %s", slot, refs, self.failures[slot])
            return
        self.applied[slot] = refs
        self.failures.pop(slot, None)
        log.info("slot %s now serves %s", slot, refs)

    async def wait(self, timeout: float) -> None:
        """Wait for reloads in flight (tests, shutdown)."""
        running = [t for t in self._running.values() if not t.done()]
        if running:
            await asyncio.wait(running, timeout=timeout)


def _refs(assigned: dict[str, str]) -> dict[str, str]:
    return {"candidates": str(assigned["candidates"]), "ranker": str(assigned["ranker"])}
