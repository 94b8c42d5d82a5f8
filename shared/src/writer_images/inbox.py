"""Idempotent inbox: a consumer records each handled event id in the same transaction as its effect."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg


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
