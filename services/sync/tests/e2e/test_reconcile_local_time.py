"""The reconciler against a real WordPress in a time zone with daylight saving time. WordPress compares
`modified_after` with `post_modified`, the site's local time: when the clocks go back, a later change can
carry an earlier local time than one the reconciler has already seen."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from sync.adapters.wordpress import WordPressClient
from sync.testing import OPERATOR_TOKEN, SyncService, new_site_id, publish_site, wait_for_site
from writer_images.testing.waiting import eventually
from writer_images.testing.wordpress import WordPressSite
from writer_images.testing.wordpress_fixtures import WordPressFactory

pytestmark = [pytest.mark.wordpress, pytest.mark.slow]


@pytest.fixture(scope="module")
def berlin_site(wordpress_factory: WordPressFactory) -> Iterator[WordPressSite]:
    """A plain WordPress (the reconciler needs no plugin) whose time zone is Europe/Berlin."""
    site = wordpress_factory.start()
    site.run_sql("UPDATE wp_options SET option_value = 'Europe/Berlin' WHERE option_name = 'timezone_string'")
    site.run_sql("UPDATE wp_options SET option_value = '' WHERE option_name = 'gmt_offset'")
    yield site
    wordpress_factory.stop(site)


def set_modified(site: WordPressSite, post_id: int | None, local: str, gmt: str) -> None:
    """Give a post (None: every post) a modification time, as WordPress stores it: local and UTC."""
    where = f"WHERE ID = {post_id}" if post_id is not None else ""
    site.run_sql(f"UPDATE wp_posts SET post_modified = '{local}', post_modified_gmt = '{gmt}' {where}")


async def wait_for_first_pass(conn: asyncpg.Connection, site_id: int) -> None:
    query = "SELECT last_success_at IS NOT NULL FROM reconcile_state WHERE site_id = $1"
    await eventually(
        lambda: conn.fetchval(query, site_id), what=f"the first reconciliation pass of site {site_id}"
    )


async def reconcile(sync_service: SyncService, site_id: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sync_service.url, timeout=60) as http:
        response = await http.post(
            f"/v1/sync/reconcile/{site_id}", headers={"authorization": f"Bearer {OPERATOR_TOKEN}"}
        )
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()["data"]
    return report


async def test_a_change_in_the_repeated_hour_after_clocks_go_back_is_not_skipped(
    berlin_site: WordPressSite, sync_service: SyncService, kafka_bootstrap: str, sync_db: asyncpg.Connection
) -> None:
    with httpx.Client(base_url=berlin_site.rest_url, auth=berlin_site.editor_auth, timeout=30) as editor:
        first, second = (
            editor.post("/wp/v2/posts", json={"title": title, "status": "publish"}).json()["id"]
            for title in ("first", "second")
        )
    # The site's whole history, before the night of 2024-10-27 when Berlin went from 03:00 CEST to 02:00 CET.
    set_modified(berlin_site, None, "2024-10-26 12:00:00", "2024-10-26 10:00:00")
    site_id = new_site_id()
    await publish_site(
        kafka_bootstrap,
        site_id=site_id,
        site_key=f"berlin-{site_id}",
        secret="x",
        base_url=berlin_site.base_url,
        username=berlin_site.editor_user,
        app_password=berlin_site.editor_app_password,
    )
    await wait_for_site(sync_db, site_id)
    await wait_for_first_pass(sync_db, site_id)  # the baseline

    set_modified(berlin_site, first, "2024-10-27 02:50:00", "2024-10-27 00:50:00")  # 02:50 CEST
    seen_first = await reconcile(sync_service, site_id)
    set_modified(berlin_site, second, "2024-10-27 02:10:00", "2024-10-27 01:10:00")  # 02:10 CET, 20 min later
    seen_second = await reconcile(sync_service, site_id)

    assert seen_first["emitted"] == 1
    assert seen_first["watermark"] == "2024-10-27T00:49:59+00:00"
    assert seen_second["emitted"] == 1, "the later change, at an earlier local time, was listed"
    assert seen_second["posts_seen"] == 2, "listed again: only what changed in the hour the clocks repeat"
    known = await sync_db.fetchval(
        "SELECT modified_gmt FROM known_posts WHERE site_id = $1 AND post_id = $2", site_id, second
    )
    assert known == datetime(2024, 10, 27, 1, 10, tzinfo=UTC)
    assert seen_second["watermark"] == "2024-10-27T01:09:59+00:00"


async def test_the_reconciler_reads_the_sites_time_zone_from_the_rest_index(
    berlin_site: WordPressSite,
) -> None:
    async with WordPressClient(
        berlin_site.base_url, berlin_site.editor_user, berlin_site.editor_app_password, timeout_s=30
    ) as wordpress:
        assert await wordpress.time_zone() == ZoneInfo("Europe/Berlin")
