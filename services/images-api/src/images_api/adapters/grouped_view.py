"""The read model of the Writer Images page: content groups with their images, one page at a time.

A page costs three queries whatever its size (count, the page of contents, their images): no N+1.
Filters and sorts run on columns the images trigger maintains (`overall_status`), with indexes that
keep a page fast at 100k contents. The keyset cursor is opaque to clients.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import orjson

from images_api.adapters.media import MediaSigner
from images_api.adapters.paging import Params
from writer_images.http import invalid

Ordering = Literal[
    "content_title", "-content_title", "overall_status", "-overall_status", "updated_at", "-updated_at"
]
ORDERINGS: tuple[str, ...] = (
    "content_title",
    "-content_title",
    "overall_status",
    "-overall_status",
    "updated_at",
    "-updated_at",
)
_SORT_COLUMN = {
    "content_title": ("lower(c.title)", "text"),
    "overall_status": ("c.overall_status", "text"),
    "updated_at": ("c.updated_at", "timestamptz"),
}


@dataclass(frozen=True)
class GroupFilters:
    site_id: int | None = None
    sector_id: int | None = None
    search: str | None = None
    overall_status: str | None = None
    status: str | None = None
    sync_status: str | None = None
    image_type: str | None = None
    image_status: str | None = None


@dataclass(frozen=True)
class PageRequest:
    ordering: str = "content_title"
    page: int = 1
    page_size: int = 25
    cursor: str | None = None


def encode_cursor(ordering: str, value: Any, last_id: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = orjson.dumps([ordering, value, last_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, ordering: str) -> tuple[Any, int]:
    """The keyset position in a cursor, or 422 on "cursor". A cursor is client input: anything Postgres
    would refuse as a parameter (a NUL, an id beyond bigint, a time outside timestamptz) is refused here."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_ordering, value, last_id = orjson.loads(raw)
        if cursor_ordering != ordering or not isinstance(value, str):
            raise ValueError("cursor does not match the ordering")
        if type(last_id) is not int or not 0 < last_id <= _MAX_BIGINT:
            raise ValueError("cursor id is not a row id")
        if ordering.lstrip("-") == "updated_at":
            value = _cursor_time(value)
        elif "\x00" in value:
            raise ValueError("text parameters cannot carry NUL")
    except (ValueError, TypeError, OverflowError, orjson.JSONDecodeError):
        raise invalid("cursor", "not a cursor from this listing (or the ordering changed)") from None
    return value, last_id


_MAX_BIGINT = 2**63 - 1


def _cursor_time(value: str) -> datetime:
    """Cursors carry the offset Postgres gave; converting to UTC is where a date at the edge of the
    calendar (0001-01-01 at +14:00) overflows, so it fails here rather than in the driver."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("cursor time has no offset")
    return moment.astimezone(UTC)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(account_id: int, f: GroupFilters) -> tuple[str, list[Any]]:
    params = Params()
    bind = params.bind
    clauses = [f"c.account_id = {bind(account_id)}"]
    if f.site_id is not None:
        clauses.append(f"c.site_id = {bind(f.site_id)}")
    if f.sector_id is not None:
        clauses.append(f"c.sector_id = {bind(f.sector_id)}")
    if f.search:
        # Both sides lowercased by Postgres: Python lowercases some letters differently ("İ" becomes two
        # characters), and the title's trigram index is on Postgres's lower(title).
        clauses.append(f"lower(c.title) LIKE '%' || lower({bind(_escape_like(f.search))}) || '%'")
    if f.overall_status:
        clauses.append(f"c.overall_status = {bind(f.overall_status)}")
    if f.status:
        clauses.append(f"c.status = {bind(f.status)}")
    if f.sync_status:
        clauses.append(f"c.sync_status = {bind(f.sync_status)}")
    if f.image_type or f.image_status:
        inner = ["i.content_id = c.id"]
        if f.image_type:
            inner.append(f"i.image_type = {bind(f.image_type)}")
        if f.image_status:
            inner.append(f"i.status = {bind(f.image_status)}")
        clauses.append(f"EXISTS (SELECT 1 FROM images i WHERE {' AND '.join(inner)})")
    return " AND ".join(clauses), params.values


def image_view(row: Any, account_id: int, signer: MediaSigner, now: float) -> dict[str, Any]:
    return {
        "id": row["id"],
        "image_type": row["image_type"],
        "image_url": signer.url_for(account_id, row["blob_key"], now)
        if row["status"] == "generated"
        else None,
        "image_path": row["blob_key"],
        "prompt": row["prompt"],
        "status": row["status"],
        "position": row["position"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


async def content_groups(
    conn: asyncpg.Connection,
    account_id: int,
    filters: GroupFilters,
    page: PageRequest,
    signer: MediaSigner,
    now: float,
) -> dict[str, Any]:
    where, params = _where(account_id, filters)
    column, sql_type = _SORT_COLUMN[page.ordering.lstrip("-")]
    descending = page.ordering.startswith("-")
    direction = "DESC" if descending else "ASC"
    count: int = await conn.fetchval(f"SELECT count(*) FROM contents c WHERE {where}", *params)

    page_params = list(params)
    keyset = ""
    offset = (page.page - 1) * page.page_size
    if page.cursor:
        value, last_id = decode_cursor(page.cursor, page.ordering)
        page_params += [value, last_id]
        op = "<" if descending else ">"
        n = len(page_params)
        keyset = f" AND ({column}, c.id) {op} (${n - 1}::{sql_type}, ${n}::bigint)"
        offset = 0
    page_params += [page.page_size + 1, offset]
    n = len(page_params)
    rows = await conn.fetch(
        f"""
        SELECT c.id, c.title, c.status, c.external_id, c.external_url, c.sync_status, c.overall_status,
               {column} AS sort_value
        FROM contents c WHERE {where}{keyset}
        ORDER BY {column} {direction}, c.id {direction}
        LIMIT ${n - 1} OFFSET ${n}
        """,
        *page_params,
    )
    has_more = len(rows) > page.page_size
    rows = rows[: page.page_size]
    ids = [r["id"] for r in rows]
    images = await conn.fetch(
        """
        SELECT id, content_id, image_type, blob_key, prompt, status, position, created_at, updated_at
        FROM images WHERE content_id = ANY($1::bigint[]) ORDER BY content_id, position, id
        """,
        ids,
    )
    by_content: dict[int, list[asyncpg.Record]] = {}
    for image in images:
        by_content.setdefault(image["content_id"], []).append(image)

    results = []
    for r in rows:
        featured = None
        in_article = []
        for image in by_content.get(r["id"], ()):
            view = image_view(image, account_id, signer, now)
            if image["image_type"] == "featured":
                featured = featured or view
            else:
                in_article.append(view)
        results.append(
            {
                "content_id": r["id"],
                "content_title": r["title"],
                "featured_image": featured,
                "in_article_images": in_article,
                "overall_status": r["overall_status"],
                "status": r["status"],
                "external_id": r["external_id"],
                "external_url": r["external_url"],
                "sync_status": r["sync_status"],
            }
        )
    next_cursor = encode_cursor(page.ordering, rows[-1]["sort_value"], rows[-1]["id"]) if has_more else None
    return {
        "count": count,
        "results": results,
        "next_cursor": next_cursor,
        "page": page.page if not page.cursor else None,
        "page_size": page.page_size,
    }
