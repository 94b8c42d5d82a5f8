"""A paid call cut off by a kill: the provider probably billed it, so the AI function log must show it, once.

The state a killed generator leaves is written here as it leaves it (its job leased to a runner that is gone,
the call's row recorded before the call and still `started`); the crash drill makes the same state with a
real SIGKILL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from generator.adapters import repository
from generator.bootstrap import build, close, generator_running
from generator.domain.rules import GENERATE_QUEUE, job_key
from writer_images import jobs
from writer_images.db import create_pool
from writer_images.events import Envelope, ImageGenerationRequested, OutgoingEvent
from writer_images.testing.fake_openai import FakeOpenAI, ok, server_error

DALL_E_2_512_USD = 0.018  # dall-e-2's list price at 512x512, the size the harness requests


@pytest.fixture
async def pool(harness: Any) -> AsyncIterator[asyncpg.Pool]:
    """The generator's schema, migrated by a generator that never ran."""
    await close(await build(harness.settings(), consume=False))
    pool = await create_pool(harness.database_url, "generator")
    try:
        yield pool
    finally:
        await pool.close()


@dataclasses.dataclass(frozen=True)
class CallInFlight:
    job: jobs.Job
    call_id: uuid.UUID
    started_at: datetime


async def call_in_flight(
    pool: asyncpg.Pool, request: OutgoingEvent, *, lease_owner: str, lease_left_s: float, started_s_ago: float
) -> CallInFlight:
    """The request's job, leased to `lease_owner` for `lease_left_s` more seconds (negative: its lease ran
    out), and the paid call that attempt recorded `started_s_ago` before it made it, still `started`. Without
    an estimate on the row, as rows recorded before estimates were kept have none."""
    envelope = Envelope.model_validate_json(request.value)
    wanted = ImageGenerationRequested.model_validate(envelope.payload)
    key = job_key(wanted.image_id, wanted.revision)
    async with pool.acquire() as conn:
        await jobs.enqueue_many(
            conn,
            "generator",
            GENERATE_QUEUE,
            [jobs.NewJob(key, str(envelope.account_id), {"envelope": envelope.model_dump(mode="json")})],
        )
        job = await conn.fetchrow(
            """
            UPDATE jobs SET status = 'running', attempts = 1, lease_owner = $2,
                   lease_until = now() + make_interval(secs => $3)
            WHERE dedupe_key = $1
            RETURNING id, queue, dedupe_key, group_key, payload, attempts, created_at, lease_owner
            """,
            key,
            lease_owner,
            lease_left_s,
        )
        call = await conn.fetchrow(
            """
            INSERT INTO provider_calls (call_id, idempotency_key, image_id, revision, attempt, account_id,
                                        provider, model, started_at)
            VALUES ($1, $2, $3, $4, 1, $5, $6, $7, clock_timestamp() - make_interval(secs => $8))
            RETURNING call_id, started_at
            """,
            uuid.uuid4(),
            f"{key}:attempt:1",
            wanted.image_id,
            wanted.revision,
            envelope.account_id,
            wanted.provider,
            wanted.model,
            started_s_ago,
        )
    return CallInFlight(jobs.Job(**dict(job)), call["call_id"], call["started_at"])


async def test_a_paid_call_cut_off_by_a_kill_is_logged_once_as_interrupted_at_its_estimated_cost(
    harness: Any, pool: asyncpg.Pool, fake_openai: FakeOpenAI
) -> None:
    request = harness.request(910, provider="openai", model="dall-e-2")
    cut_off = await call_in_flight(
        pool, request, lease_owner="killed-runner", lease_left_s=-1, started_s_ago=30
    )
    fake_openai.script(server_error(), ok())  # the retry fails once, so a second attempt starts after it

    def everything_reported(o: Any) -> bool:
        return len(o.of("image.generated")) == 1 and len(o.of("ai.function.called")) >= 3

    async with generator_running(harness.settings(openai_base_url=fake_openai.base_url)):
        await harness.outcome(everything_reported)
        await harness.publish([request])  # delivered again after the result: re-emitted from the store
        await harness.outcome(lambda o: len(o.of("image.generated")) == 2)
        await asyncio.sleep(1.0)  # a second report of the cut-off call would show up now
        outcome = await harness.outcome(lambda o: len(o.of("image.generated")) == 2, timeout_s=5)
    rows = {r["call_id"]: r for r in await pool.fetch("SELECT * FROM provider_calls")}

    calls = outcome.of("ai.function.called", 910)
    assert fake_openai.total_calls == 2  # the retry's own calls: the cut-off one is not made again
    assert [c.payload["success"] for c in sorted(calls, key=lambda c: c.payload["called_at"])] == [
        False,  # the cut-off call
        False,  # the 500
        True,
    ]
    [interrupted] = [c.payload for c in calls if c.payload["call_id"] == str(cut_off.call_id)]
    assert interrupted["error"].startswith("interrupted: the generator stopped during the call")
    assert "may have billed" in interrupted["error"]
    assert interrupted["estimated_cost_usd"] == DALL_E_2_512_USD  # probably billed: counted as spent
    assert datetime.fromisoformat(interrupted["called_at"]) == cut_off.started_at
    assert interrupted["latency_ms"] >= 30_000  # unknown: the time until the call was closed, no less
    assert interrupted["task_id"] == Envelope.model_validate_json(request.value).payload["task_id"]
    assert sorted(r["outcome"] for r in rows.values()) == ["failed", "interrupted", "succeeded"]
    assert rows[cut_off.call_id]["estimated_cost_usd"] == DALL_E_2_512_USD


async def test_an_overtaken_attempt_neither_pays_nor_closes_the_call_of_the_runner_holding_the_lease(
    harness: Any, pool: asyncpg.Pool, fake_openai: FakeOpenAI
) -> None:
    request = harness.request(920, provider="openai", model="dall-e-2")
    held = await call_in_flight(pool, request, lease_owner="live-runner", lease_left_s=60, started_s_ago=1)
    overtaken = dataclasses.replace(held.job, lease_owner="overtaken-runner")

    service = await build(harness.settings(openai_base_url=fake_openai.base_url), consume=False)
    try:
        with pytest.raises(jobs.LeaseLost):
            await service.generation.handle(overtaken)
    finally:
        await close(service)

    assert fake_openai.total_calls == 0
    outcomes = [r["outcome"] for r in await pool.fetch("SELECT outcome FROM provider_calls")]
    assert outcomes == ["started"]  # still the live runner's call in flight
    reported = await pool.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'ai.function.called'")
    assert reported == 0


async def test_a_call_reported_as_interrupted_stays_so_when_its_overtaken_attempt_finishes_it_late(
    harness: Any, pool: asyncpg.Pool
) -> None:
    request = harness.request(930, provider="openai", model="dall-e-2")
    late = await call_in_flight(pool, request, lease_owner="gone-runner", lease_left_s=-1, started_s_ago=5)
    async with pool.acquire() as conn, conn.transaction():
        [closed] = await repository.close_interrupted_calls(conn, 930, 1, fallback_cost_usd=0.0)

    async with pool.acquire() as conn, conn.transaction():
        finished = await repository.finish_call(
            conn, late.call_id, succeeded=True, latency_ms=6_000, estimated_cost_usd=DALL_E_2_512_USD
        )

    assert closed.call_id == late.call_id
    assert finished is False
    row = await pool.fetchrow("SELECT outcome, latency_ms FROM provider_calls")
    assert (row["outcome"], row["latency_ms"]) == ("interrupted", None)
