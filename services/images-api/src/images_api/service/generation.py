"""Image generation: request (task + items + events in one transaction), task state, and the sweeper."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from images_api.adapters.notifier import CHANNEL, task_topic
from images_api.domain import rules
from images_api.service import image_settings
from images_api.service.contents import get_content_row
from writer_images.events import ImageGenerationRequested, OutgoingEvent, make_event, new_event_id, utcnow
from writer_images.http import AppError, invalid, not_found
from writer_images.logging import get_logger
from writer_images.outbox import Outbox, outbox_arrays, outbox_insert

log = get_logger(__name__)


def _request_event(
    image: asyncpg.Record,
    revision: int,
    task_id: uuid.UUID,
    settings: image_settings.ImageGenerationSettings,
    sizes: Mapping[str, tuple[int, int]],
    deadline_at: datetime,
    account_id: int,
    correlation_id: str,
) -> OutgoingEvent:
    width, height = sizes[settings.model]
    payload = ImageGenerationRequested(
        task_id=task_id,
        image_id=image["id"],
        content_id=image["content_id"],
        revision=revision,
        prompt=image["prompt"],
        image_type=image["image_type"],
        position=image["position"],
        provider=settings.provider,
        model=settings.model,
        width=width,
        height=height,
        image_format=settings.image_format,
        renditions=settings.renditions(),
        deadline_at=deadline_at,
    )
    return make_event(payload, account_id=account_id, correlation_id=correlation_id)


async def request_generation(
    conn: asyncpg.Connection,
    outbox: Outbox,
    account_id: int,
    content_id: int | None,
    image_ids: Sequence[int],
    *,
    sizes: Mapping[str, tuple[int, int]],
    timeout_s: int,
    correlation_id: str,
) -> dict[str, Any]:
    """Queue the images of one content (when not given, the images' own): 404 for ids that are not this
    content's, 409 if any is running. One transaction, five round trips (ten before): begin, lock the
    content, lock and read its images with the account's settings, write everything in one statement
    (images, task, items, events, wake-ups), commit."""
    wanted = sorted(set(image_ids))
    async with conn.transaction():
        if content_id is None:
            content_id = await _content_of(conn, account_id, wanted)
        await get_content_row(conn, account_id, content_id, for_update=True)
        images = await _lock_images(conn, account_id, content_id, wanted)
        found = {r["id"] for r in images}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise AppError(
                404,
                "Image not found",
                errors={"ids": [f"no image {i} in content {content_id}" for i in missing]},
            )
        running = [r["id"] for r in images if not rules.can_request_generation(r["status"])]
        if running:
            raise AppError(
                409,
                "Some images are already queued or generating",
                errors={"ids": [f"image {i} is already queued or generating" for i in running]},
            )
        settings = image_settings.from_row(images[0])
        task_id = new_event_id()
        deadline_at = utcnow() + timedelta(seconds=timeout_s)
        revisions = [rules.next_revision(r["revision"], r["requested_revision"]) for r in images]
        events = [
            _request_event(r, revision, task_id, settings, sizes, deadline_at, account_id, correlation_id)
            for r, revision in zip(images, revisions, strict=True)
        ]
        await conn.execute(
            f"""
            WITH queued AS (
                UPDATE images i SET status = 'queued', error = NULL, updated_at = now(),
                       revision = u.revision, requested_revision = u.revision
                FROM unnest($1::bigint[], $2::int[]) AS u(id, revision)
                WHERE i.id = u.id
            ), task AS (
                INSERT INTO tasks (id, account_id, content_id, total) VALUES ($3, $4, $5, cardinality($1::bigint[]))
            ), items AS (
                INSERT INTO task_items (task_id, image_id, revision, deadline_at)
                SELECT $3, u.id, u.revision, $6 FROM unnest($1::bigint[], $2::int[]) AS u(id, revision)
            ), written AS (
                {outbox_insert(7)}
            )
            SELECT pg_notify($13, ''), pg_notify($14, $15)
            """,
            [r["id"] for r in images],
            revisions,
            task_id,
            account_id,
            content_id,
            deadline_at,
            *outbox_arrays(events),
            outbox.channel,
            CHANNEL,
            task_topic(task_id),
        )
    return {
        "task_id": str(task_id),
        "images_created": len(images),
        "message": f"Image generation started for {len(images)} image(s)",
    }


async def _content_of(conn: asyncpg.Connection, account_id: int, image_ids: list[int]) -> int:
    """The one content these images belong to: 404 if none is the account's, 422 if they span several."""
    contents: list[int] = [
        r["content_id"]
        for r in await conn.fetch(
            "SELECT DISTINCT content_id FROM images WHERE id = ANY($1::bigint[]) AND account_id = $2",
            image_ids,
            account_id,
        )
    ]
    if not contents:
        raise AppError(404, "Image not found", errors={"ids": ["no image of these ids"]})
    if len(contents) > 1:
        reason = "the images belong to several contents: generate one content's images at a time"
        raise AppError(422, reason, errors={"ids": [reason]})
    return contents[0]


async def _lock_images(
    conn: asyncpg.Connection, account_id: int, content_id: int, image_ids: list[int]
) -> list[asyncpg.Record]:
    """The content's images among `image_ids`, locked, each row with the account's generation settings."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT i.id, i.content_id, i.status, i.revision, i.requested_revision, i.prompt, i.image_type,
               i.position, {image_settings.SETTINGS_SELECT}
        FROM images i LEFT JOIN image_settings s ON s.account_id = i.account_id
        WHERE i.id = ANY($1::bigint[]) AND i.content_id = $2 AND i.account_id = $3
        ORDER BY i.id FOR UPDATE OF i
        """,
        image_ids,
        content_id,
        account_id,
    )
    return rows


async def refresh_tasks(conn: asyncpg.Connection, task_ids: Sequence[uuid.UUID]) -> None:
    """A task is finished when none of its items is still queued or generating. One round trip for them all:
    the tasks' states, and the notices (delivered at commit) that wake their SSE streams."""
    if not task_ids:
        return
    await conn.execute(
        """
        WITH s AS (
            SELECT task_id,
                   count(*) FILTER (WHERE state IN ('queued', 'generating')) AS open,
                   count(*) FILTER (WHERE state = 'generated') AS generated,
                   count(*) FILTER (WHERE state = 'failed') AS failed
            FROM task_items WHERE task_id = ANY($1::uuid[]) GROUP BY task_id
        ), refreshed AS (
            UPDATE tasks t SET updated_at = now(),
                state = CASE
                    WHEN s.open > 0 THEN 'running'
                    WHEN s.generated = 0 AND s.failed > 0 THEN 'failed'
                    ELSE 'completed' END,
                finished_at = CASE WHEN s.open > 0 THEN NULL ELSE coalesce(t.finished_at, now()) END
            FROM s
            WHERE t.id = s.task_id
            RETURNING 1
        )
        SELECT pg_notify($2, topic) FROM unnest($3::text[]) AS topic
        """,
        list(task_ids),
        CHANNEL,
        [task_topic(task_id) for task_id in task_ids],
    )


async def task_view(conn: asyncpg.Connection, account_id: int, task_id: uuid.UUID) -> dict[str, Any]:
    task = await conn.fetchrow(
        "SELECT id, content_id, state, total, created_at, updated_at, finished_at FROM tasks "
        "WHERE id = $1 AND account_id = $2",
        task_id,
        account_id,
    )
    if task is None:
        raise not_found("Task")
    items = await conn.fetch(
        """
        SELECT ti.image_id, i.image_type, i.position, ti.revision, ti.state, ti.stage, ti.percent, ti.error,
               ti.attempts, ti.deadline_at, ti.updated_at
        FROM task_items ti JOIN images i ON i.id = ti.image_id
        WHERE ti.task_id = $1 ORDER BY i.position, ti.image_id
        """,
        task_id,
    )
    counts = {s: sum(1 for i in items if i["state"] == s) for s in ("generated", "failed", "superseded")}
    return {
        "task_id": str(task["id"]),
        "content_id": task["content_id"],
        "state": task["state"],
        "total": task["total"],
        "generated": counts["generated"],
        "failed": counts["failed"],
        "superseded": counts["superseded"],
        "items": [dict(i) for i in items],
        "created_at": task["created_at"],
        "updated_at": task["updated_at"],
        "finished_at": task["finished_at"],
    }


async def sweep_overdue_items(
    conn: asyncpg.Connection,
    outbox: Outbox,
    max_rerequests: int,
    timeout_s: int,
    sizes: Mapping[str, tuple[int, int]],
) -> int:
    """Items past their deadline: re-request (same revision, new event id) a bounded number of times,
    then fail them with a reason. Safe anywhere: every consumer is idempotent."""
    overdue = await conn.fetch(
        """
        SELECT ti.task_id, ti.image_id, ti.revision, ti.attempts, i.revision AS current_revision,
               i.content_id, i.prompt, i.image_type, i.position, i.account_id, i.id
        FROM task_items ti JOIN images i ON i.id = ti.image_id
        WHERE ti.state IN ('queued', 'generating') AND ti.deadline_at < now()
        ORDER BY ti.deadline_at LIMIT 200
        FOR UPDATE OF ti SKIP LOCKED
        """
    )
    touched: set[uuid.UUID] = set()
    for item in overdue:
        touched.add(item["task_id"])
        if item["revision"] != item["current_revision"]:
            await conn.execute(
                "UPDATE task_items SET state = 'superseded', updated_at = now() WHERE task_id = $1 AND image_id = $2",
                item["task_id"],
                item["image_id"],
            )
            continue
        if item["attempts"] <= max_rerequests:
            deadline_at = utcnow() + timedelta(seconds=timeout_s)
            settings = await image_settings.load(conn, item["account_id"])
            event = _request_event(
                item,
                item["revision"],
                item["task_id"],
                settings,
                sizes,
                deadline_at,
                item["account_id"],
                f"sweeper:{item['task_id']}",
            )
            await outbox.write(conn, [event])
            await conn.execute(
                """UPDATE task_items SET attempts = attempts + 1, deadline_at = $3, updated_at = now()
                   WHERE task_id = $1 AND image_id = $2""",
                item["task_id"],
                item["image_id"],
                deadline_at,
            )
            log.info("generation re-requested", image_id=item["image_id"], attempt=item["attempts"] + 1)
            continue
        reason = f"timed out after {item['attempts']} attempts"
        await conn.execute(
            """UPDATE task_items SET state = 'failed', error = $3, updated_at = now()
               WHERE task_id = $1 AND image_id = $2""",
            item["task_id"],
            item["image_id"],
            reason,
        )
        await conn.execute(
            "UPDATE images SET status = 'failed', error = $3, updated_at = now() WHERE id = $1 AND revision = $2",
            item["image_id"],
            item["revision"],
            reason,
        )
    await refresh_tasks(conn, list(touched))
    return len(overdue)


async def bulk_update_status(conn: asyncpg.Connection, account_id: int, content_id: int, status: str) -> int:
    """The seed's status modal: every image of the content to pending, generated or failed by hand."""
    if not rules.can_set_manually(status):
        raise invalid("status", f"must be one of {list(rules.MANUAL_STATUSES)}")
    async with conn.transaction():
        await get_content_row(conn, account_id, content_id, for_update=True)
        # Images still running get a new revision: their in-flight result must not overwrite the choice.
        result: str = await conn.execute(
            """
            UPDATE images SET status = $2, updated_at = now(),
                              revision = revision + CASE WHEN status IN ('queued', 'generating') THEN 1 ELSE 0 END,
                              error = CASE WHEN $2 = 'failed' THEN coalesce(error, 'marked failed by hand') END
            WHERE content_id = $1 AND account_id = $3
            """,
            content_id,
            status,
            account_id,
        )
        tasks = await conn.fetch(
            """
            UPDATE task_items SET state = 'superseded', updated_at = now()
            WHERE state IN ('queued', 'generating')
              AND image_id IN (SELECT id FROM images WHERE content_id = $1)
            RETURNING task_id
            """,
            content_id,
        )
        await refresh_tasks(conn, list({t["task_id"] for t in tasks}))
        return int(result.split()[-1])
