"""Idempotent inbox: a consumer records each handled event id in the same transaction as its effect."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence

import asyncpg

from writer_images.retention import BATCH, Pruner, delete_in_batches


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


async def prune(pool: asyncpg.Pool, older_than_s: float, batch: int = BATCH) -> int:
    """Forget event ids handled more than `older_than_s` ago, a batch per transaction (no long locks)."""
    return await delete_in_batches(
        pool, "inbox", "handled_at < now() - make_interval(secs => $1)", older_than_s, batch
    )


class InboxPruner(Pruner):
    """Keeps the inbox to the events a redelivery could still bring back.

    Each handled event leaves a row (five per generated image in images-api), and a table that only grows
    makes every claim slower with time. A row is needed while the broker may deliver its event again: a
    consumer restarting from its last committed offset, a rebalance, a replay. None of those reaches past the
    topics' retention (Apache Kafka's default is seven days), so ids older than `WI_INBOX_RETENTION_S`
    (fourteen days by default; keep it above the topics' retention) are forgotten, once an hour.
    """

    def __init__(self, pool: asyncpg.Pool, retention_s: float, every_s: float = 3600.0) -> None:
        super().__init__(pool, "inbox", functools.partial(prune, older_than_s=retention_s), every_s)
