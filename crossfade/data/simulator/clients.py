"""What a simulated listener's app sends with a request: device, platform, market, time zone.

Shared by the HTTP load generator (deployments/traffic.py) and the in-process experiment
policies, so that both ask the recommender the way a real client would.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crossfade.data import domains as D
from crossfade.data.simulator.world import World


def iana_zone(offset_minutes: int) -> str:
    """IANA name of a whole-hour UTC offset (`Etc/GMT-2` is two hours EAST of UTC)."""
    hours = round(offset_minutes / 60)
    return "Etc/UTC" if hours == 0 else f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"


def listener_context(world: World, user: int, at: datetime) -> dict[str, Any]:
    """The request context of listener `user` (index into the world's arrays) at `at`."""
    lis = world.listeners
    device = D.DEVICES[int(lis.primary_device[user])]
    os_code = lis.desktop_os[user] if device == "desktop" else lis.phone_os[user]
    return {
        "device": device,
        "platform": D.PLATFORMS[int(os_code)],
        "country": D.COUNTRIES[int(lis.country[user])],
        "timezone": iana_zone(int(lis.utc_offset[user])),
        "timestamp": at.isoformat(),
    }
