"""Postgres access for the generator's own tables (results, provider calls)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from generator.domain.rules import INTERRUPTED_CALL, call_key
from writer_images import jobs
from writer_images.events import ImageGenerated, OutgoingEvent
from writer_images.outbox import OUTBOX_COLUMNS, outbox_arrays


async def stored_result(
    conn: asyncpg.Connection | asyncpg.Pool, image_id: int, revision: int
) -> ImageGenerated | None:
    payload: dict[str, Any] | None = await conn.fetchval(
        "SELECT payload FROM results WHERE image_id = $1 AND revision = $2", image_id, revision
    )
    return None if payload is None else ImageGenerated.model_validate(payload)


@dataclass(frozen=True)
class Announcement:
    """A job about to call its provider: `event` (its `generating` progress) goes out unless a result for
    (image_id, revision) is already stored."""

    image_id: int
    revision: int
    event: OutgoingEvent


async def stored_results_or_announce(
    pool: asyncpg.Pool, announcements: Sequence[Announcement], outbox_channel: str
) -> list[ImageGenerated | None]:
    """For each announcement, in order: the stored result if there is one; else its event goes to the outbox
    (and the relay is woken, once). One statement, hence one round trip and its own transaction."""
    rows = await pool.fetch(
        f"""
        WITH wanted AS (
            SELECT * FROM unnest($1::bigint[], $2::int[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                                 $7::bytea[], $8::text[])
                WITH ORDINALITY AS w(image_id, revision, event_id, event_type, topic, key, value, correlation_id, n)
        ), stored AS (
            SELECT w.n, r.payload FROM wanted w JOIN results r USING (image_id, revision)
        ), announced AS (
            INSERT INTO outbox ({OUTBOX_COLUMNS})
            SELECT event_id, event_type, topic, key, value, correlation_id FROM wanted w
            WHERE NOT EXISTS (SELECT 1 FROM stored s WHERE s.n = w.n)
            ORDER BY n
            RETURNING 1
        )
        SELECT n, payload FROM stored
        UNION ALL  -- the wake-up, as a row of its own (n = 0) so that it is sent even when nothing was stored
        SELECT 0, NULL FROM (SELECT pg_notify($9, '') WHERE EXISTS (SELECT 1 FROM announced)) AS woken
        """,
        [a.image_id for a in announcements],
        [a.revision for a in announcements],
        *outbox_arrays([a.event for a in announcements]),
        outbox_channel,
    )
    stored: list[ImageGenerated | None] = [None] * len(announcements)
    for row in rows:
        if row["n"]:
            stored[row["n"] - 1] = ImageGenerated.model_validate(row["payload"])
    return stored


@dataclass(frozen=True)
class FinishedResult:
    result: ImageGenerated
    account_id: int
    job_id: int
    lease_owner: str  # the job's lease: a job no longer leased to this attempt is not completed
    events: Sequence[OutgoingEvent]  # always written
    events_if_new: Sequence[OutgoingEvent]  # written only if this result was not stored before


async def commit_results(
    pool: asyncpg.Pool, finished: Sequence[FinishedResult], outbox_channel: str
) -> list[bool]:
    """In ONE statement (one round trip, its own transaction): store the results, write their events to the
    outbox (`events_if_new` only for a result not stored before: another runner whose lease overlapped ours
    already announced it), complete their jobs, and wake the relay. Answers, per result, whether its job was
    completed: not when its lease passed to another runner meanwhile (its writes are keyed, so they double
    nothing the other runner writes)."""
    results = [f.result for f in finished]
    events = [(f.result, e, False) for f in finished for e in f.events] + [
        (f.result, e, True) for f in finished for e in f.events_if_new
    ]
    completed = await pool.fetchval(
        f"""
        WITH saved AS (
            INSERT INTO results (image_id, revision, content_id, account_id, payload)
            SELECT image_id, revision, content_id, account_id, payload::jsonb
            FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::bigint[], $5::text[])
                AS r(image_id, revision, content_id, account_id, payload)
            ON CONFLICT (image_id, revision) DO NOTHING
            RETURNING image_id, revision
        ), written AS (
            INSERT INTO outbox ({OUTBOX_COLUMNS})
            SELECT e.event_id, e.event_type, e.topic, e.key, e.value, e.correlation_id
            FROM unnest($6::bigint[], $7::int[], $8::bool[], $9::uuid[], $10::text[], $11::text[], $12::text[],
                        $13::bytea[], $14::text[])
                AS e(image_id, revision, if_new, event_id, event_type, topic, key, value, correlation_id)
            WHERE NOT e.if_new
               OR EXISTS (SELECT 1 FROM saved s WHERE s.image_id = e.image_id AND s.revision = e.revision)
            RETURNING 1
        ), done AS (
            {jobs.completion(15, 16)}
        )
        SELECT array(SELECT id FROM done), (SELECT pg_notify($17, '') WHERE EXISTS (SELECT 1 FROM written))
        """,
        [r.image_id for r in results],
        [r.revision for r in results],
        [r.content_id for r in results],
        [f.account_id for f in finished],
        [orjson.dumps(r.model_dump(mode="json")).decode() for r in results],
        [r.image_id for r, _, _ in events],
        [r.revision for r, _, _ in events],
        [if_new for _, _, if_new in events],
        *outbox_arrays([e for _, e, _ in events]),
        [f.job_id for f in finished],
        [f.lease_owner for f in finished],
        outbox_channel,
    )
    return [f.job_id in completed for f in finished]


@dataclass(frozen=True)
class StartedCall:
    call_id: uuid.UUID
    attempt: int
    idempotency_key: str


async def start_call(
    pool: asyncpg.Pool,
    job: jobs.Job,
    *,
    image_id: int,
    revision: int,
    account_id: int,
    provider: str,
    model: str,
    estimated_cost_usd: float,
) -> StartedCall:
    """Record a paid call before it is made (committed at once), numbered within its image revision, with
    its list price until its answer tells better. Only under the job's lease (else `jobs.LeaseLost`): an
    overtaken attempt never starts a call, so every call left open is one the lease's next holder sees."""
    call_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await jobs.hold_lease(conn, job)
        attempt: int = await conn.fetchval(
            "SELECT coalesce(max(attempt), 0) + 1 FROM provider_calls WHERE image_id = $1 AND revision = $2",
            image_id,
            revision,
        )
        key = call_key(image_id, revision, attempt)
        await conn.execute(
            """
            INSERT INTO provider_calls (call_id, idempotency_key, image_id, revision, attempt, account_id, provider,
                                        model, estimated_cost_usd)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            """,
            call_id,
            key,
            image_id,
            revision,
            attempt,
            account_id,
            provider,
            model,
            estimated_cost_usd,
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
) -> bool:
    """Record a call's answer. False, and nothing written, when the call was closed as interrupted meanwhile
    (its attempt was overtaken): it has been reported then, and a call is reported once."""
    finished: bool | None = await conn.fetchval(
        """
        UPDATE provider_calls SET finished_at = clock_timestamp(), outcome = $2, latency_ms = $3,
               estimated_cost_usd = $4, input_tokens = $5, output_tokens = $6, error = $7, raw_blob_key = $8,
               revised_prompt = $9
        WHERE call_id = $1 AND outcome = 'started'
        RETURNING true
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
    return bool(finished)


@dataclass(frozen=True)
class InterruptedCall:
    """A paid call whose generator stopped during it (a kill, a crash, an attempt overtaken), now closed."""

    call_id: uuid.UUID
    started_at: datetime
    open_ms: int  # from its start until it was closed: how long the provider took is unknown
    estimated_cost_usd: float


async def close_interrupted_calls(
    conn: asyncpg.Connection, image_id: int, revision: int, *, fallback_cost_usd: float
) -> list[InterruptedCall]:
    """Close as interrupted the calls of an image revision still `started`, counting each at its list price
    (`fallback_cost_usd` for a row recorded without one). Call it in the transaction that reports them, under
    the job's lease and with no call of the current attempt open: every open call is then an earlier
    attempt's. A call is closed once, so a redelivery or a later attempt finds nothing left to report."""
    rows = await conn.fetch(
        """
        UPDATE provider_calls SET outcome = 'interrupted', finished_at = clock_timestamp(), error = $3,
               estimated_cost_usd = coalesce(estimated_cost_usd, $4)
        WHERE image_id = $1 AND revision = $2 AND outcome = 'started'
        RETURNING call_id, started_at, finished_at, estimated_cost_usd
        """,
        image_id,
        revision,
        INTERRUPTED_CALL,
        fallback_cost_usd,
    )
    return [
        InterruptedCall(
            call_id=row["call_id"],
            started_at=row["started_at"],
            open_ms=round((row["finished_at"] - row["started_at"]).total_seconds() * 1000),
            estimated_cost_usd=row["estimated_cost_usd"],
        )
        for row in sorted(rows, key=lambda row: row["started_at"])
    ]


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
