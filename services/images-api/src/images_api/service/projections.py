"""Projections of other services' events into the read model (handlers for the EventConsumer).

Each handler runs inside the consumer's transaction that also records the event in the inbox, so a
redelivered event changes nothing. Results for an image revision older than the current one are
ignored (the prompt changed since), but still close their task item.
"""

from __future__ import annotations

import asyncpg

from images_api.adapters.notifier import notify, publication_topic
from images_api.domain import rules
from images_api.service.generation import refresh_task
from writer_images import events
from writer_images.consumer import Handler, IncomingEvent
from writer_images.logging import get_logger

log = get_logger(__name__)


async def on_progress(conn: asyncpg.Connection, event: IncomingEvent) -> None:
    p = event.payload
    assert isinstance(p, events.ImageGenerationProgress)
    # "queued" only says the generator accepted the request: the item stays queued until work starts.
    started = p.stage != "queued"
    # One round trip: the item's stage and, once work has started, the image's status.
    item_updated = await conn.fetchval(
        """
        WITH item AS (
            UPDATE task_items SET state = CASE WHEN $6 THEN 'generating' ELSE state END, stage = $4,
                   percent = greatest(percent, $5), updated_at = now()
            WHERE task_id = $1 AND image_id = $2 AND revision = $3 AND state IN ('queued', 'generating')
            RETURNING 1
        ), image AS (
            UPDATE images SET status = 'generating', updated_at = now()
            WHERE $6 AND id = $2 AND revision = $3 AND status = 'queued'
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM item)
        """,
        p.task_id,
        p.image_id,
        p.revision,
        p.stage,
        p.percent,
        started,
    )
    if item_updated:
        await refresh_task(conn, p.task_id)


async def on_generated(conn: asyncpg.Connection, event: IncomingEvent) -> None:
    p = event.payload
    assert isinstance(p, events.ImageGenerated)
    original = next(
        (r for r in p.renditions if r.name == "original"), p.renditions[0] if p.renditions else None
    )
    if original is None:
        log.warning("image.generated without renditions", image_id=p.image_id)
        return
    renditions = [r.model_dump(mode="json") for r in p.renditions]
    await conn.execute(
        """
        UPDATE images SET status = 'generated', blob_key = $3, sha256 = $4, content_type = $5, renditions = $6,
                          provider = $7, model = $8, revised_prompt = $9, error = NULL,
                          generated_at = now(), updated_at = now()
        WHERE id = $1 AND revision = $2 AND account_id = $10
        """,
        p.image_id,
        p.revision,
        original.blob_key,
        original.sha256,
        original.content_type,
        renditions,
        p.provider,
        p.model,
        p.revised_prompt,
        event.envelope.account_id,
    )
    await _close_item(conn, p.task_id, p.image_id, p.revision, "generated", None)


async def on_failed(conn: asyncpg.Connection, event: IncomingEvent) -> None:
    p = event.payload
    assert isinstance(p, events.ImageGenerationFailed)
    await conn.execute(
        """
        UPDATE images SET status = 'failed', error = $3, updated_at = now()
        WHERE id = $1 AND revision = $2 AND account_id = $4 AND status IN ('queued', 'generating')
        """,
        p.image_id,
        p.revision,
        p.reason,
        event.envelope.account_id,
    )
    await _close_item(conn, p.task_id, p.image_id, p.revision, "failed", p.reason)


async def _close_item(
    conn: asyncpg.Connection, task_id: object, image_id: int, revision: int, state: str, error: str | None
) -> None:
    # The newest revision wins: a result for an older one supersedes its item instead.
    closed = await conn.execute(
        """
        UPDATE task_items ti SET
            state = CASE WHEN ti.revision = i.revision THEN $4 ELSE 'superseded' END,
            percent = CASE WHEN $4 = 'generated' THEN 100 ELSE ti.percent END,
            error = $5, updated_at = now()
        FROM images i
        WHERE ti.task_id = $1 AND ti.image_id = $2 AND ti.revision = $3 AND i.id = ti.image_id
          AND ti.state IN ('queued', 'generating')
        """,
        task_id,
        image_id,
        revision,
        state,
        error,
    )
    if closed != "UPDATE 0":
        await refresh_task(conn, task_id)  # type: ignore[arg-type]


async def on_ai_function_called(conn: asyncpg.Connection, event: IncomingEvent) -> None:
    p = event.payload
    assert isinstance(p, events.AiFunctionCalled)
    await conn.execute(
        """
        INSERT INTO ai_logs (call_id, account_id, task_id, image_id, content_id, function, provider, model, prompt,
                             size, latency_ms, images, input_tokens, output_tokens, estimated_cost_usd, success,
                             error, called_at)
        SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18
        WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $2)
        ON CONFLICT (call_id) DO NOTHING
        """,
        p.call_id,
        event.envelope.account_id,
        p.task_id,
        p.image_id,
        p.content_id,
        p.function,
        p.provider,
        p.model,
        p.prompt,
        p.size,
        p.latency_ms,
        p.images,
        p.input_tokens,
        p.output_tokens,
        p.estimated_cost_usd,
        p.success,
        p.error,
        p.called_at,
    )


async def on_content_published(conn: asyncpg.Connection, event: IncomingEvent) -> None:
    p = event.payload
    assert isinstance(p, events.ContentPublished)
    account_id = event.envelope.account_id
    publication = await conn.fetchrow(
        """
        UPDATE publications SET status = 'published', external_id = $3, external_url = $4, reason = NULL,
                                finished_at = now()
        WHERE id = $1 AND account_id = $2 RETURNING publication_key
        """,
        p.publication_id,
        account_id,
        p.external_id,
        p.external_url,
    )
    await conn.execute(
        """
        UPDATE contents SET external_id = $3, external_url = $4, sync_status = $5, wp_status = $6,
                            publication_key = coalesce($7, publication_key), updated_at = now()
        WHERE id = $1 AND account_id = $2
        """,
        p.content_id,
        account_id,
        p.external_id,
        p.external_url,
        p.sync_status,
        p.wp_status,
        publication["publication_key"] if publication else None,
    )
    await notify(conn, publication_topic(p.publication_id))


async def on_content_publish_failed(conn: asyncpg.Connection, event: IncomingEvent) -> None:
    p = event.payload
    assert isinstance(p, events.ContentPublishFailed)
    account_id = event.envelope.account_id
    await conn.execute(
        """
        UPDATE publications SET status = 'failed', reason = $3, code = $4, finished_at = now()
        WHERE id = $1 AND account_id = $2 AND status = 'requested'
        """,
        p.publication_id,
        account_id,
        p.reason,
        p.code,
    )
    # Only content that is not on WordPress becomes 'failed' (publishable again by the seed's rule);
    # a failed update of a live post leaves the live state alone.
    await conn.execute(
        """
        UPDATE contents SET sync_status = 'failed', updated_at = now()
        WHERE id = $1 AND account_id = $2 AND external_url IS NULL
        """,
        p.content_id,
        account_id,
    )
    await notify(conn, publication_topic(p.publication_id))


async def on_wordpress_post_changed(conn: asyncpg.Connection, event: IncomingEvent) -> None:
    p = event.payload
    assert isinstance(p, events.WordPressPostChanged)
    sync_status = rules.sync_status_for(p.wp_status)
    not_public = not rules.keeps_public_url(sync_status)
    await conn.execute(
        """
        UPDATE contents SET wp_status = $4, sync_status = $5,
               external_url = CASE WHEN $6 THEN NULL ELSE coalesce($7, external_url) END,
               external_id = $3, wp_modified_at = coalesce($8, wp_modified_at), updated_at = now()
        WHERE account_id = $1
          AND ((publication_key IS NOT NULL AND publication_key = $2) OR (site_id = $9 AND external_id = $3))
          AND (wp_modified_at IS NULL OR $8::timestamptz IS NULL OR wp_modified_at <= $8)
        """,
        event.envelope.account_id,
        p.publication_key,
        p.post_id,
        p.wp_status,
        sync_status,
        not_public,
        p.link,
        p.modified_gmt,
        p.site_id,
    )


HANDLERS: dict[str, Handler] = {
    "image.generation.progress": on_progress,
    "image.generated": on_generated,
    "image.generation.failed": on_failed,
    "ai.function.called": on_ai_function_called,
    "content.published": on_content_published,
    "content.publish.failed": on_content_publish_failed,
    "wordpress.post.changed": on_wordpress_post_changed,
}
