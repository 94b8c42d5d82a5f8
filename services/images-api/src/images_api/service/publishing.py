"""Publishing: the seed's rule enforced here, a publication row and `content.publish.requested` in one
transaction; batch with per-item results; republish as its own action; the publication sweeper."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg

from images_api.adapters.notifier import notify, publication_topic
from images_api.adapters.paging import Params, offset_page
from images_api.domain import rules
from images_api.service.contents import get_content_row, publication_in_flight
from writer_images.events import (
    ContentPublishRequested,
    EventTooLargeError,
    PublishImage,
    make_event,
    utcnow,
)
from writer_images.http import AppError, not_found
from writer_images.logging import get_logger
from writer_images.outbox import Outbox

log = get_logger(__name__)
Action = Literal["publish", "republish"]


class RefusedError(Exception):
    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


async def _prepare(
    conn: asyncpg.Connection,
    account_id: int,
    content_id: int,
    action: Action,
    *,
    allow_missing_images: bool,
    publish_at: datetime | None,
    timeout_s: int,
    correlation_id: str,
    outbox: Outbox,
) -> dict[str, Any]:
    """Check and request one publication inside the caller's transaction; raises RefusedError."""
    try:
        content = await get_content_row(conn, account_id, content_id, for_update=True)
    except AppError:
        raise RefusedError(404, "Content not found") from None
    state = rules.PublishState(
        content["status"], content["external_id"], content["external_url"], content["sync_status"]
    )
    refusal = rules.publish_refusal(state) if action == "publish" else rules.republish_refusal(state)
    if refusal:
        raise RefusedError(409, refusal)
    site_id = content["site_id"]
    site = None
    if site_id is not None:
        site = await conn.fetchrow(
            "SELECT id FROM sites WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL",
            site_id,
            account_id,
        )
    if site is None:
        raise RefusedError(409, "content has no WordPress site; set its site_id first")
    in_flight = await publication_in_flight(conn, account_id, content_id)
    if in_flight:
        raise RefusedError(409, f"publication {in_flight} of this content is still in progress")
    images = await conn.fetch(
        """
        SELECT id, image_type, position, status, blob_key, sha256, content_type, alt_text, caption
        FROM images WHERE content_id = $1 ORDER BY position, id
        """,
        content_id,
    )
    if not allow_missing_images:
        refusal = rules.missing_images_refusal([i["status"] for i in images])
        if refusal:
            raise RefusedError(409, refusal)
    ready = [i for i in images if i["status"] == "generated" and i["blob_key"] and i["sha256"]]
    key = rules.publication_key(account_id, content_id, site_id)
    # The post id is only known for the site its key names: the publisher updates whatever post has
    # that id on the site it is sent to.
    known_external_id = content["external_id"] if content["publication_key"] == key else None
    when = publish_at or content["publish_at"]
    wp_status: Literal["publish", "future"] = "future" if when is not None and when > utcnow() else "publish"
    attempt_id = uuid.uuid4()
    deadline_at = utcnow() + timedelta(seconds=timeout_s)
    publication_id: int = await conn.fetchval(
        """
        INSERT INTO publications (account_id, content_id, site_id, publication_key, attempt_id, action,
                                  request, deadline_at, publish_at)
        VALUES ($1, $2, $3, $4, $5, $6, '{}'::jsonb, $7, $8) RETURNING id
        """,
        account_id,
        content_id,
        site_id,
        key,
        attempt_id,
        action,
        deadline_at,
        when if wp_status == "future" else None,
    )
    payload = ContentPublishRequested(
        publication_id=publication_id,
        attempt_id=attempt_id,
        content_id=content_id,
        site_id=site_id,
        publication_key=key,
        action=action,
        title=content["title"],
        html=content["html"],
        wp_status=wp_status,
        publish_at=when if wp_status == "future" else None,
        images=[
            PublishImage(
                image_id=i["id"],
                image_type=i["image_type"],
                position=i["position"],
                blob_key=i["blob_key"],
                sha256=i["sha256"],
                content_type=i["content_type"] or "image/jpeg",
                alt_text=i["alt_text"],
                caption=i["caption"],
            )
            for i in ready
        ],
        known_external_id=known_external_id,
        deadline_at=deadline_at,
    )
    await conn.execute(
        "UPDATE publications SET request = $2 WHERE id = $1", publication_id, payload.model_dump(mode="json")
    )
    await conn.execute(
        "UPDATE contents SET publication_key = $2, updated_at = now() WHERE id = $1", content_id, key
    )
    try:
        event = make_event(payload, account_id=account_id, correlation_id=correlation_id)
    except EventTooLargeError as exc:
        raise RefusedError(413, f"the content is too large to publish: {exc}") from None
    await outbox.write(conn, [event])
    await notify(conn, publication_topic(account_id, publication_id))
    return {"publication_id": publication_id, "content_id": content_id, "status": "requested"}


async def request_publication(
    conn: asyncpg.Connection,
    outbox: Outbox,
    account_id: int,
    content_id: int,
    action: Action,
    *,
    allow_missing_images: bool,
    publish_at: datetime | None,
    timeout_s: int,
    correlation_id: str,
) -> dict[str, Any]:
    try:
        async with conn.transaction():
            return await _prepare(
                conn,
                account_id,
                content_id,
                action,
                allow_missing_images=allow_missing_images,
                publish_at=publish_at,
                timeout_s=timeout_s,
                correlation_id=correlation_id,
                outbox=outbox,
            )
    except RefusedError as refused:
        if refused.status_code == 404:
            raise not_found("Content") from None
        raise AppError(refused.status_code, refused.reason, errors={"content_id": [refused.reason]}) from None


async def request_batch(
    conn: asyncpg.Connection,
    outbox: Outbox,
    account_id: int,
    content_ids: list[int],
    *,
    allow_missing_images: bool,
    publish_at: datetime | None,
    atomic: bool,
    timeout_s: int,
    correlation_id: str,
) -> dict[str, Any]:
    """Each content is checked on its own; the accepted ones are requested in ONE transaction (a savepoint
    per item keeps a refusal from undoing its neighbours). `atomic`: all or nothing, so one refusal
    requests none of them (409, every refusal's reason by content id)."""
    results: list[dict[str, Any]] = []
    async with conn.transaction():
        for content_id in dict.fromkeys(content_ids):
            try:
                async with conn.transaction():
                    accepted = await _prepare(
                        conn,
                        account_id,
                        content_id,
                        "publish",
                        allow_missing_images=allow_missing_images,
                        publish_at=publish_at,
                        timeout_s=timeout_s,
                        correlation_id=correlation_id,
                        outbox=outbox,
                    )
                results.append({**accepted, "accepted": True, "reason": None})
            except RefusedError as refused:
                results.append(_refused(content_id, refused.reason))
        refusals = {str(r["content_id"]): [r["reason"]] for r in results if not r["accepted"]}
        if atomic and refusals:
            # Raised inside the transaction: every accepted item's publication and event is undone.
            raise AppError(
                409,
                f"Nothing was published: {len(refusals)} of {len(results)} contents cannot be published",
                errors=refusals,
            )
    accepted_count = sum(1 for r in results if r["accepted"])
    return {"accepted": accepted_count, "refused": len(results) - accepted_count, "results": results}


def _refused(content_id: int, reason: str) -> dict[str, Any]:
    return {
        "content_id": content_id,
        "accepted": False,
        "publication_id": None,
        "status": "refused",
        "reason": reason,
    }


async def publication_view(conn: asyncpg.Connection, account_id: int, publication_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(
        """
        SELECT p.id AS publication_id, p.content_id, p.site_id, p.publication_key, p.attempt_id, p.action,
               p.status, p.reason, p.code, p.external_id, p.external_url, p.requested_at, p.finished_at,
               c.sync_status
        FROM publications p JOIN contents c ON c.id = p.content_id
        WHERE p.id = $1 AND p.account_id = $2
        """,
        publication_id,
        account_id,
    )
    if row is None:
        raise not_found("Publication")
    return {**dict(row), "attempt_id": str(row["attempt_id"])}


async def list_publications(
    conn: asyncpg.Connection, account_id: int, content_id: int
) -> list[dict[str, Any]]:
    await get_content_row(conn, account_id, content_id)
    ids = await conn.fetch(
        "SELECT id FROM publications WHERE content_id = $1 AND account_id = $2 ORDER BY id DESC LIMIT 100",
        content_id,
        account_id,
    )
    return [await publication_view(conn, account_id, r["id"]) for r in ids]


@dataclass(frozen=True)
class QueueFilters:
    status: str | None = None
    scheduled_from: datetime | None = None  # with scheduled_to: scheduled posts only, by schedule
    scheduled_to: datetime | None = None


# A publication as the queue shows it: with its content's title and current sync status, and whether it is
# the content's latest (a newer one supersedes it: only the latest failed one is worth a retry).
_QUEUE_ROW = """
    SELECT p.id AS publication_id, p.content_id, c.title, p.site_id, p.action, p.status, p.reason,
           p.publish_at, p.external_url, c.sync_status, p.requested_at, p.finished_at,
           NOT EXISTS (SELECT 1 FROM publications n
                       WHERE n.account_id = p.account_id AND n.content_id = p.content_id AND n.id > p.id) AS latest
    FROM publications p JOIN contents c ON c.id = p.content_id"""


async def queued_publications(
    conn: asyncpg.Connection, account_id: int, publication_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """These publications as the queue shows them, by id; any the account does not have (any more) left out."""
    rows = await conn.fetch(
        f"{_QUEUE_ROW} WHERE p.id = ANY($1::bigint[]) AND p.account_id = $2 ORDER BY p.id",
        list(publication_ids),
        account_id,
    )
    return [dict(r) for r in rows]


async def publication_queue(
    conn: asyncpg.Connection, account_id: int, filters: QueueFilters, *, page: int, page_size: int
) -> dict[str, Any]:
    """The account's publications with their content's title and current sync status: newest first, or,
    when a schedule window is given, the scheduled ones in it by the time they go live (the calendar)."""
    params = Params()
    clauses = [f"p.account_id = {params.bind(account_id)}"]
    if filters.status is not None:
        clauses.append(f"p.status = {params.bind(filters.status)}")
    scheduled = filters.scheduled_from is not None or filters.scheduled_to is not None
    if scheduled:
        clauses.append("p.publish_at IS NOT NULL")
    for bound, operator in ((filters.scheduled_from, ">="), (filters.scheduled_to, "<")):
        if bound is not None:
            clauses.append(f"p.publish_at {operator} {params.bind(bound)}")
    count, rows = await offset_page(
        conn,
        # Every publication has its content (a foreign key), so the join keeps the count's rows.
        select=_QUEUE_ROW,
        count_from="publications p",
        where=" AND ".join(clauses),
        order_by="p.publish_at, p.id" if scheduled else "p.id DESC",
        params=params,
        page=page,
        page_size=page_size,
    )
    return {"count": count, "results": [dict(r) for r in rows], "page": page, "page_size": page_size}


async def sweep_overdue_publications(
    conn: asyncpg.Connection, outbox: Outbox, max_rerequests: int, timeout_s: int
) -> int:
    """Publications with no result by their deadline: re-request the same attempt (the publisher is
    idempotent by publication key and attempt id) a bounded number of times, then fail them."""
    rows = await conn.fetch(
        """
        SELECT id, account_id, content_id, rerequests, request FROM publications
        WHERE status = 'requested' AND deadline_at < now()
        ORDER BY deadline_at LIMIT 100 FOR UPDATE SKIP LOCKED
        """
    )
    for row in rows:
        if row["rerequests"] < max_rerequests:
            deadline_at = utcnow() + timedelta(seconds=timeout_s)
            payload = ContentPublishRequested.model_validate({**row["request"], "deadline_at": deadline_at})
            await outbox.write(
                conn,
                [
                    make_event(
                        payload,
                        account_id=row["account_id"],
                        correlation_id=f"sweeper:publication:{row['id']}",
                    )
                ],
            )
            await conn.execute(
                "UPDATE publications SET rerequests = rerequests + 1, deadline_at = $2 WHERE id = $1",
                row["id"],
                deadline_at,
            )
            continue
        reason = f"timed out after {row['rerequests'] + 1} attempts"
        await conn.execute(
            "UPDATE publications SET status = 'failed', reason = $2, code = 'timeout', finished_at = now() WHERE id = $1",
            row["id"],
            reason,
        )
        await conn.execute(
            "UPDATE contents SET sync_status = 'failed', updated_at = now() WHERE id = $1 AND external_url IS NULL",
            row["content_id"],
        )
        await notify(conn, publication_topic(row["account_id"], row["id"]))
    return len(rows)
