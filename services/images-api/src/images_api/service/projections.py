"""Projections of other services' events into the read model (handlers for the EventConsumer).

Each handler runs inside the consumer's transaction that also records the event in the inbox, so a
redelivered event changes nothing. Results for an image revision older than the current one are
ignored (the prompt changed since), but still close their task item; a result reaches only an image
still waiting for it. A WordPress change reaches only the content whose post it is, on its site, and an
older one than the content has seen changes nothing.
"""

from __future__ import annotations

import html
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from images_api.adapters.notifier import notify, publication_topic
from images_api.domain import rules
from images_api.service.generation import refresh_tasks
from writer_images import events
from writer_images.consumer import Batched, HandlerSpec, IncomingEvent
from writer_images.logging import get_logger

log = get_logger(__name__)


@dataclass
class _Progress:
    """What a run of progress events leaves on one task item: the furthest stage, and whether work started."""

    stage: str
    percent: int
    started: bool


async def on_progress(conn: asyncpg.Connection, batch: Sequence[IncomingEvent]) -> None:
    folded: dict[tuple[uuid.UUID, int, int], _Progress] = {}
    for event in batch:
        p = event.payload
        assert isinstance(p, events.ImageGenerationProgress)
        # "queued" only says the generator accepted the request: the item stays queued until work starts.
        started = p.stage != "queued"
        key = (p.task_id, p.image_id, p.revision)
        seen = folded.get(key)
        if seen is None:
            folded[key] = _Progress(p.stage, p.percent, started)
        else:
            if p.percent >= seen.percent:
                seen.stage, seen.percent = p.stage, p.percent
            seen.started = seen.started or started
    keys = list(folded)
    # One round trip for the batch: the items' stages and, once work has started, the images' status.
    rows = await conn.fetch(
        """
        WITH p AS (
            SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::text[], $5::int[], $6::bool[])
                AS p(task_id, image_id, revision, stage, percent, started)
        ), item AS (
            UPDATE task_items ti SET state = CASE WHEN p.started THEN 'generating' ELSE ti.state END,
                   stage = CASE WHEN p.percent >= ti.percent THEN p.stage ELSE ti.stage END,
                   percent = greatest(ti.percent, p.percent), updated_at = now()
            FROM p
            WHERE ti.task_id = p.task_id AND ti.image_id = p.image_id AND ti.revision = p.revision
              AND ti.state IN ('queued', 'generating')
            RETURNING ti.task_id
        ), image AS (
            UPDATE images i SET status = 'generating', updated_at = now()
            FROM p
            WHERE p.started AND i.id = p.image_id AND i.revision = p.revision AND i.status = 'queued'
            RETURNING 1
        )
        SELECT DISTINCT task_id FROM item
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [folded[k].stage for k in keys],
        [folded[k].percent for k in keys],
        [folded[k].started for k in keys],
    )
    await refresh_tasks(conn, [r["task_id"] for r in rows])


async def on_generated(conn: asyncpg.Connection, batch: Sequence[IncomingEvent]) -> None:
    results: dict[tuple[int, int], tuple[events.ImageGenerated, int]] = {}
    closing: list[ClosedItem] = []
    for event in batch:
        p = event.payload
        assert isinstance(p, events.ImageGenerated)
        if not p.renditions:
            log.warning("image.generated without renditions", image_id=p.image_id)
            continue
        results[(p.image_id, p.revision)] = (p, event.envelope.account_id)  # the same result, re-emitted
        closing.append(ClosedItem(p.task_id, p.image_id, p.revision, "generated", None))  # every task closes
    generated = [r for r, _ in results.values()]
    originals = [next((r for r in p.renditions if r.name == "original"), p.renditions[0]) for p in generated]
    await conn.execute(
        """
        UPDATE images i SET status = 'generated', blob_key = p.blob_key, sha256 = p.sha256,
                            content_type = p.content_type, renditions = p.renditions::jsonb,
                            provider = p.provider, model = p.model, revised_prompt = p.revised_prompt,
                            error = NULL, generated_at = now(), updated_at = now()
        FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                    $8::text[], $9::text[], $10::text[])
            AS p(image_id, revision, account_id, blob_key, sha256, content_type, renditions, provider, model,
                 revised_prompt)
        WHERE i.id = p.image_id AND i.revision = p.revision AND i.account_id = p.account_id
          -- Only an image still waiting for its result: the generator answers a re-request of a revision it
          -- already made with the stored result, which must not undo a status set by hand since.
          AND i.status IN ('queued', 'generating')
        """,
        [p.image_id for p in generated],
        [p.revision for p in generated],
        [account_id for _, account_id in results.values()],
        [o.blob_key for o in originals],
        [o.sha256 for o in originals],
        [o.content_type for o in originals],
        [orjson.dumps([r.model_dump(mode="json") for r in p.renditions]).decode() for p in generated],
        [p.provider for p in generated],
        [p.model for p in generated],
        [p.revised_prompt for p in generated],
    )
    await refresh_tasks(conn, await close_items(conn, closing))


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
    closed = await close_items(conn, [ClosedItem(p.task_id, p.image_id, p.revision, "failed", p.reason)])
    await refresh_tasks(conn, closed)


@dataclass(frozen=True)
class ClosedItem:
    task_id: uuid.UUID
    image_id: int
    revision: int
    state: str
    error: str | None


async def close_items(conn: asyncpg.Connection, items: Sequence[ClosedItem]) -> list[uuid.UUID]:
    """Close task items with their result; returns the tasks whose items changed."""
    if not items:
        return []
    last = {(i.task_id, i.image_id, i.revision): i for i in items}  # one row per item: UPDATE touches it once
    rows = await conn.fetch(
        """
        UPDATE task_items ti SET
            -- The newest revision wins: a result for an older one supersedes its item instead.
            state = CASE WHEN ti.revision = i.revision THEN c.state ELSE 'superseded' END,
            percent = CASE WHEN c.state = 'generated' THEN 100 ELSE ti.percent END,
            error = c.error, updated_at = now()
        FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::text[], $5::text[])
                AS c(task_id, image_id, revision, state, error),
             images i
        WHERE ti.task_id = c.task_id AND ti.image_id = c.image_id AND ti.revision = c.revision
          AND i.id = ti.image_id AND ti.state IN ('queued', 'generating')
        RETURNING ti.task_id
        """,
        [i.task_id for i in last.values()],
        [i.image_id for i in last.values()],
        [i.revision for i in last.values()],
        [i.state for i in last.values()],
        [i.error for i in last.values()],
    )
    return list(dict.fromkeys(r["task_id"] for r in rows))


# ai_logs' columns with their SQL types, in the order `_ai_log_row` gives them.
_AI_LOG_COLUMNS = (
    ("call_id", "uuid"), ("account_id", "bigint"), ("task_id", "uuid"), ("image_id", "bigint"),
    ("content_id", "bigint"), ("function", "text"), ("provider", "text"), ("model", "text"), ("prompt", "text"),
    ("size", "text"), ("latency_ms", "int"), ("images", "int"), ("input_tokens", "int"),
    ("output_tokens", "int"), ("estimated_cost_usd", "float8"), ("success", "bool"), ("error", "text"),
    ("called_at", "timestamptz"),
)  # fmt: skip
_NAMES = ", ".join(name for name, _ in _AI_LOG_COLUMNS)
_INSERT_AI_LOGS = f"""
    INSERT INTO ai_logs ({_NAMES})
    SELECT u.* FROM unnest({", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(_AI_LOG_COLUMNS, 1))})
        AS u({_NAMES})
    WHERE EXISTS (SELECT 1 FROM accounts WHERE id = u.account_id)
    ON CONFLICT (call_id) DO NOTHING
"""


def _ai_log_row(event: IncomingEvent) -> tuple[Any, ...]:
    p = event.payload
    assert isinstance(p, events.AiFunctionCalled)
    return (
        p.call_id, event.envelope.account_id, p.task_id, p.image_id, p.content_id, p.function, p.provider,
        p.model, p.prompt, p.size, p.latency_ms, p.images, p.input_tokens, p.output_tokens,
        p.estimated_cost_usd, p.success, p.error, p.called_at,
    )  # fmt: skip


async def on_ai_function_called(conn: asyncpg.Connection, batch: Sequence[IncomingEvent]) -> None:
    """One row per provider call (a redelivered call is absorbed by its unique call id)."""
    rows = [_ai_log_row(event) for event in batch]
    await conn.execute(_INSERT_AI_LOGS, *(list(column) for column in zip(*rows, strict=True)))


def _web_url(url: str | None, event: IncomingEvent, content_id: int | None) -> str | None:
    """`url` when it is an http(s) URL, else None (logged): the page puts a post's URL into a link, and a
    `javascript:` (or any other scheme's) URL from WordPress must never get there."""
    if url is None:
        return None
    try:
        scheme = urllib.parse.urlsplit(url.strip()).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme in ("http", "https"):
        return url
    log.warning(
        "post URL dropped: not an http(s) URL",
        event_type=event.envelope.type,
        account_id=event.envelope.account_id,
        content_id=content_id,
        url=url[:200],
    )
    return None


async def on_content_published(conn: asyncpg.Connection, event: IncomingEvent) -> None:
    p = event.payload
    assert isinstance(p, events.ContentPublished)
    account_id = event.envelope.account_id
    external_url = _web_url(p.external_url, event, p.content_id)
    publication = await conn.fetchrow(
        """
        UPDATE publications SET status = 'published', external_id = $3, external_url = $4, reason = NULL,
                                finished_at = now()
        WHERE id = $1 AND account_id = $2 RETURNING publication_key, request->>'title' AS title
        """,
        p.publication_id,
        account_id,
        p.external_id,
        external_url,
    )
    await conn.execute(
        """
        UPDATE contents SET external_id = $3, external_url = $4, sync_status = $5, wp_status = $6,
                            publication_key = coalesce($7, publication_key), wp_title = coalesce($8, wp_title),
                            wp_modified_at = coalesce($9, wp_modified_at), updated_at = now()
        WHERE id = $1 AND account_id = $2
          -- A change made in WordPress after this publication may have come first (another topic): the
          -- newer state stays.
          AND (wp_modified_at IS NULL OR $9::timestamptz IS NULL OR wp_modified_at <= $9)
        """,
        p.content_id,
        account_id,
        p.external_id,
        external_url,
        p.sync_status,
        p.wp_status,
        publication["publication_key"] if publication else None,
        # The post now has the title we sent: WordPress reporting it back is no edit made there.
        publication["title"] if publication else None,
        p.modified_gmt,
    )
    await notify(conn, publication_topic(account_id, p.publication_id))


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
    await notify(conn, publication_topic(account_id, p.publication_id))


def _plain_title(title: str | None) -> str | None:
    """A WordPress title as the text it shows, or None when it has none to show.

    WordPress keeps a title as HTML: kses stores "&" as "&amp;" for users without `unfiltered_html`, and a
    rendered title (the REST fallback when the raw one is not given) is texturized ("&#8217;"). Our titles
    are plain text. Tags are left alone: our own titles may contain "<" and come back as they were sent.
    """
    if title is None:
        return None
    return html.unescape(title).strip() or None  # an empty title in WordPress leaves ours: we need one


async def on_wordpress_post_changed(conn: asyncpg.Connection, event: IncomingEvent) -> None:
    p = event.payload
    assert isinstance(p, events.WordPressPostChanged)
    sync_status = rules.sync_status_for(p.wp_status)
    link = _web_url(p.link, event, None)
    # a post URL that is not http(s) is stored as none, as for a post that is not public
    not_public = not rules.keeps_public_url(sync_status) or (p.link is not None and link is None)
    matched = await conn.fetchval(
        """
        UPDATE contents SET wp_status = $4, sync_status = $5,
               external_url = CASE WHEN $6 THEN NULL ELSE coalesce($7, external_url) END,
               -- Every event carries the post's title: only one that differs from the title the post last
               -- had is an edit made in WordPress; a rename made here and not yet published stays.
               title = CASE WHEN $10::text IS DISTINCT FROM wp_title THEN coalesce($10, title) ELSE title END,
               wp_title = coalesce($10, wp_title),
               external_id = $3, wp_modified_at = coalesce($8, wp_modified_at), updated_at = now()
        WHERE account_id = $1 AND site_id = $9
          -- Our post, or a post with our key while we do not know our post's id yet (its publication's
          -- result is still on its way). Any other post with our key is a copy (duplicating plugins copy
          -- its meta) and must not take the content over.
          AND (external_id = $3 OR (external_id IS NULL AND publication_key = $2))
          AND (wp_modified_at IS NULL OR $8::timestamptz IS NULL OR wp_modified_at <= $8)
        RETURNING id
        """,
        event.envelope.account_id,
        p.publication_key,
        p.post_id,
        p.wp_status,
        sync_status,
        not_public,
        link,
        p.modified_gmt,
        p.site_id,
        _plain_title(p.title),
    )
    if matched is None and p.publication_key is not None:
        await _log_foreign_post_with_our_key(conn, event.envelope.account_id, p)


async def _log_foreign_post_with_our_key(
    conn: asyncpg.Connection, account_id: int, p: events.WordPressPostChanged
) -> None:
    """Tell an operator why a post carrying one of our publication keys changed nothing (an older event for
    our own post is no news and is not logged)."""
    content = await conn.fetchrow(
        "SELECT id, site_id, external_id FROM contents WHERE account_id = $1 AND publication_key = $2",
        account_id,
        p.publication_key,
    )
    if content is None or (content["site_id"] == p.site_id and content["external_id"] == p.post_id):
        return
    log.warning(
        "wordpress.post.changed ignored: another post carries the content's publication key (a copy?)",
        content_id=content["id"],
        content_site_id=content["site_id"],
        content_post_id=content["external_id"],
        site_id=p.site_id,
        post_id=p.post_id,
        publication_key=p.publication_key,
    )


# The generation results come in bulk (five events per image): they are projected a consumer batch at a time.
HANDLERS: dict[str, HandlerSpec] = {
    "image.generation.progress": Batched(on_progress),
    "image.generated": Batched(on_generated),
    "image.generation.failed": on_failed,
    "ai.function.called": Batched(on_ai_function_called),
    "content.published": on_content_published,
    "content.publish.failed": on_content_publish_failed,
    "wordpress.post.changed": on_wordpress_post_changed,
}
