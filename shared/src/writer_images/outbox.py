"""Transactional outbox: events are written in the caller's transaction and relayed to Kafka.

Invariant: a row leaves the table only after the broker acknowledged it. The relay claims rows
with `FOR UPDATE SKIP LOCKED` inside a transaction, sends the whole batch, waits for every
acknowledgement, then deletes the rows and commits. If the process dies at any line the
transaction rolls back with the connection, the rows stay, and the next relay sends them again
(duplicates are absorbed by every consumer's inbox). Several relays can run (one per instance of
a service): one sends at a time, under an advisory lock per schema, so that an aggregate's events
leave in the order they were written. See docs/adr/0002-own-outbox-relay.md for why this is not
faststream-outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from writer_images import dlq, metrics
from writer_images.events import OutgoingEvent
from writer_images.logging import get_logger
from writer_images.retry import RetryPolicy
from writer_images.topics import DLQ_SUFFIX, dlq_topic

log = get_logger(__name__)

_RELAY_LOCK_CLASS = 0x4F55_5442  # "OUTB": advisory-lock class of the relays, one lock per schema
_STAND_BY_S = 0.05
# Rows deleted between the relay's own VACUUMs of its outbox (see `OutboxRelay.__init__`).
VACUUM_EVERY_ROWS = 2000
# What a broker (or the producer, before sending) says of a record itself: sent again, it is refused again.
# Anything else (the broker away, a leader moving, a timeout) is the system's state and is retried.
_UNSENDABLE = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)


def outbox_ddl() -> str:
    """DDL for a service's outbox table; run by the service's first migration (search_path = schema)."""
    return """
    CREATE TABLE outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id uuid NOT NULL,
        event_type text NOT NULL,
        topic text NOT NULL,
        key text NOT NULL,
        value bytea NOT NULL,
        correlation_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    """


def notify_channel(schema: str) -> str:
    return f"outbox_{schema}"


# The outbox row's columns, in the order `outbox_values` gives them.
OUTBOX_COLUMNS = "event_id, event_type, topic, key, value, correlation_id"


def outbox_values(event: OutgoingEvent) -> tuple[Any, ...]:
    """One event as the outbox's column values, for a hot path that writes its outbox row inside a larger
    single statement (a CTE) instead of calling `Outbox.write` in a transaction. Such a writer must also wake
    the relay: `pg_notify(Outbox.channel, '')` in the statement, or, when the relay runs in the writer's own
    process, `OutboxRelay.wake()` once the statement has committed (no NOTIFY through the server)."""
    return (event.event_id, event.type, event.topic, event.key, event.value, event.correlation_id)


_OUTBOX_TYPES = ("uuid", "text", "text", "text", "bytea", "text")


def outbox_arrays(events: Sequence[OutgoingEvent]) -> list[list[Any]]:
    """Events as one array per outbox column (the order of `OUTBOX_COLUMNS`): the parameters of
    `outbox_insert`, or columns of a wider `unnest` beside other per-event values."""
    rows = [outbox_values(event) for event in events]
    return [[row[i] for row in rows] for i in range(len(_OUTBOX_TYPES))]


def outbox_insert(first_param: int) -> str:
    """An INSERT of the outbox rows given by `outbox_arrays` as parameters $first_param… (six of them), for
    a statement that writes its events beside other rows (see `outbox_values` for waking the relay)."""
    arrays = ", ".join(f"${first_param + i}::{t}[]" for i, t in enumerate(_OUTBOX_TYPES))
    return f"INSERT INTO outbox ({OUTBOX_COLUMNS}) SELECT * FROM unnest({arrays})"


class Outbox:
    """Writes events in the caller's transaction and wakes the relay when that transaction commits."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.channel = notify_channel(schema)

    async def write(self, conn: asyncpg.Connection, events: Sequence[OutgoingEvent]) -> None:
        if not events:
            return
        # One round trip: the rows, and the NOTIFY (delivered at commit, duplicates within one transaction
        # collapsed) that wakes the relay.
        await conn.execute(
            f"""
            WITH written AS ({outbox_insert(1)} RETURNING 1)
            SELECT pg_notify($7, '') FROM (SELECT 1 FROM written LIMIT 1) AS any_written
            """,
            *outbox_arrays(events),
            self.channel,
        )


class OutboxRelay:
    """Publishes outbox rows to Kafka in batches; woken by LISTEN/NOTIFY, polls as a fallback."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        producer: AIOKafkaProducer,
        *,
        batch_size: int = 1000,
        poll_interval_s: float = 1.0,
        retry: RetryPolicy | None = None,
        linger_s: float = 0.0,
        vacuum_every_rows: int = VACUUM_EVERY_ROWS,
    ) -> None:
        """`linger_s`: after a wake-up, wait this long before claiming, so that a hot path committing one
        event per transaction is relayed in batches (like Kafka's linger.ms); 0 relays at once.

        `vacuum_every_rows`: the outbox is a queue table, every row inserted then deleted, and the relay's
        claim reads the primary key from its start, over every dead row autovacuum has not yet removed. With
        autovacuum's one-minute naptime a busy outbox holds thousands: the claim took 0.42 ms with 12,000 dead
        rows against 0.18 ms just after a VACUUM (the generator's relay, 1,000 claims a run, was Postgres's
        largest statement). So the relay vacuums its outbox itself after this many deleted rows; 0 never."""
        self._pool = pool
        self._schema = schema
        self._producer = producer
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._retry = retry or RetryPolicy(max_attempts=1_000_000, base_s=0.2, max_s=5.0)
        self._linger_s = linger_s
        self._vacuum_every_rows = vacuum_every_rows
        self._deleted_since_vacuum = 0
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        # Rows left to relay one at a time: a broker refuses a partition's whole batch for one record that
        # is too large, so the record is found by sending alone the rows of the batch it was in.
        self._alone = 0

    async def run(self) -> None:
        """Relay until `stop()`; broker or database outages are waited out with backoff."""
        listener = await self._listen()
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    sent = await self._relay_turn()
                    failures = 0
                except Exception as exc:  # broker or database away: nothing was deleted, retry later
                    failures += 1
                    delay = self._retry.delay(failures)
                    log.warning("outbox relay failed, backing off", error=repr(exc), delay_s=round(delay, 2))
                    await self._sleep(delay)
                    continue
                if sent is None:
                    # Another relay's turn: what woke this one may be news to it, so look again soon.
                    await self._sleep(_STAND_BY_S)
                elif sent < self._batch_size and not self._alone:
                    await self._wait_for_work()
                    if self._linger_s > 0:
                        await self._sleep(self._linger_s)
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    async def relay_once(self) -> int:
        """Send one batch; returns how many rows left the outbox.

        The batch is deleted and returned by one statement, and sent before that transaction commits: a
        failed send (or a crash) rolls the delete back and the rows are sent again (at least once). A row the
        broker can never take (too large) must not hold back every row behind it: it leaves the outbox as a
        dead letter on its topic's DLQ, with its reason."""
        return await self._relay_turn() or 0

    async def _relay_turn(self) -> int | None:
        """`relay_once`, or None when another relay of this schema holds the turn."""
        try:
            return await self._relay_batch(1 if self._alone else self._batch_size)
        except _BatchRefusedError as refused:
            self._alone = refused.rows
            log.warning("outbox batch refused by the broker; relaying it row by row", rows=refused.rows)
            return 0

    async def _relay_batch(self, limit: int) -> int | None:
        async with self._pool.acquire() as conn, conn.transaction():
            # One relay of a schema at a time (the others stand by): two relays sending disjoint batches at
            # once would let an aggregate's later event overtake its earlier one.
            if not await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", _RELAY_LOCK_CLASS, self._schema
            ):
                return None
            deleted = await conn.fetch(
                """
                DELETE FROM outbox WHERE id IN (
                    SELECT id FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
                )
                RETURNING id, event_id, event_type, topic, key, value, correlation_id
                """,
                limit,
            )
            if not deleted:
                metrics.OUTBOX_BACKLOG.labels(self._schema).set(0)
                self._alone = 0
                return 0
            rows = sorted(deleted, key=lambda row: row["id"])  # RETURNING has no order; a key's events do
            refused = await self._send(rows)
            if refused and len(rows) > 1:
                # Which row was refused is unknown when the broker refuses a batch: roll back, then send
                # these rows one at a time.
                raise _BatchRefusedError(len(rows))
            for row, error in refused:
                await self._dead_letter(row, error)
        self._alone = max(0, self._alone - 1)
        metrics.OUTBOX_RELAYED.labels(self._schema).inc(len(rows) - len(refused))
        self._deleted_since_vacuum += len(rows)
        if self._vacuum_every_rows and self._deleted_since_vacuum >= self._vacuum_every_rows:
            await self._vacuum()
        return len(rows)

    async def _vacuum(self) -> None:
        self._deleted_since_vacuum = 0
        try:
            async with self._pool.acquire() as conn:
                # SKIP_LOCKED: when autovacuum (or another relay) is at it already, that is enough.
                await conn.execute("VACUUM (SKIP_LOCKED) outbox")
        except Exception as exc:  # only slower claims until the next one: the relay goes on
            log.warning("outbox vacuum failed", error=repr(exc))

    async def _send(self, rows: list[asyncpg.Record]) -> list[tuple[asyncpg.Record, Exception]]:
        """Send every row and wait for every acknowledgement; returns the rows refused for what they are.
        Any other failure raises (the transaction rolls back: nothing leaves the outbox)."""
        pending: list[asyncio.Future[object]] = []
        for row in rows:
            try:
                pending.append(
                    await self._producer.send(
                        row["topic"],
                        value=row["value"],
                        key=row["key"].encode(),
                        headers=[
                            ("event_type", row["event_type"].encode()),
                            ("event_id", str(row["event_id"]).encode()),
                            ("correlation_id", row["correlation_id"].encode()),
                        ],
                    )
                )
            except _UNSENDABLE as exc:  # refused by the producer itself, before sending
                pending.append(_failed(exc))
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        refused = []
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, _UNSENDABLE):
                refused.append((row, outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
        return refused

    async def _dead_letter(self, row: asyncpg.Record, error: Exception) -> None:
        """A summary of the refused event (the event itself would be refused again) to its topic's DLQ,
        acknowledged before the row's deletion commits; a refused dead letter's summary goes to its own topic."""
        value: bytes = row["value"]
        reason = f"the broker cannot take this event ({len(value):,} bytes): {error!r}"[:2000]
        summary = {"event_id": str(row["event_id"]), "event_type": row["event_type"], "bytes": len(value)}
        body = dlq.letter(
            reason=reason,
            attempts=1,
            group_id=f"outbox:{self._schema}",
            topic=row["topic"],
            key=row["key"],
            original=summary,
            original_encoding="summary",
        )
        dead_topic = row["topic"] if row["topic"].endswith(DLQ_SUFFIX) else dlq_topic(row["topic"])
        await (await self._producer.send(dead_topic, value=orjson.dumps(body), key=row["key"].encode()))
        metrics.EVENTS_DEAD_LETTERED.labels(f"outbox:{self._schema}", row["topic"]).inc()
        log.error("outbox event dead-lettered", reason=reason, topic=row["topic"], **summary)

    async def backlog(self) -> int:
        async with self._pool.acquire() as conn:
            count: int = await conn.fetchval("SELECT count(*) FROM outbox")
        metrics.OUTBOX_BACKLOG.labels(self._schema).set(count)
        return count

    async def _listen(self) -> _ReleasingConnection | None:
        try:
            conn: asyncpg.Connection = await self._pool.acquire()
        except Exception as exc:  # the poll fallback still works without LISTEN
            log.warning("outbox relay cannot LISTEN; polling only", error=repr(exc))
            return None
        await conn.add_listener(notify_channel(self._schema), self._on_notify)
        return _ReleasingConnection(self._pool, conn, notify_channel(self._schema), self._on_notify)

    def wake(self) -> None:
        """Relay now: rows were committed to the outbox (by this process; others NOTIFY)."""
        self._wakeup.set()

    def _on_notify(self, *_: object) -> None:
        self.wake()

    async def _wait_for_work(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._poll_interval_s)
        self._wakeup.clear()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


class _BatchRefusedError(Exception):
    def __init__(self, rows: int) -> None:
        super().__init__(f"the broker refused a batch of {rows} rows")
        self.rows = rows


def _failed(error: Exception) -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


class _ReleasingConnection:
    """Returns the LISTEN connection to its pool on close."""

    def __init__(self, pool: asyncpg.Pool, conn: asyncpg.Connection, channel: str, callback: Any) -> None:
        self._pool = pool
        self._conn = conn
        self._channel = channel
        self._callback = callback

    async def close(self) -> None:
        await self._conn.remove_listener(self._channel, self._callback)
        await self._pool.release(self._conn)
