"""Attempts of one publication key in order, against a real WordPress and a real Postgres.

A publication key names a content on a site, so every publication of that content to that site shares it. Each
publication has its own attempt id and a larger publication id than the ones before it; images-api re-requests an
overdue publication with the same attempt id and a later deadline. The job runner runs in this process so the
test decides when each attempt runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from publisher.adapters.wordpress import (
    ClientConfig,
    Post,
    SiteConnection,
    WordPressClient,
    WordPressClients,
    WordPressError,
)
from publisher.service.publishing import (
    QUEUE,
    Publishing,
    exhausted_handler,
    publish,
    publish_requested_handler,
)
from publisher.settings import SCHEMA
from publisher.testing import ACCOUNT_ID, SITE_ID, in_process_publishing, post_ids_with_key, request_job
from writer_images import jobs, topics
from writer_images.consumer import IncomingEvent
from writer_images.events import (
    ContentPublished,
    ContentPublishFailed,
    ContentPublishRequested,
    Envelope,
    decode_envelope,
    make_event,
    utcnow,
)
from writer_images.jobs import JobRunner, RunnerConfig
from writer_images.retry import RetryPolicy
from writer_images.testing.wordpress import WordPressSite

pytestmark = [pytest.mark.slow, pytest.mark.wordpress]

Outcome = ContentPublished | ContentPublishFailed


class RateLimitedOnce(WordPressClients):
    """The real clients, except that the first post write carrying `title` is answered like a busy host does:
    429 with a Retry-After, before WordPress sees it."""

    def __init__(self, config: ClientConfig, title: str) -> None:
        super().__init__(config)
        self.title = title
        self.throttled = asyncio.Event()

    async def for_site(self, site: SiteConnection) -> WordPressClient:
        client = await super().for_site(site)
        if not getattr(client, "_choreographed", False):
            client.create_post = self._throttled(client.create_post)  # type: ignore[method-assign]
            client.update_post = self._throttled(client.update_post)  # type: ignore[method-assign]
            client._choreographed = True  # type: ignore[attr-defined]
        return client

    def _throttled(self, write: Callable[..., Awaitable[Post]]) -> Any:
        async def throttled(*args: Any) -> Post:
            fields: dict[str, Any] = args[-1]
            if fields.get("title") == self.title and not self.throttled.is_set():
                self.throttled.set()
                raise WordPressError(
                    "rate_limited", "429 Too Many Requests", retryable=True, retry_after_s=0.05, status=429
                )
            return await write(*args)

        return throttled


def _content_id() -> int:
    """A content of its own per test: the module's WordPress outlives a test, and a key finds its posts."""
    return uuid.uuid4().int % 10**9


def _request(
    content_id: int, publication_id: int, title: str, html: str, *, deadline_at: datetime | None = None
) -> ContentPublishRequested:
    return ContentPublishRequested(
        publication_id=publication_id,
        attempt_id=uuid.uuid4(),
        content_id=content_id,
        site_id=SITE_ID,
        publication_key=f"wi-{ACCOUNT_ID}-{content_id}-{SITE_ID}",
        action="publish",
        title=title,
        html=html,
        wp_status="publish",
        images=[],
        deadline_at=deadline_at or utcnow() + timedelta(minutes=10),
    )


def _runner(pool: asyncpg.Pool, deps: Publishing, run: Callable[[jobs.Job], Awaitable[None]]) -> JobRunner:
    retry = RetryPolicy(max_attempts=5, base_s=0.05, max_s=0.2)
    config = RunnerConfig(
        queue=QUEUE, concurrency=4, per_group_limit=4, lease_s=30, poll_interval_s=0.1, retry=retry
    )
    return JobRunner(pool, SCHEMA, config, run, exhausted_handler(deps))


async def _outcomes(pool: asyncpg.Pool, *requests: ContentPublishRequested) -> dict[uuid.UUID, list[Outcome]]:
    """What the publisher emitted for each request's attempt (its outbox: no relay runs here), once every
    attempt has an outcome."""
    wanted = {r.attempt_id for r in requests}
    async with asyncio.timeout(60):
        while True:
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT value FROM outbox WHERE topic = ANY($1::text[]) ORDER BY id",
                    [topics.CONTENT_PUBLISHED, topics.CONTENT_PUBLISH_FAILED],
                )
            found: dict[uuid.UUID, list[Outcome]] = {}
            for row in rows:
                payload = decode_envelope(row["value"])[1]
                assert isinstance(payload, ContentPublished | ContentPublishFailed)
                found.setdefault(payload.attempt_id, []).append(payload)
            if wanted <= found.keys():
                return found
            await asyncio.sleep(0.05)


def _posts_with_key(site: WordPressSite, publication_key: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=site.rest_url, auth=site.admin_auth, timeout=30) as client:
        posts = []
        for post_id in post_ids_with_key(site, publication_key):
            post = client.get(f"/wp/v2/posts/{post_id}", params={"context": "edit"})
            post.raise_for_status()
            posts.append(post.json())
        return posts


async def test_an_older_attempt_that_wakes_after_a_newer_one_published_leaves_the_post_alone_and_fails(
    pool: asyncpg.Pool, bridged_site: WordPressSite, tmp_path: Path
) -> None:
    content_id = _content_id()
    older = _request(content_id, 1, f"Old title {content_id}", "<p>Old text.</p>")
    newer = _request(content_id, 2, f"New title {content_id}", "<p>New text.</p>")
    clients = RateLimitedOnce(ClientConfig(allow_private_urls=True, timeout_s=30), title=older.title)
    deps = await in_process_publishing(pool, bridged_site, clients, tmp_path)
    newer_published = asyncio.Event()

    async def run(job: jobs.Job) -> None:
        if job.dedupe_key == request_job(newer).dedupe_key:
            # The user publishes again once the older attempt is held back by the host's Retry-After
            # (images-api gave up on it meanwhile).
            await clients.throttled.wait()
            await publish(deps, job)
            newer_published.set()
        else:
            if clients.throttled.is_set():  # the older attempt's retry wakes after the newer one published
                await newer_published.wait()
            await publish(deps, job)

    runner = _runner(pool, deps, run)
    async with pool.acquire() as conn:
        await jobs.enqueue_many(conn, SCHEMA, QUEUE, [request_job(older), request_job(newer)])
    running = asyncio.create_task(runner.run())
    try:
        outcomes = await _outcomes(pool, older, newer)
    finally:
        runner.stop()
        await running
        await clients.aclose()

    [published] = outcomes[newer.attempt_id]
    assert isinstance(published, ContentPublished)
    [late] = outcomes[older.attempt_id]
    assert isinstance(late, ContentPublishFailed), "the older attempt must not report the post as its own"
    assert late.code == "superseded" and "superseded by a newer attempt" in late.reason
    assert late.retryable is False
    [post] = _posts_with_key(bridged_site, newer.publication_key)
    assert post["id"] == int(published.external_id)
    assert post["title"]["raw"] == newer.title and "New text." in post["content"]["raw"]
    async with pool.acquire() as conn:
        bookkeeping = await conn.fetchrow(
            "SELECT status, last_attempt_id FROM publications WHERE publication_key = $1",
            newer.publication_key,
        )
    assert (bookkeeping["status"], bookkeeping["last_attempt_id"]) == ("published", newer.attempt_id)


async def test_an_overdue_request_sent_again_with_a_later_deadline_while_its_job_waits_is_published(
    pool: asyncpg.Pool, bridged_site: WordPressSite, tmp_path: Path
) -> None:
    clients = WordPressClients(ClientConfig(allow_private_urls=True, timeout_s=30))
    deps = await in_process_publishing(pool, bridged_site, clients, tmp_path)
    content_id = _content_id()
    overdue = _request(content_id, 1, f"Re-requested {content_id}", "<p>Text.</p>", deadline_at=utcnow())
    # images-api's sweeper: the same attempt, a new event, a later deadline. Its job is still pending, so the
    # job keeps the first request's payload.
    again = overdue.model_copy(update={"deadline_at": utcnow() + timedelta(minutes=10)})
    on_publish_requested = publish_requested_handler(SCHEMA)
    for request in (overdue, again):
        envelope = Envelope.model_validate_json(
            make_event(request, account_id=ACCOUNT_ID, correlation_id="t").value
        )
        async with pool.acquire() as conn, conn.transaction():
            await on_publish_requested(
                conn, IncomingEvent(envelope, request, topics.CONTENT_PUBLISH_REQUESTED, 0, 0)
            )

    runner = _runner(pool, deps, lambda job: publish(deps, job))
    running = asyncio.create_task(runner.run())
    try:
        outcomes = await _outcomes(pool, overdue)
    finally:
        runner.stop()
        await running
        await clients.aclose()

    [published] = outcomes[overdue.attempt_id]
    assert isinstance(published, ContentPublished)
    [post] = _posts_with_key(bridged_site, overdue.publication_key)
    assert post["id"] == int(published.external_id) and post["title"]["raw"] == overdue.title
