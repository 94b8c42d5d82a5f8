"""Two attempts of one publication racing a post create, against a real WordPress and a real Postgres.

The publisher's job runner runs in this process so the interleaving can be forced: the first attempt's create
is held at WordPress's door until the second attempt has done everything it does before it waits for the post
lock; then WordPress creates the post, and the first attempt never hears back (a client timeout).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from publisher.adapters import repository as repo
from publisher.adapters.wordpress import (
    ClientConfig,
    Post,
    SiteConnection,
    WordPressClient,
    WordPressClients,
    WordPressError,
)
from publisher.service.publishing import QUEUE, exhausted_handler, publish
from publisher.settings import SCHEMA
from publisher.testing import ACCOUNT_ID, SITE_ID, in_process_publishing, request_job
from writer_images import jobs
from writer_images.events import ContentPublishRequested, utcnow
from writer_images.jobs import JobRunner, RunnerConfig
from writer_images.retry import RetryPolicy
from writer_images.testing.wordpress import WordPressSite

pytestmark = [pytest.mark.slow, pytest.mark.wordpress]


class TimedOutFirstCreate(WordPressClients):
    """The real clients, with the first post create held until `deliver` is set and then lost on the way back
    (WordPress creates the post; the caller gets a timeout). Counts the key lookups in flight."""

    def __init__(self, config: ClientConfig) -> None:
        super().__init__(config)
        self.create_reached = asyncio.Event()
        self.deliver = asyncio.Event()
        self.lookups_in_flight = 0
        self._creates = 0

    async def for_site(self, site: SiteConnection) -> WordPressClient:
        client = await super().for_site(site)
        if not getattr(client, "_choreographed", False):
            client.create_post = self._create(client.create_post)  # type: ignore[method-assign]
            client.find_posts_by_key = self._counted(client.find_posts_by_key)  # type: ignore[method-assign]
            client.find_posts_by_slug = self._counted(client.find_posts_by_slug)  # type: ignore[method-assign]
            client._choreographed = True  # type: ignore[attr-defined]
        return client

    def _create(self, create: Callable[[dict[str, Any]], Awaitable[Post]]) -> Any:
        async def create_post(fields: dict[str, Any]) -> Post:
            self._creates += 1
            if self._creates > 1:
                return await create(fields)
            self.create_reached.set()
            await self.deliver.wait()
            await create(fields)
            raise WordPressError("timeout", "post create: the site did not answer in time", retryable=True)

        return create_post

    def _counted(self, lookup: Callable[[str], Awaitable[Any]]) -> Any:
        async def counted(key: str) -> Any:
            self.lookups_in_flight += 1
            try:
                return await lookup(key)
            finally:
                self.lookups_in_flight -= 1

        return counted


def _request(site_id: int, publication_key: str, title: str) -> jobs.NewJob:
    """A publish request's job (each request has its own attempt id)."""
    return request_job(
        ContentPublishRequested(
            publication_id=1,
            attempt_id=uuid.uuid4(),
            content_id=1,
            site_id=site_id,
            publication_key=publication_key,
            action="publish",
            title=title,
            html="<p>One paragraph.</p>",
            wp_status="publish",
            images=[],
            deadline_at=utcnow() + timedelta(minutes=10),
        )
    )


async def _waits_for_a_lock(pool: asyncpg.Pool) -> bool:
    async with pool.acquire() as conn:
        waiting: int = await conn.fetchval(
            """
            SELECT count(*) FROM pg_locks
            WHERE locktype = 'advisory' AND NOT granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """
        )
    return waiting > 0


def _posts_titled(site: WordPressSite, title: str) -> list[int]:
    with httpx.Client(base_url=site.rest_url, auth=site.admin_auth, timeout=30) as client:
        response = client.get(
            "/wp/v2/posts", params={"search": title, "status": "publish,draft,trash", "context": "edit"}
        )
        response.raise_for_status()
        return [int(p["id"]) for p in response.json()]


@pytest.mark.parametrize("with_plugin", [True, False], ids=["bridge-plugin", "no-plugin-slug-fallback"])
async def test_an_attempt_that_looked_up_while_a_create_was_in_flight_does_not_create_a_second_post(
    pool: asyncpg.Pool,
    bridged_site: WordPressSite,
    wordpress_site: WordPressSite,
    tmp_path: Path,
    with_plugin: bool,
) -> None:
    site = bridged_site if with_plugin else wordpress_site
    clients = TimedOutFirstCreate(ClientConfig(allow_private_urls=True, timeout_s=30))
    deps = await in_process_publishing(pool, site, clients, tmp_path)
    publication_key = f"wi-{ACCOUNT_ID}-1-{SITE_ID}"
    title = f"Raced {uuid.uuid4().hex}"
    first, second = _request(SITE_ID, publication_key, title), _request(SITE_ID, publication_key, title)
    published: set[str] = set()

    async def run(job: jobs.Job) -> None:
        if job.dedupe_key == second.dedupe_key:
            # The re-request starts once the first attempt noted its create (committed) and sent it.
            await clients.create_reached.wait()
        await publish(deps, job)
        published.add(job.dedupe_key)

    retry = RetryPolicy(max_attempts=3, base_s=0.05, max_s=0.2)
    config = RunnerConfig(
        queue=QUEUE, concurrency=4, per_group_limit=4, lease_s=30, poll_interval_s=0.1, retry=retry
    )
    runner = JobRunner(pool, SCHEMA, config, run, exhausted_handler(deps))
    async with pool.acquire() as conn:
        await jobs.enqueue_many(conn, SCHEMA, QUEUE, [first, second])
    running = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(60):
            # The re-request gets as far as it can: to the post lock the first attempt holds, with whatever
            # lookup it made before it answered (WordPress has no post with the key yet).
            while not (await _waits_for_a_lock(pool) and clients.lookups_in_flight == 0):
                await asyncio.sleep(0.02)
            # WordPress creates the first attempt's post; that attempt times out, rolls back, releases the
            # lock, and is retried later.
            clients.deliver.set()
            while published != {first.dedupe_key, second.dedupe_key}:
                await asyncio.sleep(0.05)
    finally:
        runner.stop()
        await running
        await clients.aclose()

    posts = _posts_titled(site, title)
    assert len(posts) == 1, f"one publication, {len(posts)} WordPress posts: {posts}"
    async with pool.acquire() as conn:
        stored = await repo.publication_state(conn, publication_key)
    assert stored.post_id == posts[0]
