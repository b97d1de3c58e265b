"""Item and user side information as one-hot features, for models that can use it.

Items: one column per tag (for the MovieLens files, the movie's genres) and one per release
decade. Users: one column per gender, occupation and age bucket. Values are 0/1; an unknown
value sets no column, so a dataset without side files gives empty frames and the models that
read them behave as if they had none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from crossfade import columns as C

if TYPE_CHECKING:  # importing the importers only for a type would load every format module
    from crossfade.data.importers.extras import Extras

USER_FIELDS: tuple[str, ...] = (C.GENDER, C.OCCUPATION, C.AGE_BUCKET)
# values that mean "not known" (ML-100K's occupation "none" is a value: no occupation)
UNKNOWN_VALUES = frozenset({"", "unknown", "nan", "<na>"})


@dataclass(frozen=True)
class SideInfo:
    """One-hot item features and user features, each a 0/1 float frame indexed by id (the
    ids of the interactions), one column per "field:value"."""

    items: pd.DataFrame = field(default_factory=pd.DataFrame)
    users: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def empty(self) -> bool:
        """True when there is no feature at all (plain models then)."""
        return self.items.shape[1] == 0 and self.users.shape[1] == 0


def _known(value: object) -> str | None:
    """`value` as text, or None when it is missing or says "unknown"."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return None if text.lower() in UNKNOWN_VALUES else text


def one_hot(values: pd.Series, name: str) -> pd.DataFrame:
    """0/1 columns "name:value", one per distinct known value, in sorted order; each entry
    of `values` may hold several space-separated values (tags) or None."""
    rows: list[int] = []
    labels: list[str] = []
    for n, value in enumerate(values.tolist()):
        text = _known(value)
        for part in dict.fromkeys(text.split() if text else ()):
            rows.append(n)
            labels.append(f"{name}:{part}")
    columns = sorted(set(labels))
    out = np.zeros((len(values), len(columns)))
    at = {c: j for j, c in enumerate(columns)}
    out[rows, [at[label] for label in labels]] = 1.0
    return pd.DataFrame(out, index=values.index, columns=columns)


def release_decades(dates: pd.Series) -> pd.Series:
    """The decade ("1990") of each release date, None when unknown."""
    years = pd.to_datetime(dates, errors="coerce").dt.year
    return years.map(lambda y: None if pd.isna(y) else str(int(y) // 10 * 10))


def item_features(items: pd.DataFrame) -> pd.DataFrame:
    """One-hot tags ("tag:comedy") and release decades ("decade:1990") of a side table."""
    parts = []
    if C.TAGS in items.columns:
        parts.append(one_hot(items[C.TAGS], "tag"))
    if C.RELEASE_DATE in items.columns:
        parts.append(one_hot(release_decades(items[C.RELEASE_DATE]), "decade"))
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=items.index)


def user_features(users: pd.DataFrame, fields: Sequence[str] = USER_FIELDS) -> pd.DataFrame:
    """One-hot gender, occupation and age bucket ("gender:F") of a user side table; values
    are single tokens, so spaces inside one are kept as "_"."""
    parts = [
        one_hot(users[f].map(lambda v: None if _known(v) is None else str(v).replace(" ", "_")), f)
        for f in fields
        if f in users.columns
    ]
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=users.index)


def side_info(extras: Extras) -> SideInfo:
    """The one-hot side information of an imported dataset's side tables."""
    return SideInfo(item_features(extras.items), user_features(extras.users))


def aligned(features: pd.DataFrame, ids: Sequence[str]) -> sp.csr_matrix:
    """[len(ids), n_features] sparse rows of `features` for `ids` in order, zero rows for
    ids without side information; columns that no id in `ids` has are dropped."""
    if features.shape[1] == 0 or not len(ids):
        return sp.csr_matrix((len(ids), 0))
    values = features.reindex(pd.Index(ids)).fillna(0.0).to_numpy(dtype=np.float64)
    values = values[:, values.any(axis=0)]
    return sp.csr_matrix(values)
