"""Sites (WordPress connections) and sectors. Credentials are sealed at rest and never returned."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from images_api.adapters.security import new_site_key, new_webhook_secret
from writer_images.events import SiteChanged, make_event
from writer_images.http import AppError, current_request_id, invalid, not_found
from writer_images.outbox import Outbox
from writer_images.secrets import SecretBox
from writer_images.urlguard import UnsafeUrlError, check_url_shape, is_private_address

SITE_COLUMNS = "id, name, base_url, username, site_key, revision, created_at, updated_at"


def validate_base_url(url: str, *, allow_private: bool) -> str:
    """http(s) with a host; private, loopback and link-local hosts only when configuration allows.

    No DNS here (the API must not hang on a resolver); the publisher re-checks with DNS before it connects.
    """
    try:
        cleaned = check_url_shape(url)
    except UnsafeUrlError as exc:
        raise invalid("base_url", str(exc)) from None
    host = (urlsplit(cleaned).hostname or "").lower()
    if not allow_private:
        private = host == "localhost" or host.endswith((".localhost", ".local"))
        with contextlib.suppress(ValueError):  # a name, not an address
            private = private or is_private_address(host)
        if private:
            raise invalid("base_url", "private, loopback and link-local addresses are not allowed")
    return cleaned


def site_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "base_url": row["base_url"],
        "username": row["username"],
        "site_key": row["site_key"],
        "revision": row["revision"],
        "has_application_password": True,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


async def _emit_site_changed(
    conn: asyncpg.Connection, outbox: Outbox, account_id: int, site_id: int, *, deleted: bool = False
) -> None:
    row = await conn.fetchrow("SELECT * FROM sites WHERE id = $1", site_id)
    payload = SiteChanged(
        site_id=row["id"],
        site_key=row["site_key"],
        name=row["name"],
        base_url=row["base_url"],
        username=row["username"],
        application_password_encrypted=row["application_password_sealed"],
        webhook_secret_encrypted=row["webhook_secret_sealed"],
        deleted=deleted,
        revision=row["revision"],
    )
    await outbox.write(
        conn, [make_event(payload, account_id=account_id, correlation_id=current_request_id())]
    )


async def create_site(
    conn: asyncpg.Connection,
    outbox: Outbox,
    box: SecretBox,
    account_id: int,
    *,
    name: str,
    base_url: str,
    username: str,
    application_password: str,
    allow_private: bool,
) -> dict[str, Any]:
    url = validate_base_url(base_url, allow_private=allow_private)
    webhook_secret = new_webhook_secret()
    async with conn.transaction():
        row = await conn.fetchrow(
            f"""
            INSERT INTO sites (account_id, name, base_url, username, application_password_sealed,
                               site_key, webhook_secret_sealed)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {SITE_COLUMNS}
            """,
            account_id,
            name,
            url,
            username,
            box.seal(application_password),
            new_site_key(),
            box.seal(webhook_secret),
        )
        await _emit_site_changed(conn, outbox, account_id, row["id"])
    # The webhook secret is shown once, at creation, so the bridge plugin can be configured.
    return {**site_view(row), "webhook_secret": webhook_secret}


async def get_site_row(conn: asyncpg.Connection, account_id: int, site_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"SELECT {SITE_COLUMNS} FROM sites WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL",
        site_id,
        account_id,
    )
    if row is None:
        raise not_found("Site")
    return row


async def list_sites(conn: asyncpg.Connection, account_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {SITE_COLUMNS} FROM sites WHERE account_id = $1 AND deleted_at IS NULL ORDER BY id",
        account_id,
    )
    return [site_view(r) for r in rows]


async def update_site(
    conn: asyncpg.Connection,
    outbox: Outbox,
    box: SecretBox,
    account_id: int,
    site_id: int,
    changes: dict[str, Any],
    *,
    allow_private: bool,
) -> dict[str, Any]:
    async with conn.transaction():
        await get_site_row(conn, account_id, site_id)
        sets: dict[str, Any] = {}
        if changes.get("name") is not None:
            sets["name"] = changes["name"]
        if changes.get("base_url") is not None:
            sets["base_url"] = validate_base_url(changes["base_url"], allow_private=allow_private)
        if changes.get("username") is not None:
            sets["username"] = changes["username"]
        if changes.get("application_password") is not None:
            sets["application_password_sealed"] = box.seal(changes["application_password"])
        if sets:
            assignments = ", ".join(f"{col} = ${i + 2}" for i, col in enumerate(sets))
            await conn.execute(
                f"UPDATE sites SET {assignments}, revision = revision + 1, updated_at = now() WHERE id = $1",
                site_id,
                *sets.values(),
            )
            await _emit_site_changed(conn, outbox, account_id, site_id)
        return site_view(await get_site_row(conn, account_id, site_id))


async def delete_site(conn: asyncpg.Connection, outbox: Outbox, account_id: int, site_id: int) -> None:
    async with conn.transaction():
        await get_site_row(conn, account_id, site_id)
        await conn.execute(
            "UPDATE sites SET deleted_at = now(), revision = revision + 1, updated_at = now() WHERE id = $1",
            site_id,
        )
        await _emit_site_changed(conn, outbox, account_id, site_id, deleted=True)


# --- sectors ------------------------------------------------------------------------------------

SECTOR_COLUMNS = "id, site_id, name, created_at, updated_at"


def sector_view(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row)


async def create_sector(conn: asyncpg.Connection, account_id: int, site_id: int, name: str) -> dict[str, Any]:
    await get_site_row(conn, account_id, site_id)
    row = await conn.fetchrow(
        f"INSERT INTO sectors (account_id, site_id, name) VALUES ($1, $2, $3) RETURNING {SECTOR_COLUMNS}",
        account_id,
        site_id,
        name,
    )
    return sector_view(row)


async def list_sectors(conn: asyncpg.Connection, account_id: int, site_id: int) -> list[dict[str, Any]]:
    await get_site_row(conn, account_id, site_id)
    rows = await conn.fetch(
        f"SELECT {SECTOR_COLUMNS} FROM sectors WHERE account_id = $1 AND site_id = $2 ORDER BY id",
        account_id,
        site_id,
    )
    return [sector_view(r) for r in rows]


async def get_sector(conn: asyncpg.Connection, account_id: int, sector_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""SELECT {SECTOR_COLUMNS} FROM sectors s
            WHERE id = $1 AND account_id = $2
              AND EXISTS (SELECT 1 FROM sites WHERE sites.id = s.site_id AND deleted_at IS NULL)""",
        sector_id,
        account_id,
    )
    if row is None:
        raise not_found("Sector")
    return sector_view(row)


async def rename_sector(
    conn: asyncpg.Connection, account_id: int, sector_id: int, name: str
) -> dict[str, Any]:
    await get_sector(conn, account_id, sector_id)
    row = await conn.fetchrow(
        f"UPDATE sectors SET name = $2, updated_at = now() WHERE id = $1 RETURNING {SECTOR_COLUMNS}",
        sector_id,
        name,
    )
    return sector_view(row)


async def delete_sector(conn: asyncpg.Connection, account_id: int, sector_id: int) -> None:
    await get_sector(conn, account_id, sector_id)
    await conn.execute("DELETE FROM sectors WHERE id = $1", sector_id)


async def check_site_and_sector(
    conn: asyncpg.Connection, account_id: int, site_id: int | None, sector_id: int | None
) -> None:
    """A content's site and sector must be the tenant's own, and the sector must belong to the site."""
    if site_id is not None:
        await get_site_row(conn, account_id, site_id)
    if sector_id is not None:
        sector = await get_sector(conn, account_id, sector_id)
        if site_id is not None and sector["site_id"] != site_id:
            raise AppError(
                422,
                "Invalid input: sector_id: belongs to another site",
                errors={"sector_id": ["the sector belongs to another site"]},
            )
