"""Content and image slots: create with default prompts, edit, delete, bulk status update."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import asyncpg

from images_api.adapters.media import MediaSigner
from images_api.domain import rules
from images_api.service import image_settings
from images_api.service.sites import check_site_and_sector
from writer_images.http import AppError, invalid, not_found

CONTENT_COLUMNS = """id, site_id, sector_id, title, html, status, publish_at, external_id, external_url,
    sync_status, wp_status, publication_key, overall_status, images_total, images_generated, images_failed,
    created_at, updated_at"""
IMAGE_COLUMNS = """id, content_id, image_type, position, prompt, alt_text, caption, status, revision, blob_key,
    sha256, content_type, renditions, provider, model, revised_prompt, error, created_at, updated_at,
    generated_at"""

# A content with no post on its site holds what a new one holds: no sync status (the seed's rule offers
# the publish button), and no post id or publication key for a publish to carry.
_NOT_ON_WORDPRESS: dict[str, None] = dict.fromkeys(
    (
        "external_id",
        "external_url",
        "sync_status",
        "wp_status",
        "wp_modified_at",
        "wp_title",
        "publication_key",
    )
)


def image_detail(row: asyncpg.Record, account_id: int, signer: MediaSigner, now: float) -> dict[str, Any]:
    generated = row["status"] == "generated"
    renditions = [
        {**r, "url": signer.url_for(account_id, r.get("blob_key"), now)} for r in (row["renditions"] or [])
    ]
    return {
        "id": row["id"],
        "content_id": row["content_id"],
        "image_type": row["image_type"],
        "image_url": signer.url_for(account_id, row["blob_key"], now) if generated else None,
        "image_path": row["blob_key"],
        "prompt": row["prompt"],
        "alt_text": row["alt_text"],
        "caption": row["caption"],
        "status": row["status"],
        "position": row["position"],
        "revision": row["revision"],
        "sha256": row["sha256"],
        "renditions": renditions,
        "provider": row["provider"],
        "model": row["model"],
        "revised_prompt": row["revised_prompt"],
        "error": row["error"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "generated_at": row["generated_at"],
    }


async def content_detail(
    conn: asyncpg.Connection, account_id: int, content_id: int, signer: MediaSigner
) -> dict[str, Any]:
    row = await get_content_row(conn, account_id, content_id)
    images = await conn.fetch(
        f"SELECT {IMAGE_COLUMNS} FROM images WHERE content_id = $1 ORDER BY position, id", content_id
    )
    now = time.time()
    return {**dict(row), "images": [image_detail(i, account_id, signer, now) for i in images]}


async def get_content_row(
    conn: asyncpg.Connection, account_id: int, content_id: int, *, for_update: bool = False
) -> asyncpg.Record:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {CONTENT_COLUMNS} FROM contents WHERE id = $1 AND account_id = $2{lock}",
        content_id,
        account_id,
    )
    if row is None:
        raise not_found("Content")
    return row


async def insert_slots(
    conn: asyncpg.Connection, account_id: int, content_id: int, slots: list[rules.ImageSlot]
) -> None:
    await conn.execute(
        """
        INSERT INTO images (account_id, content_id, image_type, position, prompt, alt_text)
        SELECT $1, $2, * FROM unnest($3::text[], $4::int[], $5::text[], $6::text[])
        """,
        account_id,
        content_id,
        [s.image_type for s in slots],
        [s.position for s in slots],
        [s.prompt for s in slots],
        [s.alt_text for s in slots],
    )


async def create_content(
    conn: asyncpg.Connection,
    account_id: int,
    *,
    title: str,
    html: str,
    status: str,
    site_id: int | None,
    sector_id: int | None,
    publish_at: datetime | None,
    signer: MediaSigner,
) -> dict[str, Any]:
    async with conn.transaction():
        await check_site_and_sector(conn, account_id, site_id, sector_id)
        settings = await image_settings.load(conn, account_id)
        with _site_or_sector_deleted_meanwhile():
            content_id = await insert_content(
                conn,
                account_id,
                title=title,
                html=html,
                status=status,
                site_id=site_id,
                sector_id=sector_id,
                publish_at=publish_at,
                in_article_slots=settings.max_in_article_images,
            )
        return await content_detail(conn, account_id, content_id, signer)


@contextlib.contextmanager
def _site_or_sector_deleted_meanwhile() -> Iterator[None]:
    """404 when the site or sector, checked before, was deleted by a concurrent request before this write."""
    try:
        yield
    except asyncpg.ForeignKeyViolationError as exc:
        raise not_found("Sector" if "sector" in (exc.constraint_name or "") else "Site") from None


async def insert_content(
    conn: asyncpg.Connection,
    account_id: int,
    *,
    title: str,
    html: str,
    status: str,
    site_id: int | None,
    sector_id: int | None,
    publish_at: datetime | None,
    in_article_slots: int,
) -> int:
    """The content row and its image slots (prompts from the title and the H2s); returns the content id."""
    content_id: int = await conn.fetchval(
        """
        INSERT INTO contents (account_id, site_id, sector_id, title, html, status, publish_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
        """,
        account_id,
        site_id,
        sector_id,
        title,
        html,
        status,
        publish_at,
    )
    await insert_slots(conn, account_id, content_id, rules.default_slots(title, html, in_article_slots))
    return content_id


async def update_content(
    conn: asyncpg.Connection, account_id: int, content_id: int, changes: dict[str, Any], signer: MediaSigner
) -> dict[str, Any]:
    async with conn.transaction():
        current = await get_content_row(conn, account_id, content_id, for_update=True)
        allowed = ("title", "html", "status", "site_id", "sector_id", "publish_at")
        sets = {k: v for k, v in changes.items() if k in allowed}
        for required in ("title", "html", "status"):
            if required in sets and sets[required] is None:
                raise invalid(required, "may not be null")
        site_id = sets.get("site_id", current["site_id"])
        sector_id = sets.get("sector_id", current["sector_id"])
        if "site_id" in sets or "sector_id" in sets:
            await check_site_and_sector(conn, account_id, site_id, sector_id)
        if site_id != current["site_id"]:
            await _refuse_while_publishing(conn, account_id, content_id)
            # The post belongs to the old site: kept, a publish to the new site would carry its id and
            # the publisher would overwrite whatever post has that id there.
            sets.update(_NOT_ON_WORDPRESS)
        if sets:
            assignments = ", ".join(f"{col} = ${i + 2}" for i, col in enumerate(sets))
            with _site_or_sector_deleted_meanwhile():
                await conn.execute(
                    f"UPDATE contents SET {assignments}, updated_at = now() WHERE id = $1",
                    content_id,
                    *sets.values(),
                )
        return await content_detail(conn, account_id, content_id, signer)


async def publication_in_flight(conn: asyncpg.Connection, account_id: int, content_id: int) -> int | None:
    """The id of the content's publication still waiting for its result, if any."""
    in_flight: int | None = await conn.fetchval(
        "SELECT id FROM publications WHERE account_id = $1 AND content_id = $2 AND status = 'requested' LIMIT 1",
        account_id,
        content_id,
    )
    return in_flight


async def _refuse_while_publishing(conn: asyncpg.Connection, account_id: int, content_id: int) -> None:
    """A publication's result names the site it was requested for: arriving after a move, it would link
    the content to the old site's post again."""
    in_flight = await publication_in_flight(conn, account_id, content_id)
    if in_flight:
        reason = (
            f"publication {in_flight} of this content is still in progress; change the site once it is done"
        )
        raise AppError(409, reason, errors={"site_id": [reason]})


async def delete_content(conn: asyncpg.Connection, account_id: int, content_id: int) -> None:
    async with conn.transaction():
        await get_content_row(conn, account_id, content_id, for_update=True)
        await conn.execute("DELETE FROM contents WHERE id = $1", content_id)


async def get_image_row(
    conn: asyncpg.Connection, account_id: int, image_id: int, *, for_update: bool = False
) -> asyncpg.Record:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {IMAGE_COLUMNS} FROM images WHERE id = $1 AND account_id = $2{lock}", image_id, account_id
    )
    if row is None:
        raise not_found("Image")
    return row


async def update_image(
    conn: asyncpg.Connection, account_id: int, image_id: int, changes: dict[str, Any], signer: MediaSigner
) -> dict[str, Any]:
    """A new prompt bumps the revision (results for the old one are ignored from now on) and marks the
    image for regeneration; the alt text follows the prompt unless it is given too."""
    async with conn.transaction():
        current = await get_image_row(conn, account_id, image_id, for_update=True)
        prompt = changes.get("prompt")
        if "prompt" in changes and not prompt:
            raise invalid("prompt", "may not be empty")
        if prompt is not None and prompt != current["prompt"]:
            alt_text = changes.get("alt_text") or rules.alt_text_from_prompt(prompt)
            await conn.execute(
                """
                UPDATE images SET prompt = $2, alt_text = $3, revision = revision + 1, status = 'pending',
                                  error = NULL, updated_at = now()
                WHERE id = $1
                """,
                image_id,
                prompt,
                alt_text,
            )
        elif changes.get("alt_text") is not None:
            await conn.execute(
                "UPDATE images SET alt_text = $2, updated_at = now() WHERE id = $1",
                image_id,
                changes["alt_text"],
            )
        if "caption" in changes:
            await conn.execute(
                "UPDATE images SET caption = $2, updated_at = now() WHERE id = $1",
                image_id,
                changes["caption"],
            )
        row = await get_image_row(conn, account_id, image_id)
        return image_detail(row, account_id, signer, time.time())


async def add_in_article_image(
    conn: asyncpg.Connection, account_id: int, content_id: int, prompt: str, signer: MediaSigner
) -> dict[str, Any]:
    async with conn.transaction():
        await get_content_row(conn, account_id, content_id, for_update=True)
        position: int = await conn.fetchval(
            "SELECT coalesce(max(position), 0) + 1 FROM images WHERE content_id = $1", content_id
        )
        slot = rules.ImageSlot("in_article", position, prompt, rules.alt_text_from_prompt(prompt))
        await insert_slots(conn, account_id, content_id, [slot])
        image_id: int = await conn.fetchval(
            "SELECT id FROM images WHERE content_id = $1 AND position = $2 ORDER BY id DESC LIMIT 1",
            content_id,
            position,
        )
        return image_detail(await get_image_row(conn, account_id, image_id), account_id, signer, time.time())


async def delete_image(conn: asyncpg.Connection, account_id: int, image_id: int) -> None:
    async with conn.transaction():
        row = await get_image_row(conn, account_id, image_id, for_update=True)
        if row["image_type"] == "featured":
            raise AppError(409, "the featured image slot cannot be deleted; edit its prompt instead")
        if row["status"] in rules.RUNNING_STATUSES:
            # Its task item would go with it and the task would wait forever for a result it can no longer
            # record (its live progress never ends).
            raise AppError(
                409,
                f"the image is {row['status']}; wait for it to finish or set its status first, then delete it",
            )
        await conn.execute("DELETE FROM images WHERE id = $1", image_id)
