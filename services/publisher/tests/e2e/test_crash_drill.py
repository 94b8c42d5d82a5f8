"""Crash drill: SIGKILL the publisher at random moments of a bulk publish; WordPress ends up with no duplicates.

30 contents with 2 images each (a featured and an in-article one: enough to crash between uploads, between
the uploads and the post, and between the post and our commit) keep the drill near a minute.
"""

from __future__ import annotations

import asyncio
import random
import time

import asyncpg
import httpx
import pytest

from publisher.testing import post_ids_with_key
from writer_images.testing.wordpress import WordPressSite

pytestmark = [pytest.mark.slow, pytest.mark.wordpress]

CONTENTS = 30
MID_BULK_KILLS = 10
ALL_STATUSES = "publish,future,draft,pending,private,trash"


def _total(site: WordPressSite, path: str, **params: str) -> int:
    with httpx.Client(base_url=site.rest_url, auth=site.admin_auth, timeout=30) as client:
        response = client.get(path, params={**params, "per_page": "1"})
        response.raise_for_status()
        return int(response.headers["x-wp-total"])


async def _published_so_far(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        done: int = await conn.fetchval(
            "SELECT count(*) FROM publisher.publications WHERE status = 'published'"
        )
        return done
    finally:
        await conn.close()


async def test_sigkill_at_random_points_of_a_bulk_publish_leaves_one_post_per_content_and_one_media_per_image(
    harness_factory, bridged_site: WordPressSite, faulty_proxy
) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    # Short leases: a killed runner's jobs are taken over 2 s later; plenty of attempts for all the kills.
    harness = harness_factory({"WI_JOB_LEASE_S": "2", "WI_JOB_MAX_ATTEMPTS": "40", "WI_PER_SITE_LIMIT": "1"})
    harness.start()
    posts_before = _total(bridged_site, "/wp/v2/posts", status=ALL_STATUSES)
    media_before = _total(bridged_site, "/wp/v2/media")
    # A slow host (150 ms per request) and one job at a time: the bulk outlasts ten kills on any machine.
    slow_host = faulty_proxy(bridged_site.base_url, delay_s=0.15).__enter__()
    site_id = await harness.add_site(bridged_site, base_url=slow_host.url)
    contents = [await harness.content(site_id, in_article=1) for _ in range(CONTENTS)]
    await harness.send([harness.publish_requested(c) for c in contents])

    # Kill at random moments from the process start (during start-up, uploads, post creation, commits),
    # until at least MID_BULK_KILLS kills landed while contents were still unpublished.
    kill_points: list[tuple[float, int]] = []
    started = time.monotonic()
    while sum(1 for _, done in kill_points if done < CONTENTS) < MID_BULK_KILLS and len(kill_points) < 30:
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        assert harness.process is not None
        harness.process.kill9()
        done = await _published_so_far(harness.database_url)
        kill_points.append((round(time.monotonic() - started, 2), done))
        if done == CONTENTS:
            break
        harness.start(wait=False)
    if harness.process is None or not harness.process.alive:  # never two publishers: the last one would leak
        harness.start()
    outcomes = await harness.outcomes({c.content_id for c in contents}, timeout_s=180)
    slow_host.__exit__()

    print(f"seed {seed}; killed at (seconds, contents published so far): {kill_points}")
    assert sum(1 for _, done in kill_points if done < CONTENTS) >= MID_BULK_KILLS
    assert {cid: {o["_type"] for o in found} for cid, found in outcomes.items()} == {
        c.content_id: {"content.published"} for c in contents
    }
    for content in contents:
        external_ids = {o["external_id"] for o in outcomes[content.content_id]}
        assert len(external_ids) == 1
        assert post_ids_with_key(bridged_site, content.publication_key) == [int(external_ids.pop())]
    assert _total(bridged_site, "/wp/v2/posts", status=ALL_STATUSES) == posts_before + CONTENTS
    assert _total(bridged_site, "/wp/v2/media") == media_before + CONTENTS * 2
