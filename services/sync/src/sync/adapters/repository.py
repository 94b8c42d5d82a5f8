"""Postgres access for the sync schema. Every function runs on the caller's connection (and transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from sync.domain.changes import PostState
from writer_images.events import OutgoingEvent
from writer_images.outbox import OUTBOX_COLUMNS, outbox_values


@dataclass(frozen=True)
class Site:
    site_id: int
    account_id: int
    site_key: str
    base_url: str
    username: str
    application_password_sealed: str
    webhook_secret_sealed: str
    revision: int
    deleted: bool


_SITE_COLUMNS = (
    "site_id, account_id, site_key, base_url, username, application_password_sealed, "
    "webhook_secret_sealed, revision, deleted"
)


def _site(row: asyncpg.Record | None) -> Site | None:
    return Site(**dict(row)) if row is not None else None


async def upsert_site(conn: asyncpg.Connection, site: Site) -> bool:
    """Apply a `site.changed`; an older or equal revision changes nothing. True when applied."""
    applied = await conn.fetchval(
        f"""
        INSERT INTO sites ({_SITE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (site_id) DO UPDATE SET
            account_id = EXCLUDED.account_id, site_key = EXCLUDED.site_key, base_url = EXCLUDED.base_url,
            username = EXCLUDED.username, application_password_sealed = EXCLUDED.application_password_sealed,
            webhook_secret_sealed = EXCLUDED.webhook_secret_sealed, revision = EXCLUDED.revision,
            deleted = EXCLUDED.deleted, updated_at = now()
        WHERE sites.revision < EXCLUDED.revision
        RETURNING true
        """,
        site.site_id,
        site.account_id,
        site.site_key,
        site.base_url,
        site.username,
        site.application_password_sealed,
        site.webhook_secret_sealed,
        site.revision,
        site.deleted,
    )
    if applied:
        await conn.execute(
            "INSERT INTO reconcile_state (site_id) VALUES ($1) ON CONFLICT DO NOTHING", site.site_id
        )
    return bool(applied)


async def live_site_by_key(conn: asyncpg.Connection | asyncpg.Pool, site_key: str) -> Site | None:
    row = await conn.fetchrow(
        f"SELECT {_SITE_COLUMNS} FROM sites WHERE site_key = $1 AND NOT deleted", site_key
    )
    return _site(row)


async def site_by_id(conn: asyncpg.Connection | asyncpg.Pool, site_id: int) -> Site | None:
    return _site(await conn.fetchrow(f"SELECT {_SITE_COLUMNS} FROM sites WHERE site_id = $1", site_id))


# The one rule for "is this observation news?", applied atomically by the upserts below (the row is locked
# by ON CONFLICT, so concurrent deliveries of one change emit once): the same (status, modified, title) again
# is a repeat; an older modified_gmt is a late delivery of an old change; `deleted` is final (WordPress never
# reuses post ids). The title counts because WordPress keeps whole seconds: a title edited in the second of
# the previous change has the same (status, modified). Only webhooks carry it (the plugin's raw title); an
# observation without one says nothing about it.
_NEWS_RULE = """
    known_posts.wp_status <> 'deleted'
    AND ((known_posts.wp_status, known_posts.modified_gmt)
            IS DISTINCT FROM (EXCLUDED.wp_status, EXCLUDED.modified_gmt)
         OR (EXCLUDED.title IS NOT NULL AND EXCLUDED.title IS DISTINCT FROM known_posts.title))
    AND (known_posts.modified_gmt IS NULL OR EXCLUDED.modified_gmt IS NULL
         OR EXCLUDED.modified_gmt >= known_posts.modified_gmt)
"""

_APPLY_OBSERVATION = """
    wp_status = EXCLUDED.wp_status,
    modified_gmt = COALESCE(EXCLUDED.modified_gmt, known_posts.modified_gmt),
    title = COALESCE(EXCLUDED.title, known_posts.title),
    publication_key = COALESCE(EXCLUDED.publication_key, known_posts.publication_key),
    ours = known_posts.ours OR EXCLUDED.ours,
    updated_at = now()
"""


@dataclass(frozen=True)
class DeliveryOutcome:
    site_current: bool  # the site still has the revision the caller authenticated against
    fresh: bool  # first delivery of this webhook id
    news: bool  # the post's state changed: the event is in the outbox


async def record_delivery(
    conn: asyncpg.Connection | asyncpg.Pool,
    webhook_id: str,
    site: Site,
    state: PostState,
    event: OutgoingEvent,
) -> DeliveryOutcome:
    """One statement, hence one transaction and one round trip: check that the site is still at the
    revision whose secret verified the webhook, record the webhook id, and for a fresh id record the post's
    state and, when it is news, write `event` to the outbox. The caller wakes the relay (no NOTIFY here:
    the receiver and its relay share a process, and a notification per webhook cost the server more)."""
    row = await conn.fetchrow(
        f"""
        WITH site AS (
            SELECT 1 FROM sites WHERE site_id = $2 AND revision = $7 AND NOT deleted
        ), delivery AS (
            INSERT INTO webhook_deliveries (webhook_id, site_id, post_id, wp_status)
            SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM site)
            ON CONFLICT DO NOTHING RETURNING 1
        ), observed AS (
            INSERT INTO known_posts (site_id, post_id, publication_key, wp_status, modified_gmt, ours, title)
            SELECT $2, $3, $5::text, $4, $6::timestamptz, $5::text IS NOT NULL, $14::text
            WHERE EXISTS (SELECT 1 FROM delivery)
            ON CONFLICT (site_id, post_id) DO UPDATE SET {_APPLY_OBSERVATION}
            WHERE {_NEWS_RULE}
            RETURNING 1
        ), emitted AS (
            INSERT INTO outbox ({OUTBOX_COLUMNS})
            SELECT $8, $9, $10, $11, $12, $13 WHERE EXISTS (SELECT 1 FROM observed)
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM site) AS site_current,
               EXISTS (SELECT 1 FROM delivery) AS fresh,
               EXISTS (SELECT 1 FROM emitted) AS news
        """,
        webhook_id,
        site.site_id,
        state.post_id,
        state.wp_status,
        state.publication_key,
        state.modified_gmt,
        site.revision,
        *outbox_values(event),
        state.title,
    )
    assert row is not None
    return DeliveryOutcome(site_current=row["site_current"], fresh=row["fresh"], news=row["news"])


async def record_observations(
    conn: asyncpg.Connection, site_id: int, states: Sequence[PostState]
) -> dict[int, bool]:
    """Upsert what the reconciler saw; returns {post_id: was_unknown} for the posts whose state is news."""
    latest = {s.post_id: s for s in states}  # one row per post: ON CONFLICT cannot touch a row twice
    rows = await conn.fetch(
        f"""
        INSERT INTO known_posts (site_id, post_id, publication_key, wp_status, modified_gmt, ours)
        SELECT $1, u.post_id, u.publication_key, u.wp_status, u.modified_gmt, u.publication_key IS NOT NULL
        FROM unnest($2::bigint[], $3::text[], $4::text[], $5::timestamptz[])
             AS u(post_id, publication_key, wp_status, modified_gmt)
        ON CONFLICT (site_id, post_id) DO UPDATE SET {_APPLY_OBSERVATION}
        WHERE {_NEWS_RULE}
        RETURNING post_id, (xmax = 0) AS inserted
        """,
        site_id,
        [s.post_id for s in latest.values()],
        [s.publication_key for s in latest.values()],
        [s.wp_status for s in latest.values()],
        [s.modified_gmt for s in latest.values()],
    )
    return {r["post_id"]: r["inserted"] for r in rows}


async def record_published(conn: asyncpg.Connection, site_id: int, post_id: int, wp_status: str) -> None:
    """A post Writer Images published: check it for deletion from now on. A state already observed
    from WordPress (newer than the publisher's view) is kept."""
    await conn.execute(
        """
        INSERT INTO known_posts (site_id, post_id, wp_status, ours) VALUES ($1, $2, $3, true)
        ON CONFLICT (site_id, post_id) DO UPDATE SET ours = true, updated_at = now()
        """,
        site_id,
        post_id,
        wp_status,
    )


async def known_post_states(
    conn: asyncpg.Connection, site_id: int, post_ids: Sequence[int]
) -> dict[int, tuple[str, datetime | None]]:
    rows = await conn.fetch(
        "SELECT post_id, wp_status, modified_gmt FROM known_posts WHERE site_id = $1 AND post_id = ANY($2::bigint[])",
        site_id,
        list(post_ids),
    )
    return {r["post_id"]: (r["wp_status"], r["modified_gmt"]) for r in rows}


async def posts_to_check(conn: asyncpg.Connection | asyncpg.Pool, site_id: int) -> list[int]:
    """Posts we published that WordPress may have deleted since."""
    rows = await conn.fetch(
        "SELECT post_id FROM known_posts WHERE site_id = $1 AND ours AND wp_status <> 'deleted' ORDER BY post_id",
        site_id,
    )
    return [r["post_id"] for r in rows]


async def prune_deliveries(conn: asyncpg.Connection | asyncpg.Pool, older_than_s: int) -> int:
    status: str = await conn.execute(
        "DELETE FROM webhook_deliveries WHERE received_at < now() - make_interval(secs => $1)",
        float(older_than_s),
    )
    return int(status.split()[-1])


# --- reconciler state ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconcileState:
    site_id: int
    modified_after: datetime | None
    failures: int


async def reconcile_state(conn: asyncpg.Connection | asyncpg.Pool, site_id: int) -> ReconcileState:
    row = await conn.fetchrow(
        "SELECT site_id, modified_after, failures FROM reconcile_state WHERE site_id = $1", site_id
    )
    if row is None:
        return ReconcileState(site_id, None, 0)
    return ReconcileState(row["site_id"], row["modified_after"], row["failures"])


async def due_sites(conn: asyncpg.Connection | asyncpg.Pool, limit: int) -> list[int]:
    rows = await conn.fetch(
        """
        SELECT r.site_id FROM reconcile_state r JOIN sites s USING (site_id)
        WHERE NOT s.deleted AND r.next_attempt_at <= now()
        ORDER BY r.next_attempt_at LIMIT $1
        """,
        limit,
    )
    return [r["site_id"] for r in rows]


async def advance_watermark(conn: asyncpg.Connection, site_id: int, modified_after: datetime) -> None:
    await conn.execute(
        """
        INSERT INTO reconcile_state (site_id, modified_after) VALUES ($1, $2)
        ON CONFLICT (site_id) DO UPDATE SET modified_after = GREATEST(
            reconcile_state.modified_after, EXCLUDED.modified_after)
        """,
        site_id,
        modified_after,
    )


async def record_success(conn: asyncpg.Connection | asyncpg.Pool, site_id: int, next_in_s: float) -> None:
    await conn.execute(
        """
        INSERT INTO reconcile_state (site_id, last_run_at, last_success_at, next_attempt_at)
        VALUES ($1, now(), now(), now() + make_interval(secs => $2))
        ON CONFLICT (site_id) DO UPDATE SET last_run_at = now(), last_success_at = now(), failures = 0,
            last_error = NULL, next_attempt_at = EXCLUDED.next_attempt_at
        """,
        site_id,
        next_in_s,
    )


async def record_failure(
    conn: asyncpg.Connection | asyncpg.Pool, site_id: int, error: str, next_in_s: float
) -> int:
    failures: int = await conn.fetchval(
        """
        INSERT INTO reconcile_state (site_id, failures, last_error, last_run_at, next_attempt_at)
        VALUES ($1, 1, $2, now(), now() + make_interval(secs => $3))
        ON CONFLICT (site_id) DO UPDATE SET failures = reconcile_state.failures + 1, last_error = $2,
            last_run_at = now(), next_attempt_at = now() + make_interval(secs => $3)
        RETURNING failures
        """,
        site_id,
        error[:1000],
        next_in_s,
    )
    return failures


async def schedule_now(conn: asyncpg.Connection | asyncpg.Pool, site_id: int) -> None:
    await conn.execute("UPDATE reconcile_state SET next_attempt_at = now() WHERE site_id = $1", site_id)


async def schedule_all_now(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """Every site not backing off from failures is due now (a site that is failing keeps its backoff)."""
    await conn.execute("UPDATE reconcile_state SET next_attempt_at = now() WHERE failures = 0")
