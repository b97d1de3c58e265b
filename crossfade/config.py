"""Typed, strict settings: `configs/<profile>.yaml`, overridden by `CROSSFADE_*` env vars.

Precedence, highest first: keyword overrides passed to `load_settings`, environment variables
(`CROSSFADE_DATA_ROOT`, nested with `__`, e.g. `CROSSFADE_SIMULATOR__USERS=500`), the profile's
YAML file, then the defaults below. Unknown keys anywhere are an error, so a typo in a config
file fails loudly instead of being ignored.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

Profile = Literal["local", "services", "cluster"]
PROFILES: tuple[str, ...] = ("local", "services", "cluster")
ENV_PREFIX = "CROSSFADE_"
_yaml_file: ContextVar[Path | None] = ContextVar("crossfade_yaml_file", default=None)


class StrictModel(BaseModel):
    """Base for nested settings: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _days_before_today(days: int) -> date:
    """A window of `days` days ending yesterday (UTC), so features computed today are fresh."""
    return datetime.now(UTC).date() - timedelta(days=days)


class SimulatorSettings(StrictModel):
    """Size and shape of the simulated listening world."""

    users: int = Field(1_000, ge=1)
    days: int = Field(14, ge=1, le=366)
    start_date: date = Field(
        default_factory=lambda data: _days_before_today(data["days"]),
        description="first simulated day; 'auto' or omitted: the `days` days before today (UTC)",
    )
    artists: int = Field(400, ge=2)
    tracks: int = Field(4_000, ge=10)
    episodes: int = Field(300, ge=0)
    latent_dim: int = Field(16, ge=2, le=128)
    premium_share: float = Field(0.45, ge=0, le=1)
    minor_share: float = Field(0.12, ge=0, le=1)
    new_user_share: float = Field(0.10, ge=0, le=1, description="listeners who sign up in-window")
    new_release_share: float = Field(0.05, ge=0, le=1, description="items released in-window")
    bot_share: float = Field(0.02, ge=0, le=0.5)
    bot_ring_size: int = Field(6, ge=1)
    sessions_per_active_day: float = Field(1.6, gt=0)
    mean_session_length: float = Field(14.0, gt=1)

    @model_validator(mode="before")
    @classmethod
    def _auto_start(cls, data: Any) -> Any:
        # A world that ends yesterday has fresh features today; tests pin start_date.
        if isinstance(data, dict) and data.get("start_date") == "auto":
            data = {k: v for k, v in data.items() if k != "start_date"}
        return data


class ValidationSettings(StrictModel):
    """Thresholds of the ingestion gate."""

    max_future_skew_minutes: int = Field(5, ge=0)
    volume_min_ratio: float = Field(0.2, gt=0, description="vs. previous accepted batch")
    volume_max_ratio: float = Field(5.0, gt=1)
    sample_rows: int = Field(5, ge=1, le=50, description="offending rows shown per failure")
    build_data_docs: bool = True
    # Plausible event times: never before `earliest_event` (epoch-zero and default dates)
    # nor more than `max_event_age_days` before the data clock (newest data in lake or batch).
    earliest_event: date = date(1990, 1, 1)
    max_event_age_days: int = Field(11_000, ge=1)


class IngestSettings(StrictModel):
    """Retry policy of the ingest flow's tasks."""

    retries: int = Field(2, ge=0)
    retry_delay_seconds: float = Field(1.0, ge=0)


class FeatureSettings(StrictModel):
    """Feature store: Feast project, freshness budgets per view, the minimization policy."""

    project: str = Field("crossfade", pattern=r"^[a-z][a-z0-9_]*$")
    freshness_hours: dict[str, float] = Field(
        default_factory=lambda: {
            "user_listening_stats": 36.0,
            "item_stats": 36.0,
            "artist_stats": 36.0,
        },
        description="a served value older than this is stale and replaced by its default",
    )
    policy_file: str = Field("feature_policy.yaml", description="in the config folder")


class IndexSettings(StrictModel):
    """ANN retrieval: which backend and how it trades recall for speed."""

    backend: Literal["annoy", "exact", "voyager"] = "annoy"
    n_trees: int = Field(25, ge=1, description="annoy: more trees, better recall, bigger index")
    search_k: int = Field(-1, description="annoy: nodes inspected per query; -1 = n_trees * k")
    ef_construction: int = Field(200, ge=8, description="voyager: build-time beam width")
    ef_search: int = Field(200, ge=8, description="voyager: query-time beam width")
    m: int = Field(16, ge=4, description="voyager: graph degree")


class ALSSettings(StrictModel):
    """Collaborative filtering (implicit ALS) on confidence-weighted plays."""

    # Tuned on the default simulated world (docs/candidates.md has the grid).
    factors: int = Field(32, ge=2)
    regularization: float = Field(10.0, ge=0)
    iterations: int = Field(15, ge=1)
    alpha: float = Field(1.0, gt=0, description="confidence = 1 + alpha * log1p(weight)")


class ConfidenceWeights(StrictModel):
    """What each signal adds to a listener-item weight (documented in docs/candidates.md)."""

    play: float = 1.0
    completion: float = 1.0
    skip: float = -0.8
    replay: float = 1.0
    save: float = 3.0
    playlist_add: float = 3.0
    min_weight: float = Field(0.0, description="pairs at or below this are dropped")


class CandidateSettings(StrictModel):
    """Candidate generation: sources, quotas, filters and the ANN index."""

    als: ALSSettings = ALSSettings()
    weights: ConfidenceWeights = ConfidenceWeights()
    index: IndexSettings = IndexSettings()
    content_dim: int = Field(32, ge=4, description="text SVD components in content embeddings")
    profile_half_life_days: float = Field(
        7.0, gt=0, description="recency weight of content profile"
    )
    quotas: dict[str, int] = Field(
        default_factory=lambda: {
            "collaborative": 200,
            "content": 100,
            "cold_start": 50,
            "popular_in_market": 60,
            "fresh_releases": 40,
            "episodes": 30,
        },
        description="candidates per source before de-duplication",
    )
    total: int = Field(400, ge=1, description="candidates returned per request")
    exclude_heard_days: int = Field(7, ge=0, description="drop items played in the last N days")
    fresh_release_days: int = Field(14, ge=0)
    new_user_max_plays: int = Field(5, ge=0, description="listeners with fewer plays are new")
    cohort_blend: float = Field(
        0.5,
        ge=0,
        le=1,
        description="new listeners: weight of onboarding picks vs cohort popularity",
    )
    popularity_window_days: int = Field(28, ge=1)
    popularity_half_life_days: float = Field(7.0, gt=0)
    popularity_min_plays: float = Field(50.0, ge=0, description="prior that thin cohorts shrink to")
    cold_start_alpha: float = Field(1.0, gt=0, description="ridge alpha of content → CF mapping")
    model_name: str = "crossfade-candidates"


class SafetySettings(StrictModel):
    """Bot detection and bias audits: their thresholds live in a policy file."""

    policy_file: str = Field("safety.yaml", description="in the config folder")


class PrivacySettings(StrictModel):
    """Pseudonymization key, raw-event retention (docs/privacy.md: rotation and erasure)."""

    pseudonym_key: SecretStr | None = Field(
        None, description="HMAC key; set CROSSFADE_PRIVACY__PSEUDONYM_KEY, never a config file"
    )
    pseudonym_key_file: Path | None = Field(
        None,
        description="file holding the key instead; with neither, the local profile makes "
        "<data root>/secrets/pseudonym.key (mode 0600) and the others refuse to start",
    )
    pseudonymize_at_ingest: bool = Field(
        True, description="replace listener ids by keyed pseudonyms when a batch is ingested"
    )
    retention_days: int = Field(400, ge=1, description="raw event partitions older are dropped")
    erased_refresh_seconds: float = Field(
        2.0,
        gt=0,
        description="how often serving re-reads the erased-listeners set: an erased listener "
        "is answered non-personalized within this many seconds",
    )


class ServingSettings(StrictModel):
    """One recommender process: its slot, the model refs it loads, stage budgets, logs."""

    slot: Literal["blue", "green", "shadow"] = "blue"
    candidates_ref: str = Field("champion", description="MLflow alias or version number")
    ranker_ref: str = Field("champion", description="MLflow alias or version number")
    budgets_ms: dict[str, float] = Field(
        default_factory=lambda: {
            "features": 25.0,
            "candidates": 50.0,
            "item_features": 20.0,
            "ranker": 50.0,
            "rerank": 25.0,
        },
        description="per stage; past it the pipeline answers with the best result so far "
        "(idle p50 is ~11 ms in all: these catch a stage gone wrong, not a busy core)",
    )
    rerank_depth: int = Field(60, ge=1, description="top ranked candidates the re-ranker sees")
    compiled_ranker: bool = Field(
        True,
        description="score with the ranker's trees compiled to native code (lleaves), cached "
        "per model under <data root>/cache; false: LightGBM's own predict",
    )
    admin_token: SecretStr | None = Field(
        None, description="bearer token of /admin/*; set CROSSFADE_SERVING__ADMIN_TOKEN"
    )
    log_batch_size: int = Field(256, ge=1, description="request/feedback rows per write")
    log_flush_seconds: float = Field(1.0, gt=0, description="flush a partial batch this often")
    allow_fault_injection: bool = Field(
        False, description="drills only: accept POST /admin/faults (latency, errors, degenerate)"
    )
    # Limits of every HTTP endpoint of the stack, the gateway's and the recommenders' alike.
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="a request body larger than this is refused (413)"
    )
    body_timeout_seconds: float = Field(
        10.0, gt=0, description="a request body not fully received within this is refused (408)"
    )


class RolloutSettings(StrictModel):
    """Release controller: its store, guardrails file, notifications and admin tokens."""

    store_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite under the data root or postgres_dsn"
    )
    guardrails_file: str = Field("guardrails.yaml", description="in the config folder")
    notify_file: bool = Field(True, description="append incidents to <data root>/rollout/")
    notify_webhook: str | None = Field(None, description="POST incidents here (JSON)")
    notify_timeout_seconds: float = Field(3.0, gt=0)
    tokens_file: Path | None = Field(
        None, description="YAML of {actor, role, sha256}; default <data root>/rollout/tokens.yaml"
    )
    release_manager_token: SecretStr | None = None
    viewer_token: SecretStr | None = None


class GatewaySettings(StrictModel):
    """The listeners' entry point and `make serve`: loopback ports, timeouts, shadow mirroring."""

    host: str = Field("127.0.0.1", description="every process of the stack binds here")
    port: int = Field(8700, ge=0, le=65535, description="gateway; 0 = any free port")
    blue_port: int = Field(8701, ge=0, le=65535, description="0 = any free port")
    green_port: int = Field(8702, ge=0, le=65535, description="0 = any free port")
    shadow_port: int = Field(8703, ge=0, le=65535, description="0 = any free port")
    slot_timeout_ms: float = Field(
        300.0, gt=0, description="a live slot slower than this counts as failed"
    )
    last_resort_timeout_ms: float = Field(
        5000.0, gt=0, description="the last slot left to try (no fallback after it) gets this"
    )
    shadow_timeout_ms: float = Field(2000.0, gt=0, description="mirrored call to shadow")
    shadow_max_inflight: int = Field(
        8, ge=1, description="mirrored calls in flight; beyond it a mirror is dropped"
    )
    idle_shadow_share: float = Field(
        0.0, ge=0, le=1, description="mirrored share when no rollout sets one (shadow: challenger)"
    )
    state_refresh_seconds: float = Field(
        1.0, gt=0, description="the rollout state is re-read at most this often"
    )
    max_connections: int = Field(100, ge=1, description="pooled HTTP connections per slot")
    start_timeout_seconds: float = Field(
        180.0, gt=0, description="a process of the stack must be ready within this"
    )
    supervise_interval_seconds: float = Field(
        0.5, gt=0, description="`make serve` checks each process of the stack this often"
    )
    unready_grace_seconds: float = Field(
        15.0, gt=0, description="a running process not answering its probe this long is dead"
    )
    restart_backoff_seconds: float = Field(
        1.0, ge=0, description="wait before a restart; doubles with each recent restart"
    )
    max_restarts: int = Field(
        5, ge=1, description="restarts of one process within restart_window_seconds, then give up"
    )
    restart_window_seconds: float = Field(
        600.0, gt=0, description="the window max_restarts counts over"
    )


class DaskSettings(StrictModel):
    """Dask for the `cluster` profile: an existing scheduler, or a LocalCluster of this size."""

    scheduler_address: str | None = Field(
        None, description="e.g. tcp://scheduler:8786; empty: start a LocalCluster per run"
    )
    n_workers: int = Field(2, ge=1, description="LocalCluster worker processes")
    threads_per_worker: int = Field(1, ge=1, description="LocalCluster threads per worker")
    memory_limit: str = Field("auto", description="LocalCluster memory per worker, e.g. 4GiB")
    partitions_per_worker: int = Field(
        1, ge=1, description="ranker training partitions (whole query groups) per worker"
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_address(cls, data: Any) -> Any:
        # An empty address in YAML or env means "no cluster yet: start a local one".
        if isinstance(data, dict) and data.get("scheduler_address") == "":
            data = {**data, "scheduler_address": None}
        return data


class LifecycleSettings(StrictModel):
    """The main job: how new data arrives run after run and how a release is exercised."""

    holdback_days: int = Field(
        7,
        ge=0,
        description="simulated days held back from the first run for the next one: a week, "
        "so the second run is the weekly retrain on twice the history",
    )
    traffic_listeners: int = Field(12, ge=1, description="concurrent simulated listeners")
    traffic_think_seconds: float = Field(0.25, ge=0, description="pause between requests")
    keep_serving: bool = Field(True, description="leave the gateway running after the run")
    experiment: str = Field("discover_ranker", description="configs/experiments/<name>.yaml")
    release_candidates_alone: bool = Field(
        True,
        description="when the retrained ranker is refused by its gate but the retrained "
        "candidate model passed its own, release the new candidate model with the champion "
        "ranker (under the same guardrails) instead of stopping the run",
    )


class ServicesSettings(StrictModel):
    """Endpoints of external servers; None means the embedded default is used."""

    tracking_uri: str | None = None
    postgres_dsn: str | None = None
    redis_url: str | None = None
    prefect_api_url: str | None = None


class Settings(BaseSettings):
    """All of crossfade's configuration, validated once at start-up."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    profile: Profile = "local"
    config_dir: Path | None = None
    data_root: Path = Path(".crossfade")
    seed: int = 42
    simulator: SimulatorSettings = Field(
        default_factory=lambda: SimulatorSettings.model_validate({})
    )
    validation: ValidationSettings = ValidationSettings()
    ingest: IngestSettings = IngestSettings()
    features: FeatureSettings = FeatureSettings()
    candidates: CandidateSettings = CandidateSettings()
    services: ServicesSettings = ServicesSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    dask: DaskSettings = DaskSettings()
    rollout: RolloutSettings = RolloutSettings()
    serving: ServingSettings = ServingSettings()
    gateway: GatewaySettings = GatewaySettings()
    safety: SafetySettings = SafetySettings()
    privacy: PrivacySettings = PrivacySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources: overrides, then env, then the profile's YAML file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_file = _yaml_file.get()
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _absolute_data_root(self) -> Settings:
        object.__setattr__(self, "data_root", self.data_root.expanduser().resolve())
        return self

    # Every generated file lives under data_root; these are its well-known places.
    @property
    def lake_dir(self) -> Path:
        """Published, validated Parquet tables partitioned by date."""
        return self.data_root / "lake"

    @property
    def staging_dir(self) -> Path:
        """Batches waiting for validation."""
        return self.data_root / "staging"

    @property
    def quarantine_dir(self) -> Path:
        """Rejected batches, kept whole with their validation report."""
        return self.data_root / "quarantine"

    @property
    def reports_dir(self) -> Path:
        """Validation results, GX Data Docs and run reports."""
        return self.data_root / "reports"

    @property
    def prefect_log(self) -> Path:
        """Prefect's own log of CLI runs, kept off the console (the CLI prints a clean panel)."""
        return self.data_root / "prefect" / "crossfade-cli.log"

    @property
    def truth_dir(self) -> Path:
        """Simulator ground truth (true affinities, bot labels), apart from observable logs."""
        return self.data_root / "truth"

    @property
    def features_dir(self) -> Path:
        """Offline feature tables (Parquet) and the Feast registry and SQLite online store."""
        return self.data_root / "features"

    @property
    def cache_dir(self) -> Path:
        """Derived artefacts that can be rebuilt at any time (compiled ranker trees)."""
        return self.data_root / "cache"

    @property
    def config_path(self) -> Path:
        """The configs folder these settings were loaded from."""
        return self.config_dir or default_config_dir()

    @property
    def mlflow_artifact_dir(self) -> Path:
        """MLflow artifacts of every experiment, on every profile (never `./mlruns`)."""
        return self.data_root / "mlflow-artifacts"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the configured server, else SQLite under the data root."""
        return self.services.tracking_uri or f"sqlite:///{self.data_root / 'mlflow.db'}"


def default_config_dir() -> Path:
    """The repository's `configs/` folder (override with CROSSFADE_CONFIG_DIR)."""
    env = os.environ.get(f"{ENV_PREFIX}CONFIG_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "configs"


class SettingsError(ValueError):
    """The configuration is invalid; the message names the file and the offending keys."""


def _reject_unknown_env() -> None:
    """Fail on a CROSSFADE_* variable that names no setting (a typo would be ignored silently)."""
    known = {name.upper() for name in Settings.model_fields}
    unknown = sorted(
        key
        for key in os.environ
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].split("__")[0] not in known
    )
    if unknown:
        raise SettingsError(
            f"unknown environment variable(s) {', '.join(unknown)}; "
            f"settings are {', '.join(ENV_PREFIX + k for k in sorted(known))}"
        )


def load_settings(profile: str | None = None, **overrides: Any) -> Settings:
    """Load and validate the settings of a profile (default: CROSSFADE_PROFILE or `local`)."""
    name = profile or os.environ.get(f"{ENV_PREFIX}PROFILE") or "local"
    if name not in PROFILES:
        raise SettingsError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    _reject_unknown_env()
    path = default_config_dir() / f"{name}.yaml"
    if not path.is_file():
        raise SettingsError(f"profile {name!r} has no config file at {path}")
    token = _yaml_file.set(path)
    try:
        settings = Settings(profile=name, **overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid settings (profile {name!r}, {path}): {problems}") from None
    finally:
        _yaml_file.reset(token)
    owner_only(settings.data_root)
    return settings


OWNER_ONLY_UMASK = 0o077


def owner_only(data_root: Path) -> None:
    """Make everything this process writes owner-only, and shut an older data root away.

    The data root holds listening data, keys, tokens and the rollout store, so the process
    umask drops group and other bits for every writer at once (SQLite, Parquet, MLflow, logs):
    a crossfade process is a platform process, and this is its policy (docs/privacy.md says
    how a shared file system for workers of another user is set up). A data root left open by
    an older version gets mode 0700, which shuts away everything below it; its contents are
    not walked, so a data root set by mistake to a folder holding other files (a home
    directory) only loses group/other access to its top.
    """
    os.umask(OWNER_ONLY_UMASK)
    try:
        mode = data_root.stat().st_mode
    except OSError:
        return  # not made yet: whoever makes it does so under the umask
    if mode & OWNER_ONLY_UMASK:
        data_root.chmod(mode & 0o700)
