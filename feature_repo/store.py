"""Open the Feast FeatureStore of a crossfade profile.

The profile's `feature_store.<profile>.yaml` is a template: crossfade fills in the data root,
project and Redis connection from its settings, so no path or address is written in the repo.
"""

from __future__ import annotations

from pathlib import Path
from string import Template
from urllib.parse import urlparse

import yaml
from feast import FeatureStore
from feast.repo_config import RepoConfig

from crossfade.config import Settings

REPO_DIR = Path(__file__).resolve().parent


def redis_connection_string(url: str) -> str:
    """Turn redis://host:port/db into Feast's `host:port,db=N` form."""
    parsed = urlparse(url)
    db = (parsed.path or "/0").lstrip("/") or "0"
    parts = [f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 6379}", f"db={db}"]
    if parsed.password:
        parts.append(f"password={parsed.password}")
    return ",".join(parts)


def render_config(settings: Settings) -> dict[str, object]:
    """The profile's feature_store.yaml with crossfade's values filled in."""
    template = REPO_DIR / f"feature_store.{settings.profile}.yaml"
    values = {
        "project": settings.features.project,
        "features_dir": str(settings.features_dir),
        "redis_connection": redis_connection_string(
            settings.services.redis_url or "redis://127.0.0.1:6379/0"
        ),
    }
    data = yaml.safe_load(Template(template.read_text()).substitute(values))
    assert isinstance(data, dict)
    return data


def open_store(settings: Settings) -> FeatureStore:
    """A FeatureStore for the active profile (creates the features folder if needed)."""
    settings.features_dir.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(repo_path=REPO_DIR, **render_config(settings))
    return FeatureStore(config=config)
