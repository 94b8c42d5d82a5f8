"""Postgres access for the generator's own tables (results, provider calls)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from generator.domain.rules import call_key
from writer_images.events import ImageGenerated, OutgoingEvent
from writer_images.outbox import OUTBOX_COLUMNS, outbox_values


async def stored_result(
    conn: asyncpg.Connection | asyncpg.Pool, image_id: int, revision: int
) -> ImageGenerated | None:
    payload: dict[str, Any] | None = await conn.fetchval(
        "SELECT payload FROM results WHERE image_id = $1 AND revision = $2", image_id, revision
    )
    return None if payload is None else ImageGenerated.model_validate(payload)


async def stored_result_or_announce(
    pool: asyncpg.Pool, image_id: int, revision: int, announcement: OutgoingEvent, outbox_channel: str
) -> ImageGenerated | None:
    """The stored result if there is one; else `announcement` goes to the outbox (and the relay is woken).
    One statement, hence one round trip and its own transaction."""
    payload: dict[str, Any] | None = await pool.fetchval(
        f"""
        WITH stored AS (
            SELECT payload FROM results WHERE image_id = $1 AND revision = $2
        ), announced AS (
            INSERT INTO outbox ({OUTBOX_COLUMNS})
            SELECT $3, $4, $5, $6, $7, $8 WHERE NOT EXISTS (SELECT 1 FROM stored)
            RETURNING 1
        )
        SELECT (SELECT payload FROM stored), (SELECT pg_notify($9, '') FROM announced)
        """,
        image_id,
        revision,
        *outbox_values(announcement),
        outbox_channel,
    )
    return None if payload is None else ImageGenerated.model_validate(payload)


async def save_results(
    conn: asyncpg.Connection, results: Sequence[tuple[ImageGenerated, int]]
) -> set[tuple[int, int]]:
    """Store several results (result, account id) in one statement; returns the (image, revision) pairs that
    were new. A pair already stored was stored by another runner whose lease overlapped ours."""
    rows = await conn.fetch(
        """
        INSERT INTO results (image_id, revision, content_id, account_id, payload)
        SELECT image_id, revision, content_id, account_id, payload::jsonb
        FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::bigint[], $5::text[])
            AS r(image_id, revision, content_id, account_id, payload)
        ON CONFLICT (image_id, revision) DO NOTHING
        RETURNING image_id, revision
        """,
        [r.image_id for r, _ in results],
        [r.revision for r, _ in results],
        [r.content_id for r, _ in results],
        [account_id for _, account_id in results],
        [orjson.dumps(r.model_dump(mode="json")).decode() for r, _ in results],
    )
    return {(row["image_id"], row["revision"]) for row in rows}


@dataclass(frozen=True)
class StartedCall:
    call_id: uuid.UUID
    attempt: int
    idempotency_key: str


async def start_call(
    pool: asyncpg.Pool, *, image_id: int, revision: int, account_id: int, provider: str, model: str
) -> StartedCall:
    """Record a paid call before it is made (committed at once), numbered within its image revision."""
    call_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        attempt: int = await conn.fetchval(
            "SELECT coalesce(max(attempt), 0) + 1 FROM provider_calls WHERE image_id = $1 AND revision = $2",
            image_id,
            revision,
        )
        key = call_key(image_id, revision, attempt)
        await conn.execute(
            """
            INSERT INTO provider_calls (call_id, idempotency_key, image_id, revision, attempt, account_id, provider, model)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            """,
            call_id,
            key,
            image_id,
            revision,
            attempt,
            account_id,
            provider,
            model,
        )
    return StartedCall(call_id=call_id, attempt=attempt, idempotency_key=key)


async def finish_call(
    conn: asyncpg.Connection,
    call_id: uuid.UUID,
    *,
    succeeded: bool,
    latency_ms: int,
    estimated_cost_usd: float,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    error: str | None = None,
    raw_blob_key: str | None = None,
    revised_prompt: str | None = None,
) -> None:
    await conn.execute(
        """
        UPDATE provider_calls SET finished_at = clock_timestamp(), outcome = $2, latency_ms = $3,
               estimated_cost_usd = $4, input_tokens = $5, output_tokens = $6, error = $7, raw_blob_key = $8,
               revised_prompt = $9
        WHERE call_id = $1
        """,
        call_id,
        "succeeded" if succeeded else "failed",
        latency_ms,
        estimated_cost_usd,
        input_tokens,
        output_tokens,
        error,
        raw_blob_key,
        revised_prompt,
    )


@dataclass(frozen=True)
class PaidOutput:
    """A succeeded call whose bytes are stored but whose result was never recorded (a crash in between)."""

    call_id: uuid.UUID
    raw_blob_key: str
    revised_prompt: str | None
    latency_ms: int
    estimated_cost_usd: float
    input_tokens: int | None
    output_tokens: int | None
    started_at: Any


async def unused_paid_output(pool: asyncpg.Pool, image_id: int, revision: int) -> PaidOutput | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """
            SELECT call_id, raw_blob_key, revised_prompt, latency_ms, estimated_cost_usd, input_tokens,
                   output_tokens, started_at
            FROM provider_calls
            WHERE image_id = $1 AND revision = $2 AND outcome = 'succeeded' AND raw_blob_key IS NOT NULL
            ORDER BY attempt DESC LIMIT 1
            """,
            image_id,
            revision,
        )
    return None if row is None else PaidOutput(**dict(row))
