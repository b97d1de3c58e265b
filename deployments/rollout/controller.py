"""The rollout controller: start, tick (evaluate a window, advance / hold / pause / roll back),
manual promote, pause, resume and rollback, each persisted and audited.

Traffic safety comes first: every action writes the new split to the store (compare-and-set)
before it touches MLflow, so a rollback moves listeners to blue even when the registry is down.
A rollback restores the MLflow aliases captured at start, records an incident and calls the
notification hooks; a failing hook or registry is recorded, never raised.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crossfade.config import Settings
from deployments.rollout.auth import CONTROLLER_ACTOR
from deployments.rollout.guardrails import (
    GuardrailsConfig,
    Verdict,
    WindowResult,
    evaluate_from_store,
    guardrails_path,
    load_guardrails,
)
from deployments.rollout.machine import (
    ACTIVE,
    Action,
    IllegalTransition,
    Phase,
    Plan,
    Position,
    apply,
    candidate_slot,
    split,
)
from deployments.rollout.store import (
    ConflictError,
    RolloutState,
    RolloutStore,
    conflict,
    rollout_dir,
)

log = logging.getLogger(__name__)

HEARTBEAT = "controller"  # the heartbeat row the controller writes and the gateway watches
LIVENESS_PAUSE = "liveness"  # pause_kind of a pause caused by a dead controller
MODEL_KEYS = ("candidates", "ranker")
SNAPSHOT_ALIASES = ("champion", "challenger", "previous_champion")
DEFAULT_TICK_SECONDS = 1.0  # `crossfade release watch`; also assumed for a heartbeat without one


class RegistryError(RuntimeError):
    """A model reference could not be resolved or an alias could not be moved."""


class ControllerDown(IllegalTransition):
    """A resume while the controller's heartbeat is stale (nothing would judge the windows)."""


class ModelRegistry:
    """The MLflow operations a release needs, on the two crossfade models."""

    def __init__(self, settings: Settings) -> None:
        from model_registry.ranker import MODEL_NAME as RANKER_MODEL
        from model_registry.registry import client

        self.names = {"candidates": settings.candidates.model_name, "ranker": RANKER_MODEL}
        self.client = client(settings.tracking_uri)

    def resolve(self, key: str, ref: str) -> str:
        """A version number for an alias or version ref of model `key`."""
        from model_registry.registry import version_by_alias

        name = self.names[key]
        if ref.isdigit():
            try:
                self.client.get_model_version(name, ref)
            except Exception:
                raise RegistryError(f"{name} has no version {ref}") from None
            return ref
        version = version_by_alias(self.client, name, ref)
        if version is None:
            raise RegistryError(f"{name} has no alias {ref!r}; give a version number or alias")
        return str(version.version)

    def snapshot(self) -> dict[str, dict[str, str | None]]:
        """Current versions of the aliases a release may move, per model key."""
        from model_registry.registry import version_by_alias

        out: dict[str, dict[str, str | None]] = {}
        for key, name in self.names.items():
            out[key] = {}
            for alias in SNAPSHOT_ALIASES:
                version = version_by_alias(self.client, name, alias)
                out[key][alias] = str(version.version) if version is not None else None
        return out

    def restore(self, snapshot: dict[str, dict[str, str | None]]) -> None:
        """Put every alias back where the snapshot had it (deleting aliases it did not have)."""
        for key, aliases in snapshot.items():
            name = self.names[key]
            for alias, version in aliases.items():
                if version is None:
                    with contextlib.suppress(Exception):  # the alias is already absent
                        self.client.delete_registered_model_alias(name, alias)
                else:
                    self.client.set_registered_model_alias(name, alias, version)

    def set_alias(self, key: str, alias: str, version: str) -> None:
        """Point an alias of model `key` at a version (champion keeps previous_champion)."""
        from model_registry.registry import promote

        promote(self.client, self.names[key], version, alias)

    def tag(self, key: str, version: str, tag: str, value: str) -> None:
        """Tag a model version (e.g. the rollout's outcome)."""
        self.client.set_model_version_tag(self.names[key], version, tag, value)


def changed_models(state: RolloutState) -> list[str]:
    """The models a rollout changes: a release may renew only the candidate model and keep
    the champion ranker, which must then neither become `challenger` nor carry the rollout's
    outcome tag."""
    return [k for k in MODEL_KEYS if state.candidate.get(k) != state.baseline.get(k)]


class Notifier:
    """Incident hooks: a JSONL file under the data root and/or a webhook; never raises."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def notify(self, payload: dict[str, Any]) -> list[str]:
        """Deliver the payload everywhere configured; returns one outcome line per hook."""
        outcomes: list[str] = []
        cfg = self.settings.rollout
        line = json.dumps(payload, sort_keys=True, default=str)
        if cfg.notify_file:
            path = rollout_dir(self.settings) / "notifications.jsonl"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a") as handle:
                    handle.write(line + "\n")
                outcomes.append(f"file: {path}")
            except OSError as exc:
                outcomes.append(f"file failed: {exc}")
        if cfg.notify_webhook:
            try:
                import httpx

                response = httpx.post(
                    cfg.notify_webhook,
                    content=line,
                    headers={"content-type": "application/json"},
                    timeout=cfg.notify_timeout_seconds,
                )
                outcomes.append(f"webhook: HTTP {response.status_code}")
            except Exception as exc:
                outcomes.append(f"webhook failed: {type(exc).__name__}: {exc}")
        return outcomes


@dataclass(frozen=True)
class TickOutcome:
    """What one tick did: held, advanced, paused or rolled back, and the window it judged."""

    action: str
    state: RolloutState
    window: WindowResult | None = None
    detail: str = ""


def plan_of(config: GuardrailsConfig) -> Plan:
    """The state machine's plan from the guardrails file."""
    return Plan(tuple(config.canary.steps), config.shadow.share)


def position_of(state: RolloutState) -> Position:
    """The machine position a stored state is at."""
    return Position(Phase(state.phase), state.step_index, state.paused)


class Controller:
    """Drives one rollout through its phases against the store, MLflow and the hooks."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: RolloutStore | None = None,
        config: GuardrailsConfig | None = None,
        registry_factory: Callable[[Settings], ModelRegistry] = ModelRegistry,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        tick_seconds: float = DEFAULT_TICK_SECONDS,
    ) -> None:
        """`tick_seconds` is the interval this controller promises to tick at (its heartbeat
        records it, and is judged stale against it)."""
        self.settings = settings
        self.tick_seconds = tick_seconds
        self.store = store or RolloutStore.from_settings(settings)
        self.config = config or load_guardrails(guardrails_path(settings))
        self.plan = plan_of(self.config)
        self._registry_factory = registry_factory
        self._registry: ModelRegistry | None = None
        self.notifier = notifier or Notifier(settings)
        self.clock = clock
        self.started_at = clock()

    @property
    def registry(self) -> ModelRegistry:
        """The MLflow glue, created on first use (status and tick never need MLflow)."""
        if self._registry is None:
            self._registry = self._registry_factory(self.settings)
        return self._registry

    # -- helpers ---------------------------------------------------------------------------
    def _moved(self, state: RolloutState, pos: Position, now: float, **extra: Any) -> RolloutState:
        """The state at a new machine position, with its split and slots."""
        green, shadow = split(pos, self.plan)
        phase = pos.phase
        slots: dict[str, dict[str, str] | None]
        if phase == Phase.SHADOW:
            # green loads the candidate now too (no listener yet), so the first canary step
            # starts on a warm, confirmed slot instead of a reload
            slots = {"blue": state.baseline, "green": state.candidate, "shadow": state.candidate}
        elif phase in (Phase.CANARY, Phase.SWITCH, Phase.BAKE):
            slots = {"blue": state.baseline, "green": state.candidate, "shadow": None}
        elif phase == Phase.PROMOTED:
            slots = {"blue": state.candidate, "green": None, "shadow": None}
        else:
            slots = {"blue": state.baseline, "green": None, "shadow": None}
        fields: dict[str, Any] = {
            "phase": phase.value,
            "step_index": pos.step_index,
            "paused": pos.paused,
            "green_percent": green,
            "shadow_share": shadow,
            "slots": slots,
            "pause_kind": None,
        }
        if phase != Phase(state.phase) or pos.step_index != state.step_index:
            fields.update(window_start=now, windows_passed=0, inconclusive_windows=0)
        if phase not in ACTIVE:
            fields["window_start"] = None
        fields.update(extra)
        return state.evolve(**fields)

    def windows_needed(self, phase: Phase) -> int:
        """Passing windows before the controller leaves a phase."""
        if phase == Phase.SHADOW:
            return self.config.shadow.windows
        if phase == Phase.BAKE:
            return self.config.bake.windows
        return self.config.canary.windows_per_step

    def _audit(
        self,
        actor: str,
        action: str,
        before: RolloutState,
        after: RolloutState | None,
        reason: str,
        outcome: str = "ok",
        metrics: dict[str, Any] | None = None,
    ) -> None:
        try:
            self.store.audit(
                actor=actor,
                action=action,
                outcome=outcome,
                reason=reason,
                rollout_id=(after or before).rollout_id,
                from_phase=before.phase,
                to_phase=after.phase if after else before.phase,
                metrics=metrics,
            )
        except Exception as exc:  # the action happened; losing its audit line must be loud
            log.error("audit write failed for %s by %s: %s", action, actor, exc)

    # -- actions ---------------------------------------------------------------------------
    def _read(self, expected_version: int | None) -> RolloutState:
        """The stored state; ConflictError naming it when it is not `expected_version`."""
        state = self.store.read_state()
        if expected_version is not None and state.version != expected_version:
            raise conflict(expected_version, state)
        return state

    def start(
        self,
        actor: str,
        candidates: str,
        ranker: str,
        reason: str,
        expected_version: int | None = None,
    ) -> RolloutState:
        """Begin a rollout of (candidates, ranker) refs against the current champions.

        Every action takes `expected_version`: given, it acts only on that stored state (the
        one the person saw) and raises ConflictError naming the newer state otherwise."""
        state = self._read(expected_version)
        pos = position_of(state)
        if pos.phase in ACTIVE:
            raise ConflictError(
                f"rollout {state.rollout_id} is already in {state.phase}; promote or roll it "
                "back before starting another"
            )
        apply(pos, Action.START, self.plan)
        registry = self.registry
        candidate = {"candidates": registry.resolve("candidates", candidates)}
        candidate["ranker"] = registry.resolve("ranker", ranker)
        baseline: dict[str, str] = {}
        for key in MODEL_KEYS:
            try:
                baseline[key] = registry.resolve(key, "champion")
            except RegistryError:
                raise RegistryError(
                    f"{registry.names[key]} has no champion to compare against; the first "
                    "model becomes champion through the training gate"
                ) from None
        if candidate == baseline:
            raise IllegalTransition(
                f"candidate {candidate} is already the champion; nothing to roll out"
            )
        now = self.clock()
        fresh = RolloutState(
            version=state.version,
            rollout_id=f"r{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-"
            f"{uuid.uuid4().hex[:6]}",
            baseline=baseline,
            candidate=candidate,
            aliases_before=registry.snapshot(),
            started_by=actor,
            started_at=now,
            phase=state.phase,
        )
        new = self.store.compare_and_set(
            state.version,
            self._moved(fresh, Position(Phase.SHADOW), now, window_start=now),
            actor=actor,
            action="start",
        )
        for key in changed_models(new):
            try:
                registry.set_alias(key, "challenger", candidate[key])
            except Exception as exc:
                log.warning("could not move challenger of %s: %s", key, exc)
        self._audit(actor, "start", state, new, reason, metrics={"candidate": candidate})
        return new

    def pause(self, actor: str, reason: str, expected_version: int | None = None) -> RolloutState:
        """Hold the rollout where it is (split unchanged, no evaluation) until resumed."""
        state = self._read(expected_version)
        pos = apply(position_of(state), Action.PAUSE, self.plan)
        new = self.store.compare_and_set(
            state.version,
            self._moved(state, pos, self.clock(), pause_reason=f"{actor}: {reason}"),
            actor=actor,
            action="pause",
        )
        self._audit(actor, "pause", state, new, reason)
        return new

    def resume(self, actor: str, reason: str, expected_version: int | None = None) -> RolloutState:
        """Continue a paused rollout with a fresh evaluation window.

        Refused (ControllerDown) while the controller's heartbeat is stale: nothing would judge
        the windows, and the gateway would pause it again at once."""
        state = self._read(expected_version)
        pos = apply(position_of(state), Action.RESUME, self.plan)
        now = self.clock()
        alive = self.liveness(now)
        if alive is not None and alive["stale"]:
            raise ControllerDown(
                f"cannot resume: the controller's last heartbeat is {alive['age_seconds']:.0f} s "
                f"old (limit {alive['stale_after_seconds']:g} s); start it "
                "(`crossfade release watch`, or restart `make serve`) and it resumes a rollout "
                "paused for its absence by itself, with a fresh window"
            )
        return self._resume(state, pos, now, actor, reason)

    def _resume(
        self, state: RolloutState, pos: Position, now: float, actor: str, reason: str
    ) -> RolloutState:
        new = self.store.compare_and_set(
            state.version,
            self._moved(
                state,
                pos,
                now,
                pause_reason=None,
                window_start=now,
                windows_passed=0,
                inconclusive_windows=0,
            ),
            actor=actor,
            action="resume",
        )
        self._audit(actor, "resume", state, new, reason)
        return new

    def promote(
        self, actor: str, reason: str, full: bool = False, expected_version: int | None = None
    ) -> RolloutState:
        """Approve the current step now (or, with full, skip to PROMOTED)."""
        state = self._read(expected_version)
        action = Action.PROMOTE_FULL if full else Action.PROMOTE
        pos = apply(position_of(state), action, self.plan)
        return self._advance_to(state, pos, actor, "promote_full" if full else "promote", reason)

    def _advance_to(
        self,
        state: RolloutState,
        pos: Position,
        actor: str,
        action: str,
        reason: str,
        window: WindowResult | None = None,
    ) -> RolloutState:
        now = self.clock()
        extra: dict[str, Any] = {"pause_reason": None}
        if window is not None:
            extra["last_window"] = window.to_dict()
        new = self.store.compare_and_set(
            state.version, self._moved(state, pos, now, **extra), actor=actor, action=action
        )
        metrics = window.to_dict() if window else None
        if pos.phase != Phase.PROMOTED:
            self._audit(actor, action, state, new, reason, metrics=metrics)
            return new
        try:
            for key in MODEL_KEYS:
                self.registry.set_alias(key, "champion", state.candidate[key])
        except Exception as exc:
            # Champion did not move: hold at BAKE, paused, for a person to decide.
            back = self._moved(
                new, Position(Phase.BAKE, 0, True), now,
                pause_reason=f"promotion failed: {exc}",
            )  # fmt: skip
            held = self.store.compare_and_set(new.version, back, actor=actor, action="hold")
            self._audit(
                actor, action, state, held, f"{reason}; promotion failed: {exc}", "error", metrics
            )
            raise RegistryError(f"promotion failed, rollout paused at BAKE: {exc}") from exc
        for key in changed_models(state):
            try:
                self.registry.tag(key, state.candidate[key], "crossfade.rollout", "promoted")
            except Exception as exc:
                log.warning("could not tag %s: %s", key, exc)
        self._audit(actor, action, state, new, reason, metrics=metrics)
        return new

    def rollback(
        self,
        actor: str,
        reason: str,
        window: WindowResult | None = None,
        expected_version: int | None = None,
    ) -> tuple[RolloutState, int]:
        """All traffic to blue, shadow off, aliases restored, incident + notification.

        Returns the new state and the incident id. Allowed from an active phase and from
        PROMOTED (the instant rollback: champion goes back to the version before the rollout).
        System actors (controller, supervisor) give no expected_version: they roll back
        whatever is current.
        """
        state = self._read(expected_version)
        pos = apply(position_of(state), Action.ROLLBACK, self.plan)
        now = self.clock()
        extra: dict[str, Any] = {"pause_reason": None}
        if window is not None:
            extra["last_window"] = window.to_dict()
        new = self.store.compare_and_set(
            state.version, self._moved(state, pos, now, **extra), actor=actor, action="rollback"
        )
        actions = ["split: 0 % green, shadow off"]
        try:
            self.registry.restore(state.aliases_before)
            actions.append(f"aliases restored: {state.aliases_before}")
        except Exception as exc:
            actions.append(f"alias restore FAILED ({type(exc).__name__}: {exc}); restore by hand")
        for key in changed_models(state):
            if key in state.candidate:
                try:
                    self.registry.tag(key, state.candidate[key], "crossfade.rollout", "rolled_back")
                except Exception as exc:
                    actions.append(f"tag {key} failed: {exc}")
        detail: dict[str, Any] = {
            "from_phase": state.phase,
            "step_index": state.step_index,
            "green_percent": state.green_percent,
            "candidate": state.candidate,
            "baseline": state.baseline,
            "actions": actions,
            "window": window.to_dict() if window else None,
        }
        incident = self._incident("rollout_rolled_back", state, actor, reason, detail)
        self._audit(actor, "rollback", state, new, reason, metrics=detail)
        return new, incident

    def _incident(
        self, event: str, state: RolloutState, actor: str, reason: str, detail: dict[str, Any]
    ) -> int:
        """Notify the hooks (their outcomes go into `detail`) and record an incident; returns
        its id (0 when the store refused it: logged, never raised)."""
        payload = {
            "event": event, "rollout_id": state.rollout_id, "actor": actor, "reason": reason,
            **detail,
        }  # fmt: skip
        detail["notified"] = self.notifier.notify(payload)
        try:
            return self.store.add_incident(
                rollout_id=state.rollout_id, actor=actor, reason=reason, detail=detail
            )
        except Exception as exc:
            log.error("incident write failed (%s) for %s: %s", event, state.rollout_id, exc)
            return 0

    # -- liveness --------------------------------------------------------------------------
    def stale_after(self, beat: dict[str, Any]) -> float:
        """The age at which heartbeat row `beat` is stale: judged against the tick interval
        its own controller promised (a 120 s schedule against 120 s, a 1 s loop against 1 s)."""
        tick = beat.get("tick_seconds") or DEFAULT_TICK_SECONDS
        return self.config.controller.stale_after(tick)

    def liveness(self, now: float | None = None) -> dict[str, Any] | None:
        """The controller's last heartbeat: age, stale or not, pid; None if it never beat."""
        now = self.clock() if now is None else now
        beat = self.store.heartbeat(HEARTBEAT)
        if beat is None:
            return None
        age = max(0.0, now - beat["at"])
        limit = self.stale_after(beat)
        return {
            "at": beat["at"],
            "age_seconds": age,
            "stale": age > limit,
            "stale_after_seconds": limit,
            "tick_seconds": beat.get("tick_seconds"),
            "pid": beat["pid"],
            "host": beat["host"],
            "started_at": beat["started_at"],
        }

    def watch_liveness(self, actor: str, now: float | None = None) -> TickOutcome | None:
        """The watcher's check (the gateway runs it): a stale heartbeat during an active,
        unpaused rollout pauses it (compare-and-set), records an incident and notifies.

        Returns the outcome when it paused, else None (alive, never seen, nothing active,
        already paused, or someone else acted first)."""
        now = self.clock() if now is None else now
        alive = self.liveness(now)
        if alive is None or not alive["stale"]:
            return None
        state = self.store.read_state()
        if Phase(state.phase) not in ACTIVE or state.paused:
            return None
        age, limit = alive["age_seconds"], alive["stale_after_seconds"]
        reason = (
            f"controller heartbeat is {age:.0f} s old (limit {limit:g} s, pid {alive['pid']}): "
            "no window is judged; paused until the controller is back"
        )
        pos = apply(position_of(state), Action.PAUSE, self.plan)
        moved = self._moved(
            state, pos, now, pause_reason=f"{actor}: {reason}", pause_kind=LIVENESS_PAUSE
        )
        try:
            new = self.store.compare_and_set(state.version, moved, actor=actor, action="pause")
        except ConflictError:
            return None  # another watcher or a person acted first
        detail: dict[str, Any] = {
            "phase": state.phase,
            "step_index": state.step_index,
            "green_percent": state.green_percent,
            "heartbeat": alive,
        }
        self._incident("controller_stale", state, actor, reason, detail)
        self._audit(actor, "pause", state, new, reason, metrics=detail)
        return TickOutcome("pause", new, detail=reason)

    def beat(self, now: float) -> dict[str, Any] | None:
        """Write this controller's heartbeat; returns the previous one (None if never)."""
        previous = self.store.heartbeat(HEARTBEAT)
        self.store.beat(HEARTBEAT, now, self.started_at, os.getpid(), self.tick_seconds)
        return previous

    def beating(self, stop: threading.Event) -> threading.Thread:
        """Start a daemon thread that beats every tick interval until `stop` is set, so a slow
        tick (MLflow import, webhook) never makes a live controller look dead."""

        def loop() -> None:
            while not stop.wait(self.tick_seconds):
                try:
                    self.store.beat(
                        HEARTBEAT, self.clock(), self.started_at, os.getpid(), self.tick_seconds
                    )
                except Exception as exc:  # the store is down: the next beat retries
                    log.warning("controller heartbeat failed: %s", exc)

        thread = threading.Thread(target=loop, name="controller-heartbeat", daemon=True)
        thread.start()
        return thread

    # -- the automatic loop ------------------------------------------------------------------
    def tick(self, now: float | None = None) -> TickOutcome:
        """Beat, then evaluate the window if it is due and advance, hold, pause or roll back.

        Never judges evidence older or longer than configured: a window spanning a gap in the
        heartbeat (the controller was down) is discarded and collected again, and a late tick
        judges only the last configured window length before `now`."""
        now = self.clock() if now is None else now
        previous = self.beat(now)
        state = self.store.read_state()
        phase = Phase(state.phase)
        if phase in ACTIVE and state.paused and state.pause_kind == LIVENESS_PAUSE:
            return self._back_alive(state, now)
        if phase not in ACTIVE or state.paused or state.window_start is None:
            return TickOutcome("idle" if phase not in ACTIVE else "paused", state)
        gap = now - previous["at"] if previous is not None else 0.0
        if previous is not None and gap > self.stale_after(previous) and state.window_start < now:
            return self._discard(
                state, now, f"the controller was down for {gap:.0f} s during this window"
            )
        length = self.config.window_seconds * (1 + state.inconclusive_windows)
        due = state.window_start + length
        if now < due:
            return TickOutcome("wait", state)
        start = max(state.window_start, now - length)
        window = evaluate_from_store(
            self.store, self.config, phase.value, candidate_slot(phase), start, now,
            green_percent=state.green_percent,
        )  # fmt: skip
        try:
            return self._act_on(state, window, now)
        except ConflictError:
            return TickOutcome("conflict", self.store.read_state(), window)

    def _discard(self, state: RolloutState, now: float, why: str) -> TickOutcome:
        """Drop the evidence collected so far in this window and start a fresh one at `now`."""
        reason = (
            f"stale evidence discarded: {why}; window of {now - (state.window_start or now):.0f}"
            f" s (configured {self.config.window_seconds:g} s) restarts now"
        )
        try:
            new = self.store.compare_and_set(
                state.version,
                state.evolve(window_start=now, inconclusive_windows=0),
                actor=CONTROLLER_ACTOR,
                action="discard",
            )
        except ConflictError:
            return TickOutcome("conflict", self.store.read_state())
        self._audit(CONTROLLER_ACTOR, "discard", state, new, reason)
        return TickOutcome("discard", new, detail=reason)

    def _back_alive(self, state: RolloutState, now: float) -> TickOutcome:
        """Resume a rollout paused for this controller's absence, with a fresh window."""
        pos = apply(position_of(state), Action.RESUME, self.plan)
        reason = "controller alive again; evidence from before the gap discarded, fresh window"
        try:
            new = self._resume(state, pos, now, CONTROLLER_ACTOR, reason)
        except ConflictError:
            return TickOutcome("conflict", self.store.read_state())
        return TickOutcome("resume", new, detail=reason)

    def _act_on(self, state: RolloutState, window: WindowResult, now: float) -> TickOutcome:
        verdict = window.verdict
        pos = position_of(state)
        if verdict == Verdict.BREACH:
            new, _ = self.rollback(
                CONTROLLER_ACTOR, f"guardrail breach: {window.summary()}", window
            )
            return TickOutcome("rollback", new, window)
        if verdict == Verdict.INCONCLUSIVE:
            if state.inconclusive_windows < self.config.inconclusive_grace_windows:
                new = self.store.compare_and_set(
                    state.version,
                    state.evolve(
                        inconclusive_windows=state.inconclusive_windows + 1,
                        last_window=window.to_dict(),
                    ),
                    actor=CONTROLLER_ACTOR,
                    action="extend",
                )
                return TickOutcome("extend", new, window)
            paused = apply(pos, Action.PAUSE, self.plan)
            reason = f"inconclusive window: {window.summary()}"
            new = self.store.compare_and_set(
                state.version,
                self._moved(
                    state,
                    paused,
                    now,
                    pause_reason=f"{CONTROLLER_ACTOR}: {reason}",
                    last_window=window.to_dict(),
                ),
                actor=CONTROLLER_ACTOR,
                action="pause",
            )
            self._audit(CONTROLLER_ACTOR, "pause", state, new, reason, metrics=window.to_dict())
            return TickOutcome("pause", new, window)
        passed = state.windows_passed + 1
        if passed < self.windows_needed(pos.phase):
            new = self.store.compare_and_set(
                state.version,
                state.evolve(
                    windows_passed=passed,
                    inconclusive_windows=0,
                    window_start=now,
                    last_window=window.to_dict(),
                ),
                actor=CONTROLLER_ACTOR,
                action="hold",
            )
            return TickOutcome("hold", new, window)
        target = apply(pos, Action.ADVANCE, self.plan)
        reason = f"{passed} passing window(s) in {state.phase}"
        new = self._advance_to(state, target, CONTROLLER_ACTOR, "advance", reason, window)
        return TickOutcome("advance", new, window)

    def run(self, stop: Callable[[], bool]) -> None:
        """Tick every `tick_seconds` until stop() is true (the controller process), beating
        from a separate thread meanwhile."""
        beats = threading.Event()
        self.beating(beats)
        try:
            while not stop():
                try:
                    self.tick()
                except Exception as exc:  # keep the loop alive; the next tick retries
                    log.error("controller tick failed: %s", exc)
                time.sleep(self.tick_seconds)
        finally:
            beats.set()
