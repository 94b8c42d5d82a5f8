"""Durable jobs: slow external work (a provider call, a WordPress publish) accepted from an event
and done by a leased worker, so that Kafka offsets move on at once and nothing is lost on a crash.

A consumer enqueues a job in the same transaction as its inbox claim; the `JobRunner` claims ready
jobs with `FOR UPDATE SKIP LOCKED` and a lease, renews the lease while working, and records the
outcome. A process killed mid-job leaves its lease to expire; the next runner (this process after
a restart, or another instance) takes the job again, or fails it if that was its last attempt (a job
that kills its worker every time must not be run forever). An outcome (completion, retry, failure)
applies only while the attempt still holds the lease: an attempt that outlived its lease (a long
database outage) and was overtaken records nothing, and its handler is cancelled once the heartbeat
finds out. Jobs are unique per (queue, dedupe_key):
requesting the same work twice while it is pending does nothing, and requesting it after it
finished runs it again (the handler decides whether that means "re-emit the stored result").

Concurrency is bounded per runner and per group (an account, a site, a provider key), so one
tenant cannot take every slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from writer_images import metrics
from writer_images.logging import bound_context, get_logger
from writer_images.retention import BATCH, Pruner, delete_in_batches
from writer_images.retry import RetryPolicy
from writer_images.settings import JobSettings

log = get_logger(__name__)


def jobs_ddl() -> str:
    return """
    CREATE TABLE jobs (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        queue text NOT NULL,
        dedupe_key text NOT NULL,
        group_key text NOT NULL,
        payload jsonb NOT NULL,
        status text NOT NULL DEFAULT 'ready' CHECK (status IN ('ready', 'running', 'done', 'failed')),
        attempts int NOT NULL DEFAULT 0,
        run_after timestamptz NOT NULL DEFAULT now(),
        lease_owner text,
        lease_until timestamptz,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (queue, dedupe_key)
    );
    CREATE INDEX jobs_claimable ON jobs (queue, run_after) WHERE status IN ('ready', 'running');
    """


def jobs_claim_order_ddl() -> str:
    """A later migration of every service with jobs: the claim's order (run_after, id) in the index, so that
    claiming reads the first ready rows instead of sorting every ready one (a backlog of 1,000 jobs made a
    claim cost 0.6 ms)."""
    return """
    DROP INDEX jobs_claimable;
    CREATE INDEX jobs_claimable ON jobs (queue, run_after, id) WHERE status IN ('ready', 'running');
    """


def notify_channel(schema: str) -> str:
    return f"jobs_{schema}"


@dataclass(frozen=True)
class Job:
    id: int
    queue: str
    dedupe_key: str
    group_key: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    # The runner whose lease this attempt runs under: the attempt's outcome applies only while it still holds.
    lease_owner: str


async def enqueue(
    conn: asyncpg.Connection,
    schema: str,
    *,
    queue: str,
    dedupe_key: str,
    group_key: str,
    payload: dict[str, Any],
) -> bool:
    """Add a job (or re-arm a finished one with the new payload). False when it is already pending."""
    armed = await enqueue_many(conn, schema, queue, [NewJob(dedupe_key, group_key, payload)])
    return dedupe_key in armed


@dataclass(frozen=True)
class NewJob:
    dedupe_key: str
    group_key: str
    payload: dict[str, Any]


async def enqueue_many(conn: asyncpg.Connection, schema: str, queue: str, new: Sequence[NewJob]) -> set[str]:
    """Add jobs (or re-arm finished ones with the new payload) in one round trip: the rows, and when any is
    armed the NOTIFY (delivered at commit) that wakes the runners. Returns the dedupe keys that were armed
    (a pending job is left alone); a key given twice is armed once, with its first payload."""
    firsts: dict[str, NewJob] = {}
    for job in new:
        firsts.setdefault(job.dedupe_key, job)
    first = list(firsts.values())
    if not first:
        return set()
    armed = await conn.fetchval(
        """
        WITH armed AS (
            INSERT INTO jobs (queue, dedupe_key, group_key, payload)
            SELECT $1, u.dedupe_key, u.group_key, u.payload
            FROM unnest($2::text[], $3::text[], $4::jsonb[]) AS u(dedupe_key, group_key, payload)
            ON CONFLICT (queue, dedupe_key) DO UPDATE
                SET payload = EXCLUDED.payload, group_key = EXCLUDED.group_key, status = 'ready',
                    attempts = 0, run_after = now(), last_error = NULL, lease_owner = NULL, lease_until = NULL,
                    updated_at = now()
                WHERE jobs.status IN ('done', 'failed')
            RETURNING dedupe_key
        )
        SELECT array_agg(dedupe_key), (SELECT pg_notify($5, $1) WHERE EXISTS (SELECT 1 FROM armed))
        FROM armed
        """,
        queue,
        [job.dedupe_key for job in first],
        [job.group_key for job in first],
        [job.payload for job in first],
        notify_channel(schema),
    )
    return set(armed or ())


class RetryJob(Exception):  # noqa: N818 - reads as an instruction at the raise site
    """Raised by a handler for a transient failure: run again later (honouring `retry_after_s`)."""

    def __init__(self, reason: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class FailJob(Exception):  # noqa: N818
    """Raised by a handler for a failure that retrying cannot fix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LeaseLost(Exception):  # noqa: N818 - names what happened, like RetryJob and FailJob
    """The lease of a job passed to another runner (or the job was finished and requested again) while this
    attempt ran, so its outcome must not apply. Raised by `complete` inside the handler's transaction, which
    therefore rolls back; the runner logs it and leaves the job to whoever holds it now."""

    def __init__(self, *jobs: Job) -> None:
        super().__init__(
            ", ".join(
                f"job {job.id} ({job.dedupe_key}) is no longer leased to {job.lease_owner}" for job in jobs
            )
        )
        self.jobs = jobs


@dataclass(frozen=True)
class _Failure:
    reason: str
    retryable: bool
    retry_after_s: float | None = None


JobHandler = Callable[[Job], Awaitable[None]]
ExhaustedHandler = Callable[[asyncpg.Connection, Job, str, bool], Awaitable[None]]


@dataclass(frozen=True)
class RunnerConfig:
    queue: str
    concurrency: int = 8
    per_group_limit: int = 4
    lease_s: float = 60.0
    poll_interval_s: float = 1.0
    retry: RetryPolicy = RetryPolicy(max_attempts=5, base_s=1.0, max_s=60.0)  # noqa: RUF009 - frozen value

    # While jobs run, the runner claims only once a quarter of its slots (and of a group's) are free, or once
    # a free slot has waited `claim_linger_s`: claiming for each finished job cost a statement per job, and
    # the linger bounds how long a slot idles when jobs finish one by one (a paid call per slot).
    claim_linger_s: float = 0.05

    @property
    def refill_at(self) -> int:
        return max(1, self.concurrency // 4)

    @property
    def group_refill_at(self) -> int:
        return max(1, self.per_group_limit // 4)


class JobRunner:
    """Claims and runs jobs of one queue; `handler` does the work and completes the job itself
    (with `complete()` inside its own transaction, beside its outbox events)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        config: RunnerConfig,
        handler: JobHandler,
        on_exhausted: ExhaustedHandler,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._config = config
        self._handler = handler
        self._on_exhausted = on_exhausted
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._running: dict[int, asyncio.Task[None]] = {}
        self._groups: Counter[str] = Counter()
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._free_since: float | None = None  # when a slot became free that no claim has filled yet

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def run(self) -> None:
        listener = await self._pool.acquire()
        await listener.add_listener(notify_channel(self._schema), self._on_notify)
        try:
            while not self._stopping.is_set():
                try:
                    claimed = await self._claim_and_start()
                except Exception as exc:  # database away: back off, keep the runner alive
                    log.warning("job claim failed", queue=self._config.queue, error=repr(exc))
                    await self._pause(self._config.retry.delay(3))
                    continue
                if not claimed:
                    await self._wait_for_work(self._until_claim_due())
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener(notify_channel(self._schema), self._on_notify)
                await self._pool.release(listener)
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    def _on_notify(self, *_: object) -> None:
        self._wakeup.set()

    async def _wait_for_work(self, at_most_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), at_most_s)
        self._wakeup.clear()

    def _until_claim_due(self) -> float:
        if self._free_since is None:
            return self._config.poll_interval_s
        waited = asyncio.get_running_loop().time() - self._free_since
        return max(0.0, min(self._config.poll_interval_s, self._config.claim_linger_s - waited))

    def _group_room_needed(self, free: int) -> int | None:
        """The free slots a group needs for a claim now, or None when it is not time to claim: any once a
        free slot has waited the linger; else a quarter of the group's when nothing runs or a quarter of
        the runner's slots are free."""
        config = self._config
        if free <= 0:
            self._free_since = None
            return None
        now = asyncio.get_running_loop().time()
        if self._free_since is not None and now - self._free_since >= config.claim_linger_s:
            return 1
        if not self._running or free >= config.refill_at:
            return config.group_refill_at
        if self._free_since is None:
            self._free_since = now
        return None

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _claim_and_start(self) -> int:
        config = self._config
        free = config.concurrency - len(self._running)
        room_needed = self._group_room_needed(free)
        if room_needed is None:
            return 0
        room = {group: config.per_group_limit - n for group, n in self._groups.items()}
        saturated = [group for group, slots in room.items() if slots < room_needed]
        async with self._pool.acquire() as conn:
            # Each group gets no more than its room (`nth` within the group), so a claim never takes jobs it
            # would have to give back; a window of candidates a few times `free` deep lets other groups'
            # jobs past a busy group's backlog. A job whose lease ran out on its last attempt lost its worker
            # (killed, or it killed it): it is claimed `lost`, to be failed, not run again (attempts unchanged).
            # The jobs this runner still works on are never claimed by it: a lease that ran out during an
            # outage is renewed by their heartbeat, not run a second time beside them.
            rows = await conn.fetch(
                """
                WITH candidate AS (
                    SELECT id, group_key, run_after, status = 'running' AND attempts >= $10 AS lost FROM jobs
                    WHERE queue = $1 AND NOT (group_key = ANY($3::text[])) AND NOT (id = ANY($11::bigint[]))
                      AND ((status = 'ready' AND run_after <= now()) OR (status = 'running' AND lease_until < now()))
                    ORDER BY run_after, id LIMIT $6 FOR UPDATE SKIP LOCKED
                ), chosen AS (
                    SELECT c.id, c.lost FROM (
                        SELECT id, group_key, run_after, lost,
                               row_number() OVER (PARTITION BY group_key ORDER BY run_after, id) AS nth
                        FROM candidate
                    ) c LEFT JOIN unnest($7::text[], $8::int[]) AS room(group_key, slots) USING (group_key)
                    WHERE c.nth <= coalesce(room.slots, $9)
                    ORDER BY c.run_after, c.id LIMIT $2
                )
                UPDATE jobs SET status = 'running', attempts = attempts + CASE WHEN chosen.lost THEN 0 ELSE 1 END,
                       lease_owner = $4, lease_until = now() + make_interval(secs => $5), updated_at = now()
                FROM chosen WHERE jobs.id = chosen.id
                RETURNING jobs.id, queue, dedupe_key, group_key, payload, attempts, created_at, lease_owner, chosen.lost
                """,
                config.queue,
                free,
                saturated,
                self._owner,
                config.lease_s,
                max(4 * free, 64),
                list(room),
                list(room.values()),
                config.per_group_limit,
                config.retry.max_attempts,
                list(self._running),
            )
        for row in rows:
            fields = dict(row)
            lost = fields.pop("lost")
            job = Job(**fields)
            self._groups[job.group_key] += 1
            self._running[job.id] = asyncio.create_task(self._run_one(job, lost=lost))
        started = len(rows)
        if started or room_needed == 1:
            # Filled, or nothing is claimable at all: wait for a finished job, a NOTIFY or the poll.
            self._free_since = None
        elif self._running and self._free_since is None:
            # Groups short of a quarter of their room were passed over: after the linger, one claim takes any.
            self._free_since = asyncio.get_running_loop().time()
        return started

    async def _run_one(self, job: Job, *, lost: bool) -> None:
        try:
            with bound_context(job_id=job.id, queue=job.queue, dedupe_key=job.dedupe_key):
                try:
                    if lost:
                        await self._fail_lost(job)
                    else:
                        await self._attempt(job)
                except Exception as exc:
                    # The outcome could not be recorded (the database away): the job keeps its lease until it
                    # runs out and is then taken again. Logged here, as nobody awaits this task.
                    log.exception("job outcome not recorded", attempt=job.attempts, error=repr(exc))
        finally:
            self._running.pop(job.id, None)
            self._groups[job.group_key] -= 1
            if self._groups[job.group_key] <= 0:
                del self._groups[job.group_key]
            self._wakeup.set()

    async def _attempt(self, job: Job) -> None:
        failure = await self._outcome(job)
        if failure is None:
            return
        if failure.retryable and not self._config.retry.exhausted(job.attempts):
            await self._retry(job, failure)
        else:
            await self._exhaust(job, failure.reason, retryable=failure.retryable)

    async def _outcome(self, job: Job) -> _Failure | None:
        """The handler's failure; None when it succeeded, or lost its lease (then there is nothing to record)."""
        try:
            await self._under_lease(job)
        except LeaseLost:
            self._lease_lost(job)
            return None
        except RetryJob as exc:
            return _Failure(exc.reason, retryable=True, retry_after_s=exc.retry_after_s)
        except FailJob as exc:
            return _Failure(exc.reason, retryable=False)
        except Exception as exc:  # a bug or an unexpected answer: retried like a transient failure
            log.exception("job handler raised", error=repr(exc))
            return _Failure(f"{type(exc).__name__}: {exc}", retryable=True)
        metrics.JOBS.labels(job.queue, "done").inc()
        return None

    async def _under_lease(self, job: Job) -> None:
        """The handler, while a heartbeat renews the job's lease; cancelled (`LeaseLost`) when the heartbeat
        finds the lease taken, so that an overtaken attempt stops its side effects as soon as it can know."""
        work = asyncio.ensure_future(self._handler(job))  # not create_task: a handler returns any awaitable
        heartbeat = asyncio.create_task(self._keep_lease(job))
        try:
            await asyncio.wait((work, heartbeat), return_when=asyncio.FIRST_COMPLETED)
        finally:
            heartbeat.cancel()
            if not work.done():
                work.cancel()
                await asyncio.wait((work,))
        if work.cancelled():
            raise LeaseLost(job)
        work.result()

    async def _keep_lease(self, job: Job) -> None:
        """Renew the lease every third of it; return once the job is pending under another lease."""
        while True:
            await asyncio.sleep(self._config.lease_s / 3)
            try:
                async with self._pool.acquire() as conn:
                    # A finished job is not a lost lease: this attempt's own completion may have committed
                    # a moment before its task ends.
                    lost = await conn.fetchval(
                        """
                        WITH renewed AS (
                            UPDATE jobs SET lease_until = now() + make_interval(secs => $2)
                            WHERE id = $1 AND lease_owner = $3 RETURNING id
                        )
                        SELECT NOT EXISTS (SELECT 1 FROM renewed)
                               AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND status IN ('ready', 'running'))
                        """,
                        job.id,
                        self._config.lease_s,
                        job.lease_owner,
                    )
            except Exception as exc:
                # The database away: keep working. A lease taken meanwhile shows at the first renewal that
                # reaches the database, and until then the attempt's outcome would not apply anyway.
                log.warning("job lease renewal failed", error=repr(exc))
                continue
            if lost:
                return

    async def _retry(self, job: Job, failure: _Failure) -> None:
        delay = self._config.retry.delay(job.attempts, failure.retry_after_s)
        async with self._pool.acquire() as conn:
            held = await conn.fetchval(
                """
                UPDATE jobs SET status = 'ready', run_after = now() + make_interval(secs => $2), last_error = $3,
                       lease_owner = NULL, lease_until = NULL, updated_at = now()
                WHERE id = $1 AND lease_owner = $4 RETURNING true
                """,
                job.id,
                delay,
                failure.reason[:2000],
                job.lease_owner,
            )
        if not held:
            self._lease_lost(job)
            return
        log.info("job will retry", reason=failure.reason, attempt=job.attempts, delay_s=round(delay, 2))
        metrics.JOBS.labels(job.queue, "retry").inc()

    async def _fail_lost(self, job: Job) -> None:
        reason = (
            f"attempt {job.attempts} of {self._config.retry.max_attempts} lost its worker (its lease ran out)"
        )
        log.warning("job lost its worker on its last attempt", attempt=job.attempts)
        # Retryable: a crash may come from the load of the moment (an OOM kill), as a 503 does.
        await self._exhaust(job, reason, retryable=True)

    async def _exhaust(self, job: Job, reason: str, *, retryable: bool) -> None:
        """Fail the job and call `on_exhausted`, in one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            held = await self._mark_failed(conn, job, reason)
            if held:
                await self._failure_hook(conn, job, reason, retryable)
        if not held:
            self._lease_lost(job)
            return
        metrics.JOBS.labels(job.queue, "failed").inc()

    async def _failure_hook(self, conn: asyncpg.Connection, job: Job, reason: str, retryable: bool) -> None:
        """`on_exhausted` in a savepoint. A hook that raises (it cannot read the payload that made the handler
        fail) leaves none of its writes and the job fails without it: otherwise the job stayed leased, to be
        taken and failed again for ever. A connection lost meanwhile is not the hook's fault: the statement
        below raises too, nothing commits, and once the lease runs out the job is failed again, hook and all."""
        try:
            async with conn.transaction():
                await self._on_exhausted(conn, job, reason, retryable)
        except Exception as exc:
            log.exception("job failed without its failure hook", reason=reason, error=repr(exc))
            await conn.execute(
                "UPDATE jobs SET last_error = $2 WHERE id = $1",
                job.id,
                f"{reason} (failed without its failure hook: {type(exc).__name__}: {exc})"[:2000],
            )

    async def _mark_failed(self, conn: asyncpg.Connection, job: Job, reason: str) -> bool:
        held = await conn.fetchval(
            """
            UPDATE jobs SET status = 'failed', last_error = $2, lease_owner = NULL, lease_until = NULL,
                   updated_at = now()
            WHERE id = $1 AND lease_owner = $3 RETURNING true
            """,
            job.id,
            reason[:2000],
            job.lease_owner,
        )
        return bool(held)

    def _lease_lost(self, job: Job) -> None:
        log.warning("job lease lost: this attempt's outcome is not recorded", attempt=job.attempts)
        metrics.JOBS.labels(job.queue, "lease_lost").inc()


async def hold_lease(conn: asyncpg.Connection, job: Job) -> None:
    """Raise `LeaseLost` unless `job` is still leased to this attempt. The job's row stays locked until
    the transaction ends (a claim skips locked rows), so no runner takes the job over before what the
    transaction writes is committed and visible to it."""
    held = await conn.fetchval(
        "SELECT true FROM jobs WHERE id = $1 AND lease_owner = $2 FOR SHARE", job.id, job.lease_owner
    )
    if not held:
        raise LeaseLost(job)


def completion(ids_param: int, owners_param: int) -> str:
    """The UPDATE that marks done the jobs whose ids and lease owners are parameters $ids_param and
    $owners_param (arrays, pairwise), returning the ids it marked: a job no longer leased to its attempt is
    left alone. For a hot path that completes its jobs inside a larger single statement (a CTE beside its
    results and outbox rows) instead of calling `complete` in a transaction (as `outbox.outbox_insert` numbers
    its parameters); it raises `LeaseLost` for the jobs missing from the ids."""
    return (
        "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_until = NULL, last_error = NULL, "
        f"updated_at = now() FROM unnest(${ids_param}::bigint[], ${owners_param}::text[]) AS held(id, owner) "
        "WHERE jobs.id = held.id AND jobs.lease_owner = held.owner RETURNING jobs.id"
    )


async def complete(conn: asyncpg.Connection, *done: Job) -> None:
    """Mark jobs done; call inside the handler's transaction, beside its effects and outbox events. Raises
    `LeaseLost`, rolling the transaction back, when a job is no longer leased to its attempt."""
    completed = {
        row["id"]
        for row in await conn.fetch(
            completion(1, 2), [job.id for job in done], [job.lease_owner for job in done]
        )
    }
    if lost := [job for job in done if job.id not in completed]:
        raise LeaseLost(*lost)


async def prune_finished(pool: asyncpg.Pool, older_than_s: float, batch: int = BATCH) -> int:
    """Delete the jobs that finished (done or failed) more than `older_than_s` ago, a batch per transaction."""
    return await delete_in_batches(
        pool,
        "jobs",
        "status IN ('done', 'failed') AND updated_at < now() - make_interval(secs => $1)",
        older_than_s,
        batch,
    )


class FinishedJobsPruner(Pruner):
    """Keeps the jobs table to the work in progress and the recent past.

    A finished job's row serves no dedupe: requesting its work again re-arms it, and a request that finds no
    row inserts one, which comes to the same (attempts from zero; the handler re-emits a stored result rather
    than doing the work twice). It stays `WI_JOB_RETENTION_S` (fourteen days by default) for operators to
    read (`last_error`, attempts), then goes, once an hour: every generated image and every publication left a
    row for ever. No index serves the delete: it reads the table once an hour, where an index on finished
    jobs would cost every completion a write.
    """

    def __init__(self, pool: asyncpg.Pool, retention_s: float, every_s: float = 3600.0) -> None:
        super().__init__(pool, "jobs", functools.partial(prune_finished, older_than_s=retention_s), every_s)


def runner_config(settings: JobSettings, queue: str, *, per_group_limit: int) -> RunnerConfig:
    """The job runner configuration every service derives from its settings."""
    return RunnerConfig(
        queue=queue,
        concurrency=settings.job_concurrency,
        per_group_limit=per_group_limit,
        lease_s=settings.job_lease_s,
        poll_interval_s=settings.job_poll_interval_s,
        retry=RetryPolicy(
            max_attempts=settings.job_max_attempts,
            base_s=settings.job_backoff_base_s,
            max_s=settings.job_backoff_max_s,
        ),
    )
