"""The rollout store: current state, audit log, incidents and gateway observations (SQLAlchemy).

SQLite under the data root on `local`, PostgreSQL (settings.services.postgres_dsn) on `services`;
`settings.rollout.store_url` overrides both. Tables are created idempotently on first use.
The single state row carries a `version` column: every write is a compare-and-set on it, so two
concurrent actions cannot both win (the loser gets ConflictError).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from crossfade.config import Settings

STATE_ROW_ID = 1

metadata = MetaData()

state_table = Table(
    "rollout_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("rollout_id", String(64), nullable=True),
    Column("phase", String(16), nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("green_percent", Float, nullable=False),
    Column("shadow_share", Float, nullable=False),
    Column("window_start", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    Column("body", Text, nullable=False),
)

audit_table = Table(
    "rollout_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("rollout_id", String(64), nullable=True),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("from_phase", String(16), nullable=True),
    Column("to_phase", String(16), nullable=True),
    Column("reason", Text, nullable=False),
    Column("metrics", Text, nullable=False),
    Index("ix_rollout_audit_at", "at"),
)

incident_table = Table(
    "rollout_incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("rollout_id", String(64), nullable=True),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
)

observation_table = Table(
    "rollout_observations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("kind", String(8), nullable=False),  # request | pair | feedback
    Column("slot", String(16), nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("error", Boolean, nullable=True),
    Column("fallback", Boolean, nullable=True),
    Column("items", Text, nullable=True),
    Column("overlap", Float, nullable=True),
    Column("rank_corr", Float, nullable=True),
    Column("score_drift", Float, nullable=True),
    Column("event", String(16), nullable=True),
    Index("ix_rollout_observations_at", "at"),
)

heartbeat_table = Table(
    "rollout_heartbeats",
    metadata,
    Column("name", String(32), primary_key=True),  # "controller"
    Column("at", Float, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("pid", Integer, nullable=True),
    Column("host", String(128), nullable=True),
    # the tick interval the controller promised; its heartbeat is judged against this
    Column("tick_seconds", Float, nullable=True),
)

OBSERVATION_COLUMNS = tuple(c.name for c in observation_table.columns if c.name != "id")


class ConflictError(RuntimeError):
    """Another action changed the rollout first; re-read the status and decide again.

    `current` is the state that won (None when it could not be read), `expected` the version
    the losing action was conditional on."""

    def __init__(
        self, message: str, current: RolloutState | None = None, expected: int | None = None
    ) -> None:
        super().__init__(message)
        self.current = current
        self.expected = expected

    def winner(self) -> dict[str, Any] | None:
        """The state this action lost to: phase, step, version, who moved it and how."""
        if self.current is None:
            return None
        return describe_position(self.current)


def describe_position(state: RolloutState) -> dict[str, Any]:
    """Phase, step, version and who last moved a state (conflict replies, CLI lines)."""
    return {
        "phase": state.phase,
        "step_index": state.step_index,
        "paused": state.paused,
        "green_percent": state.green_percent,
        "version": state.version,
        "updated_by": state.updated_by,
        "last_action": state.last_action,
        "updated_at": state.updated_at,
    }


def position_line(state: RolloutState) -> str:
    """One line naming a state: "CANARY step 2 (25 % green), version 7, by alice (promote)"."""
    where = state.phase
    if state.phase == "CANARY":
        where += f" step {state.step_index + 1} ({state.green_percent:g} % green)"
    if state.paused:
        where += ", paused"
    who = f", by {state.updated_by} ({state.last_action})" if state.updated_by else ""
    return f"{where}, version {state.version}{who}"


@dataclass(frozen=True)
class RolloutState:
    """The current rollout as persisted: phase, split, slots and what a rollback restores.

    slots maps blue / green / shadow to the model versions that slot must serve
    ({"candidates": "7", "ranker": "3"}) or None when the slot is idle; the gateway and the
    recommenders reconcile against it. aliases_before is the MLflow alias snapshot taken at
    start, restored by a rollback.
    """

    version: int = 0
    rollout_id: str | None = None
    phase: str = "IDLE"
    paused: bool = False
    step_index: int = 0
    green_percent: float = 0.0
    shadow_share: float = 0.0
    window_start: float | None = None
    updated_at: float = 0.0
    slots: dict[str, dict[str, str] | None] = field(default_factory=dict)
    baseline: dict[str, str] = field(default_factory=dict)
    candidate: dict[str, str] = field(default_factory=dict)
    aliases_before: dict[str, dict[str, str | None]] = field(default_factory=dict)
    windows_passed: int = 0
    inconclusive_windows: int = 0
    pause_reason: str | None = None
    last_window: dict[str, Any] | None = None
    started_by: str | None = None
    started_at: float | None = None
    updated_by: str | None = None  # who made the last change (conflict replies name them)
    last_action: str | None = None
    pause_kind: str | None = None  # "liveness" when the controller's death paused it

    def evolve(self, **changes: Any) -> RolloutState:
        """A copy with some fields changed (the version is bumped by the store, not here)."""
        return replace(self, **changes)

    def body(self) -> dict[str, Any]:
        """The fields kept in the JSON body column."""
        data = asdict(self)
        for key in _ROW_FIELDS:
            data.pop(key, None)
        return data

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-serializable (status output, the gateway's admin API)."""
        return asdict(self)


_ROW_FIELDS = (
    "version",
    "rollout_id",
    "phase",
    "paused",
    "step_index",
    "green_percent",
    "shadow_share",
    "window_start",
    "updated_at",
)


def default_url(settings: Settings) -> str:
    """The store's SQLAlchemy URL for these settings (see the module docstring)."""
    if settings.rollout.store_url:
        return settings.rollout.store_url
    dsn = settings.services.postgres_dsn
    if settings.profile != "local" and dsn:
        if dsn.startswith("postgresql://") or dsn.startswith("postgres://"):
            dsn = "postgresql+psycopg://" + dsn.split("://", 1)[1]
        return dsn
    return f"sqlite:///{rollout_dir(settings) / 'rollout.db'}"


def rollout_dir(settings: Settings) -> Path:
    """Files of the release controller: SQLite store, notifications, tokens."""
    return settings.data_root / "rollout"


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def engine_for(url: str) -> Engine:
    """One engine per URL per process, tables created on first use."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        if url.startswith("sqlite"):
            Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        for attempt in range(3):
            try:
                metadata.create_all(engine, checkfirst=True)
                _add_missing_columns(engine)
                break
            except (IntegrityError, ProgrammingError, OperationalError):
                # Two processes creating the same tables at once: the loser retries.
                if attempt == 2:
                    raise
                time.sleep(0.2)
        _engines[url] = engine
        return engine


def _add_missing_columns(engine: Engine) -> None:
    """Add the heartbeat's tick_seconds to a store created before it existed (NULL = unknown)."""
    from sqlalchemy import inspect, text

    columns = {c["name"] for c in inspect(engine).get_columns(heartbeat_table.name)}
    if "tick_seconds" not in columns:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {heartbeat_table.name} ADD COLUMN tick_seconds FLOAT"))


def conflict(expected_version: int, current: RolloutState) -> ConflictError:
    """The ConflictError of an action conditional on `expected_version` that lost to `current`."""
    return ConflictError(
        f"the rollout changed before this action (expected state version {expected_version}, "
        f"now {position_line(current)}); check `crossfade release status` and retry if the "
        "action still makes sense",
        current,
        expected_version,
    )


def _host() -> str:
    import socket

    return socket.gethostname()[:128]


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


class RolloutStore:
    """Reads and writes the rollout tables; every state write is a compare-and-set."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)

    @classmethod
    def from_settings(cls, settings: Settings) -> RolloutStore:
        """The store the settings point at."""
        return cls(default_url(settings))

    # -- state -----------------------------------------------------------------------------
    def read_state(self) -> RolloutState:
        """The current state; an IDLE state of version 0 before the first rollout."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(state_table).where(state_table.c.id == STATE_ROW_ID))
                .mappings()
                .first()
            )
        if row is None:
            return RolloutState()
        body = _loads(row["body"]) or {}
        fields = {key: row[key] for key in _ROW_FIELDS}
        fields["paused"] = bool(fields["paused"])
        return RolloutState(**fields, **body)

    def compare_and_set(
        self,
        expected_version: int,
        new: RolloutState,
        *,
        actor: str | None = None,
        action: str | None = None,
    ) -> RolloutState:
        """Write `new` iff the stored version is still `expected_version`; else ConflictError.

        `actor` and `action` are stamped on the state (updated_by, last_action) when given."""
        stamp: dict[str, Any] = {"version": expected_version + 1, "updated_at": time.time()}
        if actor is not None:
            stamp.update(updated_by=actor[:128], last_action=action)
        stored = new.evolve(**stamp)
        values = {key: getattr(stored, key) for key in _ROW_FIELDS}
        values["body"] = json.dumps(stored.body(), sort_keys=True)
        with self.engine.begin() as conn:
            if expected_version == 0:
                try:
                    conn.execute(insert(state_table).values(id=STATE_ROW_ID, **values))
                except IntegrityError:
                    raise self._conflict(expected_version) from None
                return stored
            result = conn.execute(
                update(state_table)
                .where(state_table.c.id == STATE_ROW_ID)
                .where(state_table.c.version == expected_version)
                .values(**values)
            )
            if result.rowcount != 1:
                raise self._conflict(expected_version)
        return stored

    def _conflict(self, expected_version: int) -> ConflictError:
        return conflict(expected_version, self.read_state())

    # -- controller liveness ---------------------------------------------------------------
    def beat(
        self,
        name: str,
        at: float,
        started_at: float,
        pid: int | None = None,
        tick_seconds: float | None = None,
    ) -> None:
        """Record that `name` (the controller, ticking every `tick_seconds`) is alive at `at`
        (an upsert of one row)."""
        values = {
            "at": at, "started_at": started_at, "pid": pid, "host": _host(),
            "tick_seconds": tick_seconds,
        }  # fmt: skip
        where = update(heartbeat_table).where(heartbeat_table.c.name == name).values(**values)
        with self.engine.begin() as conn:
            if conn.execute(where).rowcount == 1:
                return
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(heartbeat_table).values(name=name, **values))
        except IntegrityError:  # another process inserted it first: update instead
            with self.engine.begin() as conn:
                conn.execute(where)

    def heartbeat(self, name: str) -> dict[str, Any] | None:
        """The last heartbeat of `name` ({at, started_at, pid, host, tick_seconds}), None if
        never seen."""
        query = select(heartbeat_table).where(heartbeat_table.c.name == name)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None

    # -- audit and incidents ---------------------------------------------------------------
    def audit(
        self,
        *,
        actor: str,
        action: str,
        outcome: str,
        reason: str,
        rollout_id: str | None = None,
        from_phase: str | None = None,
        to_phase: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Append one audit entry: who did what, to which phase, why, with which numbers."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(audit_table).values(
                    at=time.time(),
                    rollout_id=rollout_id,
                    actor=actor[:128],
                    action=action,
                    outcome=outcome,
                    from_phase=from_phase,
                    to_phase=to_phase,
                    reason=reason,
                    metrics=json.dumps(metrics or {}, sort_keys=True, default=str),
                )
            )

    def history(self, limit: int = 50, rollout_id: str | None = None) -> list[dict[str, Any]]:
        """Audit entries, newest first."""
        query = select(audit_table).order_by(audit_table.c.id.desc()).limit(limit)
        if rollout_id:
            query = query.where(audit_table.c.rollout_id == rollout_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{**row, "metrics": _loads(row["metrics"]) or {}} for row in rows]

    def add_incident(
        self, *, rollout_id: str | None, actor: str, reason: str, detail: dict[str, Any]
    ) -> int:
        """Record an incident (an automatic or manual rollback); returns its id."""
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(incident_table).values(
                    at=time.time(),
                    rollout_id=rollout_id,
                    actor=actor[:128],
                    reason=reason,
                    detail=json.dumps(detail, sort_keys=True, default=str),
                )
            )
            key = result.inserted_primary_key
        return int(key[0]) if key else 0

    def incidents(self, limit: int = 20) -> list[dict[str, Any]]:
        """Incidents, newest first."""
        query = select(incident_table).order_by(incident_table.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{**row, "detail": _loads(row["detail"]) or {}} for row in rows]

    # -- observations ----------------------------------------------------------------------
    def insert_observations(self, rows: list[dict[str, Any]]) -> None:
        """Insert a batch of observation rows (one statement, executemany)."""
        if not rows:
            return
        full = [{name: row.get(name) for name in OBSERVATION_COLUMNS} for row in rows]
        with self.engine.begin() as conn:
            conn.execute(insert(observation_table), full)

    def observations(self, start: float, end: float) -> list[dict[str, Any]]:
        """Observation rows with start <= at < end, items decoded."""
        query = (
            select(observation_table)
            .where(observation_table.c.at >= start)
            .where(observation_table.c.at < end)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{**row, "items": _loads(row["items"])} for row in rows]
