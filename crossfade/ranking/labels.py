"""The label policy: from what followed an impression to a graded label, per tier.

Grades and per-tier gains live in `configs/labels.yaml`. The grade is the strongest signal
the listener gave (save > repeat > complete > partial > skip); the gains tell LambdaRank how
much each grade is worth for a tier, so one code path serves both tiers' objectives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from crossfade import columns as C
from crossfade.data import domains as D

GRADE_NAMES = ("skip", "partial", "complete", "repeat", "save")
LABEL = "label"


class LabelPolicyError(ValueError):
    """The label policy file is invalid; the message names the file and the problem."""


class LabelPolicy(BaseModel):
    """Grades per outcome and LambdaRank gains per tier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grades: dict[str, int]
    gains: dict[str, list[float]]

    @model_validator(mode="after")
    def _consistent(self) -> LabelPolicy:
        if set(self.grades) != set(GRADE_NAMES):
            raise ValueError(f"grades must name exactly {', '.join(GRADE_NAMES)}")
        order = [self.grades[name] for name in GRADE_NAMES]
        if order != sorted(order) or len(set(order)) != len(order) or order[0] != 0:
            raise ValueError("grades must start at 0 and increase from skip to save")
        if max(order) > 30:
            raise ValueError("grades above 30 need a label_gain longer than LightGBM's default")
        if set(self.gains) != set(D.TIERS):
            raise ValueError(f"gains are needed for exactly the tiers {', '.join(D.TIERS)}")
        for tier, gains in self.gains.items():
            if len(gains) != max(order) + 1 or gains != sorted(gains):
                raise ValueError(
                    f"gains of {tier} must list {max(order) + 1} non-decreasing values"
                )
        return self

    def grade(self, events: pd.DataFrame) -> np.ndarray:
        """Grade of each event row (the strongest signal it carries)."""
        g = self.grades
        played_long = events[C.MS_PLAYED].to_numpy() >= D.STREAM_THRESHOLD_MS
        skipped = events[C.SKIPPED].to_numpy(dtype=bool) | ~played_long
        complete = events[C.REASON_END].to_numpy() == "trackdone"
        out = np.where(skipped, g["skip"], np.where(complete, g["complete"], g["partial"]))
        out = np.where(
            events[C.REPLAY].to_numpy(dtype=bool) & ~skipped, np.maximum(out, g["repeat"]), out
        )
        saved = events[C.SAVED].to_numpy(dtype=bool) | events[C.ADDED_TO_PLAYLIST].to_numpy(
            dtype=bool
        )
        return np.where(saved, g["save"], out).astype(np.int32)

    def label_gain(self, tier: str) -> list[float]:
        """LightGBM `label_gain` of a tier (gain per grade)."""
        return list(self.gains[tier])


def load_label_policy(path: Path) -> LabelPolicy:
    """Read and validate the label policy, with an error naming the file."""
    try:
        return LabelPolicy.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise LabelPolicyError(f"invalid label policy {path}: {exc}") from None
