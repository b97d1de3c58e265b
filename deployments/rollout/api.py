"""The release actions as plain functions: the CLI and the gateway's admin HTTP API both call them.

Every call names its principal (actor + role). Changes are audited with their outcome by the
controller; refused attempts (role, illegal transition, conflict, registry error, missing
precondition) are audited here with the reason, through a per-client rate limit
(deployments/rollout/refusals.py). `http_status` maps each error to its HTTP code.

One transition at a time: every change is conditional on the state version the person saw
(`expected_version`, from `status`). A change without one is refused (PreconditionRequired,
HTTP 428); of several changes made on the same version exactly one wins, the others raise
ConflictError naming the state they lost to (HTTP 409). System actors (the controller, the
supervisor, the lifecycle) call the Controller directly and act on the current state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from crossfade.config import Settings
from deployments.rollout.auth import AuthError, Forbidden, Principal, ReservedActor, authorize
from deployments.rollout.controller import Controller, RegistryError, position_of
from deployments.rollout.guardrails import GuardrailsError
from deployments.rollout.machine import ACTIVE, IllegalTransition, Phase, describe_next
from deployments.rollout.refusals import RefusalAudit
from deployments.rollout.store import ConflictError, RolloutState


class PreconditionRequired(ValueError):
    """A change sent without the state version it is conditional on (HTTP 428)."""


PRECONDITION = (
    "every change must say which state it acts on: send the `state_version` of "
    '`GET /admin/release/status` as `expected_version` in the body or as `If-Match: "<version>"`'
    " (the CLI does this by itself, or takes --expect-version)"
)

T = TypeVar("T")

ERROR_STATUS: dict[type[Exception], int] = {
    AuthError: 401,
    Forbidden: 403,
    ConflictError: 409,
    IllegalTransition: 409,
    PreconditionRequired: 428,
    ReservedActor: 422,
    RegistryError: 422,
    GuardrailsError: 500,
}


def http_status(exc: Exception) -> int:
    """The HTTP status an admin API answers for a release error (500 when unknown)."""
    for kind, code in ERROR_STATUS.items():
        if isinstance(exc, kind):
            return code
    return 500


class ReleaseService:
    """status, start, promote, pause, resume, rollback, history for one set of settings."""

    def __init__(self, settings: Settings, controller: Controller | None = None) -> None:
        self.settings = settings
        self.controller = controller or Controller(settings)
        self.store = self.controller.store
        limits = self.controller.config.refusal_audit
        self.refusals = RefusalAudit(self.store, per_minute=limits.per_minute, burst=limits.burst)

    def refuse(
        self,
        client: str,
        *,
        actor: str,
        action: str,
        outcome: str,
        reason: str,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Audit one refused request of `client` (rate-limited; never raises). The state is
        read only for a row the bucket lets through: a suppressed flood costs no store read."""

        def where() -> dict[str, Any]:
            try:
                state = self.store.read_state()
            except Exception:  # the store is down: the refusal stands, its row may still go in
                return {"rollout_id": None, "from_phase": None, "to_phase": None}
            phase = state.phase
            return {"rollout_id": state.rollout_id, "from_phase": phase, "to_phase": phase}

        self.refusals.record(
            client, where, actor=actor, action=action, outcome=outcome, reason=reason,
            metrics=metrics,
        )  # fmt: skip

    def _guarded(
        self,
        principal: Principal,
        action: str,
        reason: str,
        run: Callable[[], T],
        *,
        change: bool = False,
        expected_version: int | None = None,
    ) -> T:
        """Authorize, check the precondition of a change, run, and audit a refusal with its
        reason (successes audit themselves)."""
        try:
            authorize(principal, action)
            if change and expected_version is None:
                raise PreconditionRequired(f"{action} refused: {PRECONDITION}")
            return run()
        except (
            Forbidden,
            IllegalTransition,
            ConflictError,
            RegistryError,
            PreconditionRequired,
        ) as exc:
            metrics: dict[str, Any] = {"expected_version": expected_version}
            if isinstance(exc, ConflictError):
                metrics["lost_to"] = exc.winner()
            outcome = {ConflictError: "conflict", PreconditionRequired: "precondition"}.get(
                type(exc), "refused"
            )
            self.refuse(
                principal.actor,
                actor=principal.actor,
                action=action,
                outcome=outcome,
                reason=f"{reason or '-'} | {type(exc).__name__}: {exc}",
                metrics=metrics,
            )
            raise

    # -- reads -----------------------------------------------------------------------------
    def status(self, principal: Principal) -> dict[str, Any]:
        """Slots, versions, split, shadow share, last window vs thresholds, next step and when."""
        return self._guarded(
            principal, "status", "", lambda: self.describe(self.store.read_state())
        )

    def describe(self, state: RolloutState) -> dict[str, Any]:
        """The status document of a state (no authorization: callers did that)."""
        ctl = self.controller
        pos = position_of(state)
        phase = Phase(state.phase)
        steps = list(ctl.plan.steps)
        out: dict[str, Any] = {
            "rollout_id": state.rollout_id,
            "phase": state.phase,
            "paused": state.paused,
            "pause_reason": state.pause_reason,
            "state_version": state.version,
            "slots": state.slots,
            "baseline": state.baseline,
            "candidate": state.candidate,
            "green_percent": state.green_percent,
            "shadow_share": state.shadow_share,
            "canary_steps": steps,
            "step": (f"{state.step_index + 1} of {len(steps)}" if phase == Phase.CANARY else None),
            "started_by": state.started_by,
            "started_at": state.started_at,
            "updated_at": state.updated_at,
            "updated_by": state.updated_by,
            "last_action": state.last_action,
            "controller": ctl.liveness(),
            "last_window": state.last_window,
            "next": describe_next(pos, ctl.plan),
            "next_evaluation_at": None,
            "windows_passed": state.windows_passed,
            "windows_needed": ctl.windows_needed(phase) if phase in ACTIVE else None,
            "window_seconds": ctl.config.window_seconds,
        }
        if phase in ACTIVE and not state.paused and state.window_start is not None:
            out["next_evaluation_at"] = state.window_start + ctl.config.window_seconds * (
                1 + state.inconclusive_windows
            )
        return out

    def history(self, principal: Principal, limit: int = 50) -> list[dict[str, Any]]:
        """The audit log, newest first."""
        return self._guarded(principal, "history", "", lambda: self.store.history(limit))

    def incidents(self, principal: Principal, limit: int = 20) -> list[dict[str, Any]]:
        """Incidents (rollbacks), newest first."""
        return self._guarded(principal, "history", "", lambda: self.store.incidents(limit))

    # -- changes ---------------------------------------------------------------------------
    def start(
        self,
        principal: Principal,
        candidates: str,
        ranker: str,
        reason: str = "",
        *,
        expected_version: int | None,
    ) -> dict[str, Any]:
        """Start a rollout of the given model refs (alias such as challenger, or version)."""
        return self._guarded(
            principal,
            "start",
            reason,
            lambda: self.describe(
                self.controller.start(
                    principal.actor, candidates, ranker, reason or "-", expected_version
                )
            ),
            change=True,
            expected_version=expected_version,
        )

    def promote(
        self,
        principal: Principal,
        reason: str = "",
        full: bool = False,
        *,
        expected_version: int | None,
    ) -> dict[str, Any]:
        """Approve the current step now; full skips straight to PROMOTED."""
        return self._guarded(
            principal,
            "promote",
            reason,
            lambda: self.describe(
                self.controller.promote(principal.actor, reason or "-", full, expected_version)
            ),
            change=True,
            expected_version=expected_version,
        )

    def pause(
        self, principal: Principal, reason: str = "", *, expected_version: int | None
    ) -> dict[str, Any]:
        """Hold the rollout at its current split."""
        return self._guarded(
            principal,
            "pause",
            reason,
            lambda: self.describe(
                self.controller.pause(principal.actor, reason or "-", expected_version)
            ),
            change=True,
            expected_version=expected_version,
        )

    def resume(
        self, principal: Principal, reason: str = "", *, expected_version: int | None
    ) -> dict[str, Any]:
        """Continue a paused rollout with a fresh window."""
        return self._guarded(
            principal,
            "resume",
            reason,
            lambda: self.describe(
                self.controller.resume(principal.actor, reason or "-", expected_version)
            ),
            change=True,
            expected_version=expected_version,
        )

    def rollback(
        self, principal: Principal, reason: str = "", *, expected_version: int | None
    ) -> dict[str, Any]:
        """All traffic to blue, aliases restored, incident recorded."""

        def run() -> dict[str, Any]:
            state, incident = self.controller.rollback(
                principal.actor, reason or "-", expected_version=expected_version
            )
            return {**self.describe(state), "incident_id": incident}

        return self._guarded(
            principal, "rollback", reason, run, change=True, expected_version=expected_version
        )
