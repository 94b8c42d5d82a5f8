"""Where the reconciler's listing starts, given that WordPress lists posts by local time.

WordPress compares `modified_after` with `post_modified`, the site's local (wall-clock) time, not with
`modified_gmt`. Where the site's clock runs back (daylight saving time ending, a zone moving west), a change
made after the watermark can carry an earlier local time than the watermark's: Europe/Berlin on 2024-10-27,
01:10 UTC is 02:10 CET, before 00:50 UTC = 02:50 CEST. A listing that starts as far before the watermark as
the clock runs back finds such changes; what it lists again emits nothing (its state is not news).
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta, timezone, tzinfo

# Wider than any setback of a zone's clock (2 h at most: Antarctica/Troll every year): a change made longer
# than this after the watermark has a later local time whatever the clock did, so only setbacks this close
# to the watermark matter.
NEAR = timedelta(hours=3)
_STEP = timedelta(minutes=1)  # zones change their offset on whole minutes


def site_zone(timezone_string: object, gmt_offset: object) -> tzinfo | None:
    """The zone WordPress reads local times in: its `timezone_string` (e.g. "Europe/Berlin"), else the fixed
    `gmt_offset` in hours (a number or numeric string, "" meaning UTC); None when neither is usable."""
    if isinstance(timezone_string, str) and timezone_string:
        try:
            return zoneinfo.ZoneInfo(timezone_string)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            return None
    if gmt_offset is None or gmt_offset == "":
        return UTC
    if not isinstance(gmt_offset, str | int | float) or isinstance(gmt_offset, bool):
        return None
    try:
        return timezone(timedelta(hours=float(gmt_offset)))
    except (ValueError, OverflowError):  # not a number, or not an offset (24 h or more)
        return None


def clock_setback(zone: tzinfo, around: datetime) -> timedelta:
    """How far the zone's wall clock runs back within NEAR of `around` (zero for a fixed offset)."""
    setback, highest = timedelta(0), None
    instant = around - NEAR
    while instant <= around + NEAR:
        offset = instant.astimezone(zone).utcoffset() or timedelta(0)
        highest = offset if highest is None else max(highest, offset)
        setback = max(setback, highest - offset)
        instant += _STEP
    return setback


def listing_start(watermark: datetime, zone: tzinfo | None, *, unknown_zone_setback: timedelta) -> datetime:
    """The `modified_after` under which WordPress lists every post modified after `watermark` (UTC), however
    its local clock ran; `unknown_zone_setback` stands in for the setback of a zone we cannot read."""
    setback = clock_setback(zone, watermark) if zone is not None else unknown_zone_setback
    return watermark - setback
