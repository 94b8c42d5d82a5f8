"""Idempotent inbox: a consumer records each handled event id in the same transaction as its effect."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence

import asyncpg

from writer_images.logging import get_logger

log = get_logger(__name__)


def inbox_ddl() -> str:
    return """
    CREATE TABLE inbox (
        event_id uuid PRIMARY KEY,
        event_type text NOT NULL,
        handled_at timestamptz NOT NULL DEFAULT now()
    );
    """


async def claim(conn: asyncpg.Connection, event_id: uuid.UUID, event_type: str) -> bool:
    """True the first time an event id is seen; False for a redelivery (then do nothing)."""
    inserted = await conn.fetchval(
        "INSERT INTO inbox (event_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        event_id,
        event_type,
    )
    return bool(inserted)


async def claim_many(conn: asyncpg.Connection, events: Sequence[tuple[uuid.UUID, str]]) -> set[uuid.UUID]:
    """Claim a batch in one statement; returns the ids that were new."""
    rows = await conn.fetch(
        """
        INSERT INTO inbox (event_id, event_type)
        SELECT * FROM unnest($1::uuid[], $2::text[])
        ON CONFLICT DO NOTHING RETURNING event_id
        """,
        [e[0] for e in events],
        [e[1] for e in events],
    )
    return {r["event_id"] for r in rows}


def inbox_retention_ddl() -> str:
    """The index the pruner deletes by: BRIN, since rows arrive in `handled_at` order and it costs an insert
    next to nothing (a B-tree on the timestamp would add a second index write to every event)."""
    return "CREATE INDEX inbox_handled_at ON inbox USING brin (handled_at);"


async def prune(pool: asyncpg.Pool, older_than_s: float, batch: int = 10_000) -> int:
    """Forget event ids handled more than `older_than_s` ago, a batch per transaction (no long locks)."""
    pruned = 0
    while True:
        async with pool.acquire() as conn:
            deleted: int = await conn.fetchval(
                """
                WITH gone AS (
                    DELETE FROM inbox WHERE ctid = ANY(ARRAY(
                        SELECT ctid FROM inbox WHERE handled_at < now() - make_interval(secs => $1) LIMIT $2
                    ))
                    RETURNING 1
                )
                SELECT count(*) FROM gone
                """,
                older_than_s,
                batch,
            )
        pruned += deleted
        if deleted < batch:
            return pruned


class InboxPruner:
    """Keeps the inbox to the events a redelivery could still bring back.

    Each handled event leaves a row (five per generated image in images-api), and a table that only grows
    makes every claim slower with time. A row is needed while the broker may deliver its event again: a
    consumer restarting from its last committed offset, a rebalance, a replay. None of those reaches past the
    topics' retention (Apache Kafka's default is seven days), so ids older than `WI_INBOX_RETENTION_S`
    (fourteen days by default; keep it above the topics' retention) are forgotten, once an hour.
    """

    def __init__(self, pool: asyncpg.Pool, retention_s: float, every_s: float = 3600.0) -> None:
        self._pool = pool
        self._retention_s = retention_s
        self._every_s = every_s
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                pruned = await prune(self._pool, self._retention_s)
                if pruned:
                    log.info("old inbox rows pruned", count=pruned)
            except Exception as exc:  # database away: try again next time
                log.warning("inbox prune failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._every_s)

    def stop(self) -> None:
        self._stopping.set()
