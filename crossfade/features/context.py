"""Request-context features, computed per request (Feast on-demand view and serving alike)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crossfade.data import domains as D


def request_context(inputs: pd.DataFrame) -> pd.DataFrame:
    """Local hour, day of week and weekend flag from the request time and the UTC offset.

    Expects columns `request_ts` (UTC timestamp), `utc_offset_minutes`, `device`, `platform`;
    unknown devices and platforms map to "unknown" so the ranker sees only domain values.
    """
    ts = pd.to_datetime(inputs["request_ts"], utc=True)
    offset = pd.to_timedelta(inputs["utc_offset_minutes"].fillna(0).astype(np.int64), unit="m")
    local = ts + offset
    out = pd.DataFrame(index=inputs.index)
    out["ctx_hour_local"] = local.dt.hour.astype(np.int64)
    out["ctx_day_of_week_local"] = local.dt.dayofweek.astype(np.int64)
    out["ctx_is_weekend"] = (local.dt.dayofweek >= 5).astype(np.int64)
    device = inputs["device"].where(inputs["device"].isin(D.DEVICES), D.UNKNOWN)
    platform = inputs["platform"].where(inputs["platform"].isin(D.PLATFORMS), D.UNKNOWN)
    out["ctx_device"] = device.astype(str)
    out["ctx_platform"] = platform.astype(str)
    return out
