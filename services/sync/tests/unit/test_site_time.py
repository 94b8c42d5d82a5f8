"""Where a reconciliation pass starts listing, given that WordPress compares `modified_after` with local time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest

from sync.domain.site_time import clock_setback, listing_start, site_zone

UNKNOWN_ZONE_SETBACK = timedelta(hours=2)


def local(instant: datetime, zone: tzinfo) -> datetime:
    """`post_modified` as WordPress stores it for a change at `instant`: the site's wall-clock time."""
    return instant.astimezone(zone).replace(tzinfo=None)


@pytest.mark.parametrize(
    ("zone", "clocks_go_back_at"),
    [
        ("Europe/Berlin", datetime(2024, 10, 27, 1, 0, tzinfo=UTC)),  # 03:00 CEST -> 02:00 CET
        ("America/New_York", datetime(2024, 11, 3, 6, 0, tzinfo=UTC)),  # 02:00 EDT -> 01:00 EST
        ("Australia/Lord_Howe", datetime(2024, 4, 6, 15, 0, tzinfo=UTC)),  # back 30 minutes
        ("Antarctica/Troll", datetime(2024, 10, 27, 1, 0, tzinfo=UTC)),  # back 2 hours
    ],
)
def test_every_change_after_the_watermark_is_listed_however_the_clock_went_back(
    zone: str, clocks_go_back_at: datetime
) -> None:
    site = ZoneInfo(zone)
    for watermark in (clocks_go_back_at + timedelta(minutes=m) for m in range(-240, 241, 7)):
        start = local(listing_start(watermark, site, unknown_zone_setback=UNKNOWN_ZONE_SETBACK), site)
        changes = (watermark + timedelta(seconds=s) for s in range(1, 6 * 3600, 59))

        skipped = [change for change in changes if not local(change, site) > start]

        assert skipped == [], f"modified_after {start} (local) hides changes made after {watermark}"


def test_the_reviewers_case_lists_from_an_hour_before_the_watermark() -> None:
    # 00:50 UTC is 02:50 CEST; 20 minutes later, 01:10 UTC is 02:10 CET.
    watermark = datetime(2024, 10, 27, 0, 49, 59, tzinfo=UTC)

    start = listing_start(watermark, ZoneInfo("Europe/Berlin"), unknown_zone_setback=UNKNOWN_ZONE_SETBACK)

    assert start == watermark - timedelta(hours=1)


@pytest.mark.parametrize(
    ("zone", "watermark"),
    [
        ("Europe/Berlin", datetime(2024, 7, 1, 12, 0, tzinfo=UTC)),
        ("Europe/Berlin", datetime(2024, 10, 27, 5, 0, tzinfo=UTC)),  # four hours after clocks went back
        ("Europe/Berlin", datetime(2024, 3, 31, 1, 0, tzinfo=UTC)),  # clocks go forward: nothing repeats
        ("Asia/Kolkata", datetime(2024, 10, 27, 1, 0, tzinfo=UTC)),  # no daylight saving time
    ],
)
def test_away_from_clocks_going_back_a_pass_starts_at_its_watermark(zone: str, watermark: datetime) -> None:
    assert listing_start(watermark, ZoneInfo(zone), unknown_zone_setback=UNKNOWN_ZONE_SETBACK) == watermark


def test_a_fixed_offset_never_goes_back_and_an_unknown_zone_gets_the_configured_setback() -> None:
    watermark = datetime(2024, 10, 27, 0, 49, 59, tzinfo=UTC)
    fixed = timezone(timedelta(hours=2))

    assert clock_setback(fixed, watermark) == timedelta(0)
    assert listing_start(watermark, None, unknown_zone_setback=UNKNOWN_ZONE_SETBACK) == watermark - timedelta(
        hours=2
    )


@pytest.mark.parametrize(
    ("timezone_string", "gmt_offset", "expected"),
    [
        ("Europe/Berlin", "", ZoneInfo("Europe/Berlin")),
        ("", "5.5", timezone(timedelta(hours=5, minutes=30))),
        ("", -3, timezone(timedelta(hours=-3))),
        ("", "", UTC),
        (None, None, UTC),
        ("Nowhere/Atlantis", "2", None),  # WordPress would use the name: its offset is no stand-in
        ("../../etc/passwd", "", None),
        ("", "two", None),
        ("", 30, None),
    ],
)
def test_the_site_zone_is_its_zone_name_else_its_fixed_offset(
    timezone_string: object, gmt_offset: object, expected: tzinfo | None
) -> None:
    assert site_zone(timezone_string, gmt_offset) == expected
