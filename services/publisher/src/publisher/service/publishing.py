"""Use cases: keep site connections, accept publish requests, publish one content to WordPress.

No duplicates, ever: every external create has a key stored or checked around it.
* media: the ledger (site, sha256) is read first; an upload is noted (committed) before it starts, and a
  later attempt that finds such a note without a media id looks the upload up by its slug first;
* post: the publication row keeps the post id from the moment WordPress returns it; before creating,
  the publisher looks the post up by its publication key (bridge plugin) or, without the plugin, by
  the slug derived from the key;
* both creates run under a Postgres advisory lock on their key, so two attempts of the same
  publication (a re-request racing a slow job) never create twice.

Nothing stale, ever: an attempt writes to WordPress only before its deadline and while no newer publication of
the same key is known, and every write to the post checks the latter under the post lock, so a newer attempt
either writes after it or is seen by it (`write_refusal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import asyncpg

from publisher.adapters import repository as repo
from publisher.adapters.wordpress import (
    PUBLICATION_KEY_META,
    Media,
    Post,
    SiteConnection,
    WordPressClient,
    WordPressClients,
    WordPressError,
)
from publisher.domain.rules import (
    Failure,
    PlacedImage,
    fallback_post_slug,
    job_key,
    media_filename,
    media_slug,
    parse_failure,
    place_images,
    site_group,
    sync_status_of,
    write_refusal,
)
from writer_images import jobs
from writer_images.blobstore import BlobNotFoundError, BlobStore
from writer_images.consumer import IncomingEvent
from writer_images.dlq import dead_letter_event
from writer_images.events import (
    ContentPublished,
    ContentPublishFailed,
    ContentPublishRequested,
    Envelope,
    OutgoingEvent,
    PublishImage,
    SiteChanged,
    make_event,
    utcnow,
)
from writer_images.logging import get_logger
from writer_images.outbox import Outbox
from writer_images.secrets import SecretBox

log = get_logger(__name__)

QUEUE = "publish"
CONSUMER_GROUP = "publisher"


@dataclass(frozen=True)
class Publishing:
    """What the use cases need, wired once in bootstrap."""

    pool: asyncpg.Pool
    schema: str
    outbox: Outbox
    blobs: BlobStore
    clients: WordPressClients
    secrets: SecretBox


# --- consumer handlers (database work only) ---------------------------------------------------


async def on_site_changed(conn: asyncpg.Connection, event: IncomingEvent) -> None:
    site = event.payload
    assert isinstance(site, SiteChanged)
    if not await repo.upsert_site(conn, event.envelope.account_id, site):
        log.info("older site revision ignored", site_id=site.site_id, revision=site.revision)


def publish_requested_handler(schema: str) -> Any:
    async def on_publish_requested(conn: asyncpg.Connection, event: IncomingEvent) -> None:
        request = event.payload
        assert isinstance(request, ContentPublishRequested)
        # Noted here, not only when the job starts: an older attempt's job that wakes first already sees this
        # one, and a re-request's later deadline counts although the pending job keeps its first payload.
        await repo.note_attempt(conn, request)
        await jobs.enqueue(
            conn,
            schema,
            queue=QUEUE,
            dedupe_key=job_key(request.publication_key, str(request.attempt_id)),
            group_key=site_group(request.site_id),
            payload={"envelope": event.envelope.model_dump(mode="json")},
        )

    return on_publish_requested


# --- the job -----------------------------------------------------------------------------------


def _request_of(job: jobs.Job) -> tuple[Envelope, ContentPublishRequested]:
    envelope = Envelope.model_validate(job.payload["envelope"])
    return envelope, ContentPublishRequested.model_validate(envelope.payload)


def _fail(code: str, message: str) -> jobs.FailJob:
    return jobs.FailJob(Failure(code, message).render())


def _as_job_error(error: WordPressError) -> Exception:
    if error.retryable:
        return jobs.RetryJob(error.failure.render(), retry_after_s=error.retry_after_s)
    return jobs.FailJob(error.failure.render())


async def publish(deps: Publishing, job: jobs.Job) -> None:
    """The job handler: publish one content to one site, then emit `content.published` with the job's completion."""
    envelope, request = _request_of(job)
    try:
        client = await _client_for(deps, request.site_id)
        await _publish_with(deps, client, job, envelope, request)
    except WordPressError as error:
        log.warning("publish attempt failed", code=error.code, reason=error.message, attempt=job.attempts)
        raise _as_job_error(error) from error


async def _client_for(deps: Publishing, site_id: int) -> WordPressClient:
    async with deps.pool.acquire() as conn:
        site = await repo.get_site(conn, site_id)
    if site is None:
        # site.changed travels on another topic and may still be on its way: retry, then fail.
        raise jobs.RetryJob(
            Failure("site_unknown", f"site {site_id} is not known to the publisher yet").render()
        )
    if site.deleted:
        raise _fail("site_deleted", f"site {site_id} was deleted")
    try:
        password = deps.secrets.open(site.application_password_sealed)
    except ValueError as exc:
        raise _fail(
            "secret_unreadable", f"site {site_id}: {exc} (WI_SECRETS_KEY differs from images-api's?)"
        ) from exc
    return await deps.clients.for_site(SiteConnection(site_id, site.base_url, site.username, password))


async def _publish_with(
    deps: Publishing,
    client: WordPressClient,
    job: jobs.Job,
    envelope: Envelope,
    request: ContentPublishRequested,
) -> None:
    async with deps.pool.acquire() as conn:
        state, standing = await repo.start_publication(conn, request)
    _refuse_stale_writes(request, standing)  # before the first write: not even media for a stale attempt
    # Without the post lock, so it overlaps the media uploads; only worth it while no create was ever noted,
    # the one case where it can be trusted (see `_create_or_update_post`).
    lookup = (
        asyncio.create_task(_find_by_key(client, request.publication_key))
        if state.post_id is None and state.create_attempts == 0 and _must_look_up(client, 0)
        else None
    )
    try:
        post = await _publish_media_then_post(deps, client, job, envelope, request, state, lookup)
    finally:
        if lookup is not None and not lookup.done():
            lookup.cancel()
        if lookup is not None:
            with contextlib.suppress(BaseException):
                await lookup
    log.info("content published", content_id=request.content_id, post_id=post.id, status=post.status)


async def _publish_media_then_post(
    deps: Publishing,
    client: WordPressClient,
    job: jobs.Job,
    envelope: Envelope,
    request: ContentPublishRequested,
    state: repo.PublicationState,
    lookup: asyncio.Task[Post | None] | None,
) -> Post:
    ordered = sorted(request.images, key=lambda i: (i.position, i.image_id))
    media: dict[int, Media] = {}
    for image in ordered:
        media[image.image_id] = await _ensure_media(deps, client, request, image)
    featured = next((media[i.image_id] for i in ordered if i.image_type == "featured"), None)
    in_article = [
        PlacedImage(media[i.image_id].id, media[i.image_id].source_url, i.alt_text, i.caption)
        for i in ordered
        if i.image_type == "in_article"
    ]
    fields: dict[str, Any] = {
        "title": request.title,
        "content": place_images(request.html, in_article),
        "status": request.wp_status,
        "featured_media": featured.id if featured else 0,
    }
    if request.wp_status == "future" and request.publish_at is not None:
        fields["date_gmt"] = (
            request.publish_at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
        )
    post = await _create_or_update_post(deps, client, request, state, lookup, fields)
    post = await _verify(deps, client, request, post, featured)
    published = ContentPublished(
        publication_id=request.publication_id,
        attempt_id=request.attempt_id,
        content_id=request.content_id,
        site_id=request.site_id,
        external_id=str(post.id),
        external_url=post.link,
        wp_status=post.status,
        sync_status=sync_status_of(post.status),
        featured_media_id=featured.id if featured else None,
        media_ids={str(image_id): m.id for image_id, m in media.items()},
        modified_gmt=post.modified_gmt,
    )
    async with deps.pool.acquire() as conn, conn.transaction():
        # The post is written: past the deadline that is still true and worth reporting, but once a newer
        # attempt is known that attempt's content is what stands (it writes after us, under the same lock).
        await _lock_post(conn, request, reporting=True)
        await repo.mark_published(conn, request.publication_key, request.attempt_id, post.status, post.link)
        await deps.outbox.write(conn, [_event(published, envelope)])
        await jobs.complete(conn, job)
    return post


async def _ensure_media(
    deps: Publishing, client: WordPressClient, request: ContentPublishRequested, image: PublishImage
) -> Media:
    """One WordPress media item per (site, image bytes), whatever crashes in between."""
    site_id = request.site_id
    async with deps.pool.acquire() as conn:
        entry = await repo.ledger_entry(conn, site_id, image.sha256)
    if entry is not None and entry.media_id is not None:
        return Media(entry.media_id, entry.source_url or "", image.alt_text)
    data = await _image_bytes(deps, image)
    # The transaction holds the lock across the upload: a second job with the same image waits, then reuses.
    async with deps.pool.acquire() as conn, conn.transaction():
        await repo.lock(conn, f"media:{site_id}:{image.sha256}")
        entry = await repo.ledger_entry(conn, site_id, image.sha256)
        if entry is not None and entry.media_id is not None:
            return Media(entry.media_id, entry.source_url or "", image.alt_text)
        if entry is not None and entry.upload_attempts > 0:
            found = await client.find_media_by_slug(media_slug(image.sha256))
            if found is not None:
                log.info("media found from an unrecorded upload", media_id=found.id, sha256=image.sha256)
                await repo.record_media(conn, site_id, image.sha256, found.id, found.source_url)
                return found
        await _may_write(conn, request)
        async with deps.pool.acquire() as marker:  # committed now, whatever happens to the upload
            await repo.note_upload_attempt(marker, site_id, image.sha256)
        uploaded = await client.upload_media(
            data,
            filename=media_filename(image.sha256, image.content_type),
            content_type=image.content_type,
            alt_text=image.alt_text,
            caption=image.caption,
        )
        await repo.record_media(conn, site_id, image.sha256, uploaded.id, uploaded.source_url)
        return uploaded


async def _image_bytes(deps: Publishing, image: PublishImage) -> bytes:
    try:
        data = await deps.blobs.get(image.blob_key)
    except BlobNotFoundError as exc:
        raise _fail(
            "image_missing", f"image {image.image_id}: blob {image.blob_key} is not in the blob store"
        ) from exc
    if hashlib.sha256(data).hexdigest() != image.sha256.lower():
        raise _fail(
            "image_missing", f"image {image.image_id}: blob {image.blob_key} does not match its sha256"
        )
    return data


async def _create_or_update_post(
    deps: Publishing,
    client: WordPressClient,
    request: ContentPublishRequested,
    state: repo.PublicationState,
    lookup: asyncio.Task[Post | None] | None,
    fields: dict[str, Any],
) -> Post:
    post = await client.get_post(state.post_id) if state.post_id is not None else None
    if post is None:
        async with deps.pool.acquire() as conn, conn.transaction():
            await _lock_post(conn, request)
            now = await repo.publication_state(conn, request.publication_key)
            if now.post_id is not None and now.post_id != state.post_id:
                post = await client.get_post(now.post_id)  # another attempt created it meanwhile
            if post is None and _must_look_up(client, now.create_attempts):
                if lookup is not None and now.create_attempts == 0:
                    post = await lookup  # no create was ever noted: there was nothing it could miss
                else:
                    # A create may have run beside any lookup made without the lock: noted and committed first,
                    # then sent, it can land in WordPress after that lookup found nothing, and its attempt
                    # can end without storing the post id. Under the lock that attempt has ended.
                    post = await _find_by_key(client, request.publication_key)
            if post is None:
                async with deps.pool.acquire() as marker:  # committed now, whatever happens to the create
                    await repo.note_create_attempt(marker, request.publication_key)
                created = await client.create_post({**fields, **_key_fields(client, request.publication_key)})
                # Stored in this transaction, which commits before anything else happens.
                await repo.store_post_id(conn, request.publication_key, created.id)
                return created
            await repo.store_post_id(conn, request.publication_key, post.id)
    async with deps.pool.acquire() as conn, conn.transaction():
        await _lock_post(conn, request)
        # Updating a trashed post with a live status restores it.
        return await client.update_post(post.id, {**fields, **_key_fields(client, request.publication_key)})


async def _lock_post(
    conn: asyncpg.Connection, request: ContentPublishRequested, *, reporting: bool = False
) -> None:
    """Take the post's lock for this transaction, then refuse if the attempt may no longer write (or, when
    `reporting` a write already made, if a newer attempt was started). Every write to the post runs under it."""
    await repo.lock(conn, f"post:{request.publication_key}")
    await _may_write(conn, request, reporting=reporting)


async def _may_write(
    conn: asyncpg.Connection, request: ContentPublishRequested, *, reporting: bool = False
) -> None:
    standing = await repo.attempt_standing(conn, request.publication_key, request.attempt_id)
    _refuse_stale_writes(request, standing, reporting=reporting)


def _refuse_stale_writes(
    request: ContentPublishRequested, standing: repo.AttemptStanding, *, reporting: bool = False
) -> None:
    refusal = write_refusal(
        request.publication_id,
        standing.newest_publication_id,
        None if reporting else standing.deadline_at,
        standing.now,
    )
    if refusal is not None:
        log.info("publish attempt refused", code=refusal.code, reason=refusal.message)
        raise jobs.FailJob(refusal.render())


def _must_look_up(client: WordPressClient, create_attempts: int) -> bool:
    """Look for a post by its key before creating one when a create was attempted for this key (attempts are
    committed before the create, so a crash may have left a post we never stored), or while it is unknown
    whether the site has the bridge plugin (the lookup finds out; a create needs to know how to mark the post).
    The lookup that starts beside the media uploads is trusted only while no create was ever noted for the key;
    any other runs under the post lock."""
    return create_attempts > 0 or client.has_bridge_plugin is None


async def _find_by_key(client: WordPressClient, publication_key: str) -> Post | None:
    found = await client.find_posts_by_key(publication_key)
    if found is None:  # no bridge plugin: our own slug is the key
        found = await client.find_posts_by_slug(fallback_post_slug(publication_key))
    if not found:
        return None
    oldest = min(found, key=lambda p: p.id)
    if len(found) > 1:
        log.warning("several posts carry one publication key; using the oldest", ids=[p.id for p in found])
    return oldest


def _key_fields(client: WordPressClient, publication_key: str) -> dict[str, Any]:
    if client.has_bridge_plugin is False:
        return {"slug": fallback_post_slug(publication_key)}
    return {"meta": {PUBLICATION_KEY_META: publication_key}}


async def _verify(
    deps: Publishing,
    client: WordPressClient,
    request: ContentPublishRequested,
    post: Post,
    featured: Media | None,
) -> Post:
    """WordPress accepts an unknown featured_media silently (stores 0): check what it kept."""
    expected_featured = featured.id if featured else 0
    if post.featured_media != expected_featured:
        async with deps.pool.acquire() as conn, conn.transaction():
            await _lock_post(conn, request)
            post = await client.update_post(post.id, {"featured_media": expected_featured})
        if post.featured_media != expected_featured and featured is not None:
            featured_image = next(i for i in request.images if i.image_type == "featured")
            async with deps.pool.acquire() as conn:  # the media item is gone on WordPress: upload it again
                await conn.execute(
                    "DELETE FROM media WHERE site_id = $1 AND sha256 = $2",
                    request.site_id,
                    featured_image.sha256,
                )
            raise jobs.RetryJob(
                Failure(
                    "featured_media_rejected",
                    f"post {post.id}: WordPress did not keep featured media {featured.id}",
                ).render()
            )
    expected = {request.wp_status}
    if request.wp_status == "future" and (request.publish_at is None or request.publish_at <= utcnow()):
        expected.add("publish")  # a schedule in the past publishes at once
    if post.status not in expected:
        raise _fail("status_mismatch", f"post {post.id} is {post.status!r}, expected {request.wp_status!r}")
    return post


# --- exhausted -----------------------------------------------------------------------------------


def exhausted_handler(deps: Publishing) -> Any:
    async def on_exhausted(conn: asyncpg.Connection, job: jobs.Job, reason: str, retryable: bool) -> None:
        """Last attempt failed: tell images-api (`content.publish.failed`) and dead-letter the request."""
        envelope, request = _request_of(job)
        failure = parse_failure(reason)
        await repo.mark_failed(conn, request.publication_key, request.attempt_id, failure.render())
        failed = ContentPublishFailed(
            publication_id=request.publication_id,
            attempt_id=request.attempt_id,
            content_id=request.content_id,
            site_id=request.site_id,
            reason=failure.message,
            code=failure.code,
            retryable=retryable,
            attempts=job.attempts,
        )
        await deps.outbox.write(
            conn, [_event(failed, envelope), _dead_letter(envelope, request, failure, job)]
        )
        log.warning(
            "publish failed", content_id=request.content_id, code=failure.code, reason=failure.message
        )

    return on_exhausted


def _event(payload: ContentPublished | ContentPublishFailed, cause: Envelope) -> OutgoingEvent:
    return make_event(
        payload,
        account_id=cause.account_id,
        correlation_id=cause.correlation_id,
        causation_id=str(cause.event_id),
    )


def _dead_letter(
    envelope: Envelope, request: ContentPublishRequested, failure: Failure, job: jobs.Job
) -> OutgoingEvent:
    """The same letter shape as the consumer's DLQ, written through the outbox (same transaction)."""
    return dead_letter_event(
        envelope, reason=failure.render(), attempts=job.attempts, group_id=CONSUMER_GROUP
    )
