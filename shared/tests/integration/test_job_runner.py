"""Durable jobs against real Postgres: leased, bounded, retried, exhausted, reclaimed after a crash."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from writer_images import jobs
from writer_images.jobs import ExhaustedHandler, FailJob, Job, JobRunner, RetryJob, RunnerConfig
from writer_images.retry import RetryPolicy
from writer_images.testing.waiting import eventually


@pytest.fixture
async def jobs_schema(service_schema: tuple[str, asyncpg.Pool]) -> tuple[str, asyncpg.Pool]:
    schema, pool = service_schema
    async with pool.acquire() as conn:
        await conn.execute(
            jobs.jobs_ddl() + "CREATE TABLE exhausted (dedupe_key text, reason text, retryable bool);"
        )
    return schema, pool


async def _enqueue(pool: asyncpg.Pool, schema: str, key: str, group: str = "acct-1") -> bool:
    async with pool.acquire() as conn, conn.transaction():
        return await jobs.enqueue(
            conn, schema, queue="q", dedupe_key=key, group_key=group, payload={"key": key}
        )


async def _record_exhausted(conn: asyncpg.Connection, job: Job, reason: str, retryable: bool) -> None:
    await conn.execute("INSERT INTO exhausted VALUES ($1, $2, $3)", job.dedupe_key, reason, retryable)


@contextlib.asynccontextmanager
async def _running(
    pool: asyncpg.Pool,
    schema: str,
    handler: Callable[[Job], Awaitable[None]],
    on_exhausted: ExhaustedHandler = _record_exhausted,
    **config: Any,
) -> AsyncIterator[JobRunner]:
    runner = JobRunner(
        pool, schema, RunnerConfig(queue="q", poll_interval_s=0.05, **config), handler, on_exhausted
    )
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.stop()
        await task


async def _until(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    await eventually(predicate, what="the jobs' expected state", timeout_s=timeout_s, interval_s=0.02)


async def _statuses(pool: asyncpg.Pool) -> dict[str, str]:
    async with pool.acquire() as conn:
        return {r["dedupe_key"]: r["status"] for r in await conn.fetch("SELECT dedupe_key, status FROM jobs")}


async def test_the_same_work_requested_twice_while_pending_is_one_job(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    assert await _enqueue(pool, schema, "image:1:1") is True
    assert await _enqueue(pool, schema, "image:1:1") is False
    assert await _statuses(pool) == {"image:1:1": "ready"}


async def test_jobs_run_once_each_and_complete(jobs_schema: tuple[str, asyncpg.Pool]) -> None:
    schema, pool = jobs_schema
    runs: Counter[str] = Counter()

    async def handler(job: Job) -> None:
        runs[job.dedupe_key] += 1
        async with pool.acquire() as conn, conn.transaction():
            await jobs.complete(conn, job)

    for i in range(20):
        await _enqueue(pool, schema, f"k{i}", group=f"g{i % 3}")
    async with _running(pool, schema, handler):
        await _until(lambda: _all_in(pool, "done", 20))
    assert runs == Counter({f"k{i}": 1 for i in range(20)})


async def _all_in(pool: asyncpg.Pool, status: str, count: int) -> bool:
    statuses = await _statuses(pool)
    return len(statuses) == count and set(statuses.values()) == {status}


async def test_concurrency_is_bounded_per_group(jobs_schema: tuple[str, asyncpg.Pool]) -> None:
    schema, pool = jobs_schema
    in_flight: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    async def handler(job: Job) -> None:
        in_flight[job.group_key] += 1
        peak[job.group_key] = max(peak[job.group_key], in_flight[job.group_key])
        await asyncio.sleep(0.05)
        in_flight[job.group_key] -= 1
        async with pool.acquire() as conn, conn.transaction():
            await jobs.complete(conn, job)

    for i in range(12):
        await _enqueue(pool, schema, f"busy{i}", group="busy-tenant")
    await _enqueue(pool, schema, "quiet", group="quiet-tenant")
    async with _running(pool, schema, handler, concurrency=6, per_group_limit=2):
        await _until(lambda: _all_in(pool, "done", 13))
    assert peak["busy-tenant"] == 2
    assert peak["quiet-tenant"] == 1


class _HeldJobs:
    """A handler whose jobs run until the test lets each one finish."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.started: list[str] = []
        self.finished: set[str] = set()
        self.let_go = asyncio.Event()
        self._wake = asyncio.Event()

    async def handle(self, job: Job) -> None:
        self.started.append(job.dedupe_key)
        while job.dedupe_key not in self.finished and not self.let_go.is_set():
            await self._wake.wait()
            self._wake.clear()
        async with self.pool.acquire() as conn, conn.transaction():
            await jobs.complete(conn, job)

    async def finish_one(self) -> None:
        done_before = len(self.finished)
        self.finished.add(next(key for key in self.started if key not in self.finished))
        self._wake.set()
        await _until(lambda: _count(self.pool, "done", done_before + 1))

    def release_all(self) -> None:
        self.let_go.set()
        self._wake.set()


class _CountingRunner(JobRunner):
    claims = 0

    async def _claim_and_start(self) -> int:
        self.claims += 1
        return await super()._claim_and_start()


@contextlib.asynccontextmanager
async def _held_jobs(
    pool: asyncpg.Pool, schema: str, count: int, *, one_group: bool = False, **config: Any
) -> AsyncIterator[tuple[_HeldJobs, _CountingRunner]]:
    """`count` jobs (each in its own group, or all in one) run by a runner until the test lets them finish;
    on the way out every job (these and any the test added) is let go and must end done."""
    held = _HeldJobs(pool)
    for i in range(count):
        await _enqueue(pool, schema, f"k{i:02}", group="one-account" if one_group else f"g{i}")
    config = {"poll_interval_s": 0.05, **config}
    runner = _CountingRunner(pool, schema, RunnerConfig(queue="q", **config), held.handle, _record_exhausted)
    task = asyncio.create_task(runner.run())
    try:
        yield held, runner
    finally:
        held.release_all()
        try:
            await _until(lambda: _every_job_done(pool))
        finally:
            runner.stop()
            await task


async def _every_job_done(pool: asyncpg.Pool) -> bool:
    return set((await _statuses(pool)).values()) == {"done"}


async def test_while_jobs_run_the_runner_claims_again_once_a_quarter_of_its_slots_are_free(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    async with _held_jobs(pool, schema, 12, concurrency=8, claim_linger_s=60.0) as (held, _):
        await _until(lambda: _count(pool, "running", 8))
        await held.finish_one()  # one slot of eight free: not worth a claim yet
        await asyncio.sleep(0.3)  # six poll intervals
        assert len(held.started) == 8
        await held.finish_one()  # two free: one claim takes two
        await _until(lambda: _count(pool, "running", 8))
        assert len(held.started) == 10
    assert sorted(held.started) == [f"k{i:02}" for i in range(12)]


async def test_a_slot_left_free_is_claimed_once_it_has_waited_the_linger(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    async with _held_jobs(pool, schema, 10, concurrency=8, claim_linger_s=0.2) as (held, _):
        await _until(lambda: _count(pool, "running", 8))
        freed_at = asyncio.get_running_loop().time()
        await held.finish_one()  # one of eight: below a quarter, so it waits the linger, no longer
        await _until(lambda: _count(pool, "running", 8), timeout_s=2.0)
        assert len(held.started) == 9
        assert asyncio.get_running_loop().time() - freed_at >= 0.2


async def test_a_claim_takes_no_more_of_a_group_than_its_room(jobs_schema: tuple[str, asyncpg.Pool]) -> None:
    schema, pool = jobs_schema
    await _enqueue(pool, schema, "other", group="another-account")
    async with _held_jobs(pool, schema, 10, one_group=True, concurrency=8, per_group_limit=4) as (held, _):
        await _until(lambda: _count(pool, "running", 5))
        await asyncio.sleep(0.2)  # four poll intervals
        async with pool.acquire() as conn:
            untouched = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE status = 'ready' AND updated_at = created_at"
            )
        # Four of the busy account's ten and the other account's one run; the six waiting were never claimed
        # and given back (a claim that over-filled a group used to take them and release them again).
        assert sorted(held.started) == ["k00", "k01", "k02", "k03", "other"]
        assert untouched == 6


async def test_with_jobs_running_and_nothing_ready_the_runner_waits_instead_of_claiming_again(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    config = {"concurrency": 8, "per_group_limit": 8, "poll_interval_s": 1.0, "claim_linger_s": 0.05}
    async with _held_jobs(pool, schema, 2, one_group=True, **config) as (_, runner):
        await _until(lambda: _count(pool, "running", 2))
        await asyncio.sleep(0.5)  # ten lingers, half a poll interval
        assert runner.claims <= 3


async def _count(pool: asyncpg.Pool, status: str, at_least: int) -> bool:
    return sum(s == status for s in (await _statuses(pool)).values()) >= at_least


async def test_transient_failures_retry_then_exhaust_into_the_failure_hook(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    attempts: Counter[str] = Counter()

    async def handler(job: Job) -> None:
        attempts[job.dedupe_key] += 1
        if job.dedupe_key == "flaky" and attempts["flaky"] < 2:
            raise RetryJob("429 from provider", retry_after_s=0.05)
        if job.dedupe_key == "doomed":
            raise RetryJob("still 503")
        if job.dedupe_key == "refused":
            raise FailJob("content policy violation")
        async with pool.acquire() as conn, conn.transaction():
            await jobs.complete(conn, job)

    for key in ("flaky", "doomed", "refused"):
        await _enqueue(pool, schema, key)
    async with _running(pool, schema, handler, retry=RetryPolicy(max_attempts=3, base_s=0.01, max_s=0.05)):
        await _until(lambda: _settled(pool))
    assert await _statuses(pool) == {"flaky": "done", "doomed": "failed", "refused": "failed"}
    assert attempts == Counter({"flaky": 2, "doomed": 3, "refused": 1})
    async with pool.acquire() as conn:
        exhausted = {
            r["dedupe_key"]: (r["reason"], r["retryable"])
            for r in await conn.fetch("SELECT * FROM exhausted")
        }
    assert exhausted == {"doomed": ("still 503", True), "refused": ("content policy violation", False)}


async def _settled(pool: asyncpg.Pool) -> bool:
    return all(s in ("done", "failed") for s in (await _statuses(pool)).values())


async def test_a_job_abandoned_by_a_dead_worker_is_taken_again_after_its_lease(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    await _enqueue(pool, schema, "orphan")
    async with pool.acquire() as conn:  # a worker claimed it, then died without a word
        await conn.execute(
            "UPDATE jobs SET status='running', attempts=1, lease_owner='dead', lease_until=now() + interval '300 ms'"
        )
    finished: list[int] = []

    async def handler(job: Job) -> None:
        finished.append(job.attempts)
        async with pool.acquire() as conn, conn.transaction():
            await jobs.complete(conn, job)

    async with _running(pool, schema, handler):
        await _until(lambda: _all_in(pool, "done", 1))
    assert finished == [2]


async def test_a_job_that_kills_its_worker_on_every_attempt_fails_after_its_last_attempt(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    await _enqueue(pool, schema, "oom")
    ran: list[int] = []

    async def handler(job: Job) -> None:
        ran.append(job.attempts)
        # What a worker OOM-killed mid-job leaves behind: the job running under a lease that runs out.
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE jobs SET lease_owner = 'killed', lease_until = now() WHERE id = $1", job.id
            )

    async with _running(pool, schema, handler, retry=RetryPolicy(max_attempts=3, base_s=0.01, max_s=0.05)):
        await _until(lambda: _settled(pool))
    assert ran == [1, 2, 3]
    assert await _statuses(pool) == {"oom": "failed"}
    assert await _exhausted(pool) == [("oom", "attempt 3 of 3 lost its worker (its lease ran out)", True)]


async def test_jobs_whose_worker_died_on_their_last_attempt_fail_once_without_holding_up_others(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    for key in ("died-on-last", "died-on-second"):
        await _enqueue(pool, schema, key)
    async with pool.acquire() as conn:  # their workers died mid-attempt
        await conn.execute(
            """
            UPDATE jobs SET status = 'running', attempts = CASE dedupe_key WHEN 'died-on-last' THEN 3 ELSE 2 END,
                   lease_owner = 'killed', lease_until = now() - interval '1 second'
            """
        )
    await _enqueue(pool, schema, "waiting")
    ran: list[tuple[str, int]] = []

    async def handler(job: Job) -> None:
        ran.append((job.dedupe_key, job.attempts))
        async with pool.acquire() as conn, conn.transaction():
            await jobs.complete(conn, job)

    retry = RetryPolicy(max_attempts=3, base_s=0.01, max_s=0.05)
    async with _running(pool, schema, handler, retry=retry), _running(pool, schema, handler, retry=retry):
        await _until(lambda: _settled(pool))
        await asyncio.sleep(0.3)  # six more polls by each runner
    assert sorted(ran) == [("died-on-second", 3), ("waiting", 1)]
    assert await _statuses(pool) == {"died-on-last": "failed", "died-on-second": "done", "waiting": "done"}
    assert await _exhausted(pool) == [
        ("died-on-last", "attempt 3 of 3 lost its worker (its lease ran out)", True)
    ]


async def _exhausted(pool: asyncpg.Pool) -> list[tuple[str, str, bool]]:
    async with pool.acquire() as conn:
        return [tuple(r) for r in await conn.fetch("SELECT * FROM exhausted ORDER BY dedupe_key")]


async def _raise_like_a_parser(conn: asyncpg.Connection, job: Job, reason: str, retryable: bool) -> None:
    raise ValueError("payload is not an envelope")


async def _write_where_nothing_can_be_written(
    conn: asyncpg.Connection, job: Job, reason: str, retryable: bool
) -> None:
    await conn.execute("INSERT INTO missing_table VALUES (1)")


@pytest.mark.parametrize(
    ("on_exhausted", "hook_error"),
    [
        (_raise_like_a_parser, "ValueError: payload is not an envelope"),
        (_write_where_nothing_can_be_written, 'UndefinedTableError: relation "missing_table" does not exist'),
    ],
)
async def test_a_failure_hook_that_raises_still_leaves_the_job_failed_with_both_errors(
    jobs_schema: tuple[str, asyncpg.Pool], on_exhausted: ExhaustedHandler, hook_error: str
) -> None:
    schema, pool = jobs_schema
    await _enqueue(pool, schema, "unparseable")
    ran: list[int] = []
    hook_calls: list[int] = []

    async def handler(job: Job) -> None:
        ran.append(job.attempts)
        raise ValueError("payload is not an envelope")

    async def hook(conn: asyncpg.Connection, job: Job, reason: str, retryable: bool) -> None:
        hook_calls.append(job.attempts)
        await on_exhausted(conn, job, reason, retryable)

    retry = RetryPolicy(max_attempts=2, base_s=0.01, max_s=0.05)
    with capture_logs(processors=[merge_contextvars]) as logs:
        async with _running(pool, schema, handler, hook, retry=retry, lease_s=0.3):
            await _until(lambda: _settled(pool))
            await asyncio.sleep(0.6)  # two leases: a job still leased to this runner would be taken again
    assert (ran, hook_calls) == ([1, 2], [2])
    async with pool.acquire() as conn:
        status, last_error = await conn.fetchrow("SELECT status, last_error FROM jobs")
    assert status == "failed"
    assert (
        last_error
        == f"ValueError: payload is not an envelope (failed without its failure hook: {hook_error})"
    )
    assert [
        (e["log_level"], e["dedupe_key"]) for e in logs if e["event"] == "job failed without its failure hook"
    ] == [("error", "unparseable")]


async def test_a_connection_lost_while_failing_a_job_fails_it_later_with_its_hook_not_without(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    await _enqueue(pool, schema, "outage")
    hook_calls: list[int] = []

    async def handler(job: Job) -> None:
        raise FailJob("the provider refused the prompt")

    async def hook(conn: asyncpg.Connection, job: Job, reason: str, retryable: bool) -> None:
        hook_calls.append(job.attempts)
        if len(hook_calls) == 1:  # the database goes away while the first failure is being recorded
            async with pool.acquire() as other:
                await other.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        await _record_exhausted(conn, job, reason, retryable)

    async with _running(pool, schema, handler, hook, lease_s=0.3):
        await _until(lambda: _settled(pool))
    async with pool.acquire() as conn:
        status, last_error = await conn.fetchrow("SELECT status, last_error FROM jobs")
    assert len(hook_calls) == 2
    assert (status, last_error) == ("failed", "the provider refused the prompt")
    assert [reason for _, reason, _ in await _exhausted(pool)] == ["the provider refused the prompt"]


async def test_a_runner_whose_lease_was_taken_cannot_complete_the_job_and_its_writes_roll_back(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    await _enqueue(pool, schema, "contested")
    lease_taken = asyncio.Event()
    outcomes: list[str] = []

    async def handler(job: Job) -> None:
        await lease_taken.wait()
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO effects (note) VALUES ($1)", job.dedupe_key)
                await jobs.complete(conn, job)
        except jobs.LeaseLost:
            outcomes.append("lease lost")
            raise
        outcomes.append("completed")

    async with _running(pool, schema, handler):
        await _until(lambda: _count(pool, "running", 1))
        async with pool.acquire() as conn:  # a long outage: the lease ran out and another runner took the job
            await conn.execute(
                "UPDATE jobs SET lease_owner = 'another', attempts = 2, lease_until = now() + interval '1 minute'"
            )
        lease_taken.set()
        await _until(lambda: asyncio.sleep(0, result=bool(outcomes)))
        await asyncio.sleep(0.2)  # four polls: the runner neither retries nor fails the job
    assert outcomes == ["lease lost"]
    async with pool.acquire() as conn:
        job = await conn.fetchrow("SELECT status, attempts, lease_owner FROM jobs")
        effects = await conn.fetchval("SELECT count(*) FROM effects")
    assert tuple(job) == ("running", 2, "another")
    assert effects == 0
    assert await _exhausted(pool) == []


async def test_a_re_armed_job_is_completed_by_its_new_request_not_by_the_runner_that_lost_its_lease(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    await _enqueue(pool, schema, "requested-twice")
    lease_taken = asyncio.Event()
    outcomes: list[str] = []

    async def handler(job: Job) -> None:
        request = "second request" if job.payload.get("again") else "first request"
        if request == "first request":
            await lease_taken.wait()
        try:
            async with pool.acquire() as conn, conn.transaction():
                await jobs.complete(conn, job)
        except jobs.LeaseLost:
            outcomes.append(f"{request}: lease lost")
            raise
        outcomes.append(f"{request}: completed")

    async with _running(pool, schema, handler):
        await _until(lambda: _count(pool, "running", 1))
        # Meanwhile another runner took the job and finished it, and it was requested again.
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE jobs SET status = 'done', lease_owner = NULL, lease_until = NULL")
            await jobs.enqueue(
                conn,
                schema,
                queue="q",
                dedupe_key="requested-twice",
                group_key="acct-1",
                payload={"again": True},
            )
        lease_taken.set()
        await _until(lambda: asyncio.sleep(0, result=len(outcomes) == 2))
    assert outcomes == ["first request: lease lost", "second request: completed"]
    assert await _statuses(pool) == {"requested-twice": "done"}


async def test_a_runner_that_finds_its_lease_taken_stops_the_work(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    await _enqueue(pool, schema, "slow")
    cancelled = asyncio.Event()

    async def handler(job: Job) -> None:
        try:
            await asyncio.sleep(30)  # a slow side effect
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with _running(pool, schema, handler, lease_s=0.3):
        await _until(lambda: _count(pool, "running", 1))
        await asyncio.sleep(0.5)  # renewed while the lease is its own
        assert not cancelled.is_set()
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE jobs SET lease_owner = 'another', lease_until = now() + interval '1 minute'"
            )
        await asyncio.wait_for(cancelled.wait(), 2.0)
    async with pool.acquire() as conn:
        assert tuple(await conn.fetchrow("SELECT status, lease_owner FROM jobs")) == ("running", "another")


async def test_a_job_whose_lease_ran_out_while_its_runner_still_works_on_it_is_not_started_again_by_that_runner(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema
    await _enqueue(pool, schema, "outlived")
    let_go = asyncio.Event()
    ran: list[int] = []

    async def handler(job: Job) -> None:
        ran.append(job.attempts)
        await let_go.wait()
        async with pool.acquire() as conn, conn.transaction():
            await jobs.complete(conn, job)

    async with _running(pool, schema, handler):
        await _until(lambda: _count(pool, "running", 1))
        async with pool.acquire() as conn:  # the renewals failed through an outage longer than the lease
            await conn.execute("UPDATE jobs SET lease_until = now() - interval '1 second'")
        await asyncio.sleep(0.3)  # six polls
        let_go.set()
        await _until(lambda: _all_in(pool, "done", 1))
    assert ran == [1]


async def test_finished_work_requested_again_runs_again(jobs_schema: tuple[str, asyncpg.Pool]) -> None:
    schema, pool = jobs_schema
    runs: list[str] = []

    async def handler(job: Job) -> None:
        runs.append(job.dedupe_key)
        async with pool.acquire() as conn, conn.transaction():
            await jobs.complete(conn, job)

    async with _running(pool, schema, handler):
        await _enqueue(pool, schema, "again")
        await _until(lambda: _all_in(pool, "done", 1))
        assert await _enqueue(pool, schema, "again") is True
        await _until(lambda: asyncio.sleep(0, result=len(runs) == 2))
    assert runs == ["again", "again"]


async def test_enqueue_many_arms_each_key_once_with_its_first_payload_and_leaves_pending_jobs_alone(
    jobs_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = jobs_schema

    def new(key: str, note: str) -> jobs.NewJob:
        return jobs.NewJob(dedupe_key=key, group_key="acct-1", payload={"note": note})

    async with pool.acquire() as conn, conn.transaction():
        armed = await jobs.enqueue_many(
            conn, schema, "q", [new("a", "first"), new("b", "b"), new("a", "second")]
        )
    assert armed == {"a", "b"}
    async with pool.acquire() as conn, conn.transaction():
        again = await jobs.enqueue_many(conn, schema, "q", [new("a", "third"), new("c", "c")])
    assert again == {"c"}  # "a" is still pending: requesting it again does nothing
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT dedupe_key, payload FROM jobs WHERE queue = 'q' ORDER BY dedupe_key")
    assert [(r["dedupe_key"], r["payload"]["note"]) for r in rows] == [("a", "first"), ("b", "b"), ("c", "c")]
