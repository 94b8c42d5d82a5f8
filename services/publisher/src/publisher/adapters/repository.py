"""The publisher's own tables: sites, publications and the media ledger (asyncpg, schema `publisher`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from writer_images.events import ContentPublishRequested, SiteChanged


@dataclass(frozen=True)
class SiteRow:
    site_id: int
    account_id: int
    base_url: str
    username: str
    application_password_sealed: str
    deleted: bool
    revision: int


@dataclass(frozen=True)
class LedgerEntry:
    media_id: int | None
    source_url: str | None
    upload_attempts: int


async def upsert_site(conn: asyncpg.Connection, account_id: int, site: SiteChanged) -> bool:
    """Store the site's connection; an older or equal revision than the stored one changes nothing."""
    changed = await conn.fetchval(
        """
        INSERT INTO sites (site_id, account_id, site_key, name, base_url, username, application_password_sealed,
                           deleted, revision)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (site_id) DO UPDATE SET
            account_id = EXCLUDED.account_id, site_key = EXCLUDED.site_key, name = EXCLUDED.name,
            base_url = EXCLUDED.base_url, username = EXCLUDED.username,
            application_password_sealed = EXCLUDED.application_password_sealed, deleted = EXCLUDED.deleted,
            revision = EXCLUDED.revision, updated_at = now()
        WHERE sites.revision < EXCLUDED.revision
        RETURNING true
        """,
        site.site_id,
        account_id,
        site.site_key,
        site.name,
        site.base_url.rstrip("/"),
        site.username,
        site.application_password_encrypted,
        site.deleted,
        site.revision,
    )
    return bool(changed)


async def get_site(conn: asyncpg.Connection, site_id: int) -> SiteRow | None:
    row = await conn.fetchrow(
        """
        SELECT site_id, account_id, base_url, username, application_password_sealed, deleted, revision
        FROM sites WHERE site_id = $1
        """,
        site_id,
    )
    return SiteRow(**dict(row)) if row else None


@dataclass(frozen=True)
class AttemptStanding:
    """Where an attempt stands among its key's attempts, read under the database's clock (the one images-api's
    sweeper judges deadlines by)."""

    newest_publication_id: int
    deadline_at: datetime
    now: datetime


@dataclass(frozen=True)
class PublicationState:
    post_id: int | None
    create_attempts: int


async def note_attempt(conn: asyncpg.Connection, request: ContentPublishRequested) -> None:
    """Remember an attempt, keeping the latest deadline it was requested with (a re-request extends it)."""
    await conn.execute(
        """
        INSERT INTO attempts (publication_key, attempt_id, publication_id, deadline_at) VALUES ($1, $2, $3, $4)
        ON CONFLICT (publication_key, attempt_id) DO UPDATE SET deadline_at = EXCLUDED.deadline_at
        WHERE attempts.deadline_at < EXCLUDED.deadline_at
        """,
        request.publication_key,
        request.attempt_id,
        request.publication_id,
        request.deadline_at,
    )


async def start_publication(
    conn: asyncpg.Connection, request: ContentPublishRequested
) -> tuple[PublicationState, AttemptStanding]:
    """Note the attempt and create or re-arm the publication row for it, unless a newer attempt is known;
    returns the post id we already know (ours or the request's) and where the attempt stands."""
    external = request.known_external_id or ""
    known = int(external) if external.isdigit() else None
    async with conn.transaction():
        await note_attempt(conn, request)
        await conn.execute(
            """
            INSERT INTO publications (publication_key, publication_id, content_id, site_id, post_id, status,
                                      last_attempt_id)
            VALUES ($1, $2, $3, $4, $5, 'publishing', $6)
            ON CONFLICT (publication_key) DO UPDATE SET
                publication_id = EXCLUDED.publication_id, status = 'publishing',
                last_attempt_id = EXCLUDED.last_attempt_id, last_error = NULL,
                post_id = COALESCE(publications.post_id, EXCLUDED.post_id), updated_at = now()
            -- An older attempt waking late must not take the row back: the newer attempt's mark_published or
            -- mark_failed would then match nothing. The row's own id is compared too because it is re-read
            -- after waiting for a concurrent start's row lock, which the subquery's snapshot may not see.
            WHERE publications.publication_id <= EXCLUDED.publication_id
              AND EXCLUDED.publication_id >= (SELECT max(publication_id) FROM attempts WHERE publication_key = $1)
            """,
            request.publication_key,
            request.publication_id,
            request.content_id,
            request.site_id,
            known,
            request.attempt_id,
        )
        row = await conn.fetchrow(
            "SELECT post_id, create_attempts FROM publications WHERE publication_key = $1",
            request.publication_key,
        )
        standing = await attempt_standing(conn, request.publication_key, request.attempt_id)
    return PublicationState(row["post_id"], row["create_attempts"]), standing


async def attempt_standing(
    conn: asyncpg.Connection, publication_key: str, attempt_id: uuid.UUID
) -> AttemptStanding:
    """The newest publication known for the key and this attempt's deadline (the attempt must be noted)."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT max(publication_id) FROM attempts WHERE publication_key = $1) AS newest_publication_id,
               deadline_at, clock_timestamp() AS now
        FROM attempts WHERE publication_key = $1 AND attempt_id = $2
        """,
        publication_key,
        attempt_id,
    )
    return AttemptStanding(row["newest_publication_id"], row["deadline_at"], row["now"])


async def lock(conn: asyncpg.Connection, key: str) -> None:
    """Serialize everyone creating the same external thing (a post, a media item) until this transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)


async def publication_state(conn: asyncpg.Connection, publication_key: str) -> PublicationState:
    row = await conn.fetchrow(
        "SELECT post_id, create_attempts FROM publications WHERE publication_key = $1", publication_key
    )
    return PublicationState(row["post_id"], row["create_attempts"])


async def note_create_attempt(conn: asyncpg.Connection, publication_key: str) -> None:
    """Committed before a post create: anyone holding an older lookup must look again."""
    await conn.execute(
        "UPDATE publications SET create_attempts = create_attempts + 1 WHERE publication_key = $1",
        publication_key,
    )


async def store_post_id(conn: asyncpg.Connection, publication_key: str, post_id: int | None) -> None:
    await conn.execute(
        "UPDATE publications SET post_id = $2, updated_at = now() WHERE publication_key = $1",
        publication_key,
        post_id,
    )


async def mark_published(
    conn: asyncpg.Connection, publication_key: str, attempt_id: uuid.UUID, wp_status: str, link: str
) -> None:
    await conn.execute(
        """
        UPDATE publications SET status = 'published', wp_status = $3, link = $4, last_error = NULL, updated_at = now()
        WHERE publication_key = $1 AND last_attempt_id = $2
        """,
        publication_key,
        attempt_id,
        wp_status,
        link,
    )


async def mark_failed(
    conn: asyncpg.Connection, publication_key: str, attempt_id: uuid.UUID, reason: str
) -> None:
    await conn.execute(
        """
        UPDATE publications SET status = 'failed', last_error = $3, updated_at = now()
        WHERE publication_key = $1 AND last_attempt_id = $2
        """,
        publication_key,
        attempt_id,
        reason[:2000],
    )


async def ledger_entry(conn: asyncpg.Connection, site_id: int, sha256: str) -> LedgerEntry | None:
    row = await conn.fetchrow(
        "SELECT media_id, source_url, upload_attempts FROM media WHERE site_id = $1 AND sha256 = $2",
        site_id,
        sha256,
    )
    return LedgerEntry(**dict(row)) if row else None


async def note_upload_attempt(conn: asyncpg.Connection, site_id: int, sha256: str) -> int:
    """Record, before the upload, that one is about to happen; returns how many were tried so far."""
    attempts: int = await conn.fetchval(
        """
        INSERT INTO media (site_id, sha256, upload_attempts) VALUES ($1, $2, 1)
        ON CONFLICT (site_id, sha256) DO UPDATE SET upload_attempts = media.upload_attempts + 1, updated_at = now()
        RETURNING upload_attempts
        """,
        site_id,
        sha256,
    )
    return attempts


async def record_media(
    conn: asyncpg.Connection, site_id: int, sha256: str, media_id: int, source_url: str
) -> None:
    await conn.execute(
        """
        INSERT INTO media (site_id, sha256, media_id, source_url) VALUES ($1, $2, $3, $4)
        ON CONFLICT (site_id, sha256) DO UPDATE SET media_id = $3, source_url = $4, updated_at = now()
        """,
        site_id,
        sha256,
        media_id,
        source_url,
    )
