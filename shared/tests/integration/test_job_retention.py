"""Finished jobs are deleted once their retention has passed, and only they: work in progress stays, and work
requested again after its row went runs as if the row had been re-armed."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from pydantic import ValidationError

from writer_images import jobs
from writer_images.jobs import FinishedJobsPruner
from writer_images.settings import JobSettings

DAY_S = 24 * 3600


@pytest.fixture
async def pool(service_schema: tuple[str, asyncpg.Pool]) -> asyncpg.Pool:
    _, pool = service_schema
    await pool.execute(jobs.jobs_ddl())
    return pool


async def _jobs(pool: asyncpg.Pool, status: str, days_ago: float, count: int, prefix: str) -> set[str]:
    """`count` jobs in `status`, last updated `days_ago` days ago."""
    keys = {f"{prefix}-{n}" for n in range(count)}
    await pool.execute(
        """
        INSERT INTO jobs (queue, dedupe_key, group_key, payload, status, attempts, updated_at)
        SELECT 'q', key, 'acct-1', '{}', $2, 1, now() - make_interval(secs => $3) FROM unnest($1::text[]) AS key
        """,
        sorted(keys),
        status,
        days_ago * DAY_S,
    )
    return keys


async def _kept(pool: asyncpg.Pool) -> set[str]:
    return {r["dedupe_key"] for r in await pool.fetch("SELECT dedupe_key FROM jobs")}


async def test_finished_jobs_older_than_the_retention_are_pruned_in_batches_and_all_others_kept(
    pool: asyncpg.Pool,
) -> None:
    old_done = await _jobs(pool, "done", days_ago=15, count=12, prefix="old-done")
    old_failed = await _jobs(pool, "failed", days_ago=15, count=5, prefix="old-failed")
    recent_done = await _jobs(pool, "done", days_ago=13, count=3, prefix="recent-done")
    # Waiting and running work is never a finished job's, however old its row.
    old_ready = await _jobs(pool, "ready", days_ago=30, count=2, prefix="old-ready")
    old_running = await _jobs(pool, "running", days_ago=30, count=2, prefix="old-running")

    pruned = await jobs.prune_finished(pool, older_than_s=14 * DAY_S, batch=5)

    assert pruned == len(old_done | old_failed)
    assert await _kept(pool) == recent_done | old_ready | old_running


async def test_work_requested_again_after_its_job_was_pruned_runs_as_a_new_job(pool: asyncpg.Pool) -> None:
    [key] = await _jobs(pool, "done", days_ago=15, count=1, prefix="image-1-rev-1")
    await jobs.prune_finished(pool, older_than_s=14 * DAY_S)

    async with pool.acquire() as conn:
        armed = await jobs.enqueue(conn, "public", queue="q", dedupe_key=key, group_key="acct-1", payload={})

    assert armed
    row = await pool.fetchrow("SELECT status, attempts FROM jobs WHERE dedupe_key = $1", key)
    assert (row["status"], row["attempts"]) == ("ready", 0)  # what re-arming the finished row gave


async def test_the_pruner_prunes_at_start_and_then_every_period_until_stopped(pool: asyncpg.Pool) -> None:
    await _jobs(pool, "done", days_ago=20, count=3, prefix="first")
    pruner = FinishedJobsPruner(pool, retention_s=14 * DAY_S, every_s=0.2)
    running = asyncio.create_task(pruner.run())
    try:
        await asyncio.sleep(0.1)
        assert await _kept(pool) == set()
        later = await _jobs(pool, "failed", days_ago=30, count=2, prefix="later")
        await asyncio.sleep(0.4)
        assert not later & await _kept(pool)
    finally:
        pruner.stop()
        await asyncio.wait_for(running, timeout=5)


def test_a_retention_shorter_than_an_hour_is_refused_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WI_JOB_RETENTION_S", "60")
    with pytest.raises(ValidationError, match="job_retention_s"):
        JobSettings()
    monkeypatch.setenv("WI_JOB_RETENTION_S", "3600")

    assert JobSettings().job_retention_s == 3600
