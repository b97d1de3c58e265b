"""Bot flags before training: score every account in the lake, store the flags, and report.

Training, popularity statistics and feature tables then read the lake without the flagged
accounts (`crossfade.safety.bots.human_events`), so a stream farm inflates no chart and
teaches no model.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from crossfade import columns as C
from crossfade.config import load_settings
from crossfade.data import lake
from crossfade.log import get_logger
from crossfade.safety.bots import FLAGGED, REASONS, SCORE, detect_bots, write_flags
from crossfade.safety.paths import bot_flags_dir, safety_policy

log = get_logger("flows.bots")
SHOWN = 20


@flow(name="flag-bots")
def flag_bots_flow(profile: str | None = None) -> dict[str, Any]:
    """Detect stream-farm accounts in the lake's events and store the flags."""
    settings = load_settings(profile)
    events = lake.read_lake_table(settings.lake_dir, "events").to_pandas()
    flags = detect_bots(events, safety_policy(settings).bots, settings.seed)
    path = write_flags(flags, bot_flags_dir(settings))
    flagged = flags[flags[FLAGGED].astype(bool)]
    accounts = int(flags[C.USER_ID].nunique()) if len(flags) else 0
    share = len(flagged) / accounts if accounts else 0.0
    create_markdown_artifact(
        f"# Bot flags\n\n{len(flagged):,} of {accounts:,} accounts flagged ({share:.1%}); "
        f"their plays are excluded from training, popularity and creator counts.\n\n"
        f"Flags: `{path}`\n",
        key="bot-flags",
    )
    if len(flagged):
        create_table_artifact(
            [
                {"score": int(row[SCORE]), "reasons": row[REASONS]}
                for _, row in flagged.head(SHOWN).iterrows()
            ],
            key="bot-flag-reasons",
        )  # reasons only: account ids stay out of artifacts
    log.info("bots flagged", extra={"flagged": len(flagged), "accounts": accounts})
    return {"flagged": len(flagged), "accounts": accounts, "share": share, "path": str(path)}
