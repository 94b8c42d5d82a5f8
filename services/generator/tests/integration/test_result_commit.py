"""The one-statement group writes of the generator: starting a group of jobs (stored result, else the
`generating` announcement) and ending one (results, outbox rows, job completion)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from generator.adapters import repository
from generator.bootstrap import generator_running
from writer_images import events, jobs
from writer_images.db import create_pool
from writer_images.events import make_event
from writer_images.testing.examples import example


@pytest.fixture
async def pool(harness: Any) -> AsyncIterator[asyncpg.Pool]:
    """The generator's schema, migrated by a generator stopped before its relay could drain the outbox."""
    async with generator_running(harness.settings()):
        pass
    pool = await create_pool(harness.database_url, "generator")
    try:
        yield pool
    finally:
        await pool.close()


def _finished(image_id: int, job_id: int, lease_owner: str = "runner") -> repository.FinishedResult:
    result = example(events.ImageGenerated).model_copy(update={"image_id": image_id, "task_id": uuid.uuid4()})
    call = example(events.AiFunctionCalled).model_copy(update={"call_id": uuid.uuid4(), "image_id": image_id})
    assert isinstance(result, events.ImageGenerated)
    return repository.FinishedResult(
        result=result,
        account_id=7,
        job_id=job_id,
        lease_owner=lease_owner,
        events=[make_event(call, account_id=7, correlation_id="t")],
        events_if_new=[make_event(result, account_id=7, correlation_id="t")],
    )


async def test_a_result_stored_before_writes_its_call_log_but_not_a_second_generated_event(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        await jobs.enqueue_many(
            conn,
            "generator",
            "generate",
            [jobs.NewJob(k, "7", {}) for k in ("first-runner", "second-runner")],
        )
        job_ids = await _leased(conn, "runner")
    first, second = _finished(500, job_ids[0]), _finished(500, job_ids[1])  # overlapping leases
    assert await repository.commit_results(pool, [first], "outbox_generator") == [True]
    assert await repository.commit_results(pool, [second], "outbox_generator") == [True]

    async with pool.acquire() as conn:
        written = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM outbox")}
        stored = await conn.fetchval("SELECT count(*) FROM results WHERE image_id = 500")
        states = [r["status"] for r in await conn.fetch("SELECT status FROM jobs ORDER BY id")]

    assert written == {
        first.events[0].event_id,
        first.events_if_new[0].event_id,
        second.events[0].event_id,  # the second call is logged: it happened
    }
    assert stored == 1
    assert states == ["done", "done"]


async def test_a_result_whose_job_was_taken_by_another_runner_does_not_complete_it(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        await jobs.enqueue_many(
            conn, "generator", "generate", [jobs.NewJob(k, "7", {}) for k in ("kept", "taken")]
        )
        kept, taken = await _leased(conn, "runner")
        await conn.execute("UPDATE jobs SET lease_owner = 'another-runner' WHERE id = $1", taken)

    completed = await repository.commit_results(
        pool, [_finished(700, kept), _finished(701, taken)], "outbox_generator"
    )

    states = {r["id"]: (r["status"], r["lease_owner"]) for r in await pool.fetch("SELECT * FROM jobs")}
    assert completed == [True, False]
    assert states == {kept: ("done", None), taken: ("running", "another-runner")}


async def _leased(conn: asyncpg.Connection, owner: str) -> list[int]:
    """Lease every job to `owner`, as a claim does; their ids."""
    rows = await conn.fetch(
        "UPDATE jobs SET status = 'running', attempts = 1, lease_owner = $1 RETURNING id", owner
    )
    return sorted(r["id"] for r in rows)


async def test_starting_a_group_announces_the_new_images_and_returns_the_stored_result_of_the_others(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        await jobs.enqueue_many(conn, "generator", "generate", [jobs.NewJob("done-before", "7", {})])
        [job_id] = await _leased(conn, "runner")
    done_before = _finished(601, job_id)
    await repository.commit_results(pool, [done_before], "outbox_generator")
    before = {r["event_id"] for r in await pool.fetch("SELECT event_id FROM outbox")}

    progress = example(events.ImageGenerationProgress)
    group = [
        repository.Announcement(image_id, 1, make_event(progress, account_id=7, correlation_id="t"))
        for image_id in (600, 601, 602)
    ]
    answers = await repository.stored_results_or_announce(pool, group, "outbox_generator")
    announced = [
        r["event_id"]
        for r in await pool.fetch("SELECT event_id FROM outbox ORDER BY id")
        if r["event_id"] not in before
    ]

    assert answers[0] is None and answers[2] is None
    assert answers[1] == done_before.result
    assert announced == [group[0].event.event_id, group[2].event.event_id]
