"""Outbox relay vs a bare aiokafka producer, same broker, same consumer, same run.

1. Throughput, commit → consumed, 10,000 events: our path commits the events to the outbox in one
   transaction and lets the relay carry them; the baseline sends the same bytes straight from a
   bare `AIOKafkaProducer` (send all, then flush) — the ceiling for any relay.
2. Latency at a steady 500 events/s: each event committed in its own transaction; latency is the
   time from commit to the consumer's receipt (relay woken by LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import ratio_line, summary_ms, write_result
from writer_images import events
from writer_images.db import create_pool
from writer_images.inbox import inbox_ddl
from writer_images.infra.broker import TansuBroker
from writer_images.infra.postgres import postgres_server, throwaway_database
from writer_images.kafka import ensure_topics, kafka_producer
from writer_images.outbox import Outbox, OutboxRelay, outbox_ddl
from writer_images.topics import TopicSpec

N_EVENTS = 10_000
STEADY_RATE = 500
STEADY_SECONDS = 10
PARTITIONS = 3
# tansu does not wake a waiting fetch when data arrives: a fetch waits its full max wait.
FETCH_MAX_WAIT_MS = 10


def _events(n: int, topic_tag: str) -> list[events.OutgoingEvent]:
    out = []
    for i in range(n):
        payload = events.WordPressPostChanged(
            site_id=i % 50,
            post_id=str(i),
            wp_status="publish",
            modified_gmt=None,
            link=None,
            source="reconciler",
            observed_at=events.utcnow(),
        )
        out.append(events.make_event(payload, account_id=1, correlation_id=topic_tag))
    return out


async def _consumer_at_end(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=FETCH_MAX_WAIT_MS
    )
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    return consumer


async def _consume(consumer: AIOKafkaConsumer, n: int, arrivals: dict[bytes, float] | None = None) -> float:
    seen = 0
    while seen < n:
        batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
        now = time.perf_counter()
        for records in batches.values():
            seen += len(records)
            if arrivals is not None:
                for r in records:
                    arrivals[dict(r.headers)["event_id"]] = now
    return time.perf_counter()


async def _bare_producer_throughput(bootstrap: str, topic: str, batch: list[events.OutgoingEvent]) -> float:
    consumer = await _consumer_at_end(bootstrap, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=2, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        consuming = asyncio.create_task(_consume(consumer, len(batch)))
        started = time.perf_counter()
        for e in batch:
            await producer.send(
                topic, value=e.value, key=e.key.encode(), headers=[("event_id", str(e.event_id).encode())]
            )
        await producer.flush()
        finished = await consuming
    finally:
        await producer.stop()
        await consumer.stop()
    return len(batch) / (finished - started)


async def _outbox_throughput(
    pool: asyncpg.Pool, schema: str, bootstrap: str, batch: list[events.OutgoingEvent]
) -> float:
    topic = batch[0].topic
    consumer = await _consumer_at_end(bootstrap, topic)
    producer = kafka_producer(bootstrap, client_id="bench-relay")
    await producer.start()
    relay = OutboxRelay(pool, schema, producer, batch_size=2000)
    relaying = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.3)
        consuming = asyncio.create_task(_consume(consumer, len(batch)))
        async with pool.acquire() as conn, conn.transaction():
            await Outbox(schema).write(conn, batch)
        started = time.perf_counter()  # the clock starts at commit: nothing is visible to the relay before
        finished = await consuming
    finally:
        relay.stop()
        await relaying
        await producer.stop()
        await consumer.stop()
    return len(batch) / (finished - started)


async def _steady_latency(pool: asyncpg.Pool, schema: str, bootstrap: str) -> list[float]:
    batch = _events(STEADY_RATE * STEADY_SECONDS, "steady")
    consumer = await _consumer_at_end(bootstrap, batch[0].topic)
    producer = kafka_producer(bootstrap, client_id="bench-relay")
    await producer.start()
    relay = OutboxRelay(pool, schema, producer, batch_size=2000)
    relaying = asyncio.create_task(relay.run())
    arrivals: dict[bytes, float] = {}
    committed: dict[bytes, float] = {}
    outbox = Outbox(schema)
    try:
        await asyncio.sleep(0.3)
        consuming = asyncio.create_task(_consume(consumer, len(batch), arrivals))
        start = time.perf_counter()
        for i, e in enumerate(batch):
            due = start + i / STEADY_RATE
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            async with pool.acquire() as conn, conn.transaction():
                await outbox.write(conn, [e])
            committed[str(e.event_id).encode()] = time.perf_counter()
        await consuming
    finally:
        relay.stop()
        await relaying
        await producer.stop()
        await consumer.stop()
    return [arrivals[k] - committed[k] for k in committed if k in arrivals]


async def run(server: str) -> dict[str, Any]:
    async with throwaway_database(server, "wi_bench") as dsn:
        return await _run_on(dsn)


async def _run_on(dsn: str) -> dict[str, Any]:
    schema = "bench_outbox"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE SCHEMA {schema}; SET search_path TO {schema};" + inbox_ddl())
    await admin.execute(f"SET search_path TO {schema};" + outbox_ddl())
    await admin.close()
    pool = await create_pool(dsn, schema, max_size=6)
    try:
        with TansuBroker() as broker:
            await ensure_topics(broker.bootstrap, PARTITIONS, [TopicSpec("bench.bare", PARTITIONS)])
            bare_runs, ours_runs = [], []
            for _ in range(3):  # alternate, keep the best of each: noise on a shared 2-core box
                bare_runs.append(
                    await _bare_producer_throughput(broker.bootstrap, "bench.bare", _events(N_EVENTS, "bare"))
                )
                ours_runs.append(
                    await _outbox_throughput(pool, schema, broker.bootstrap, _events(N_EVENTS, "outbox"))
                )
            latencies = await _steady_latency(pool, schema, broker.bootstrap)
    finally:
        await pool.close()
    bare, ours = max(bare_runs), max(ours_runs)
    line = ratio_line(
        "outbox relay throughput (commit → consumed, 10k)",
        ours,
        bare,
        "bare aiokafka producer",
        "events/s",
        goal="≥ 0.50×",
    )
    latency = summary_ms(latencies)
    print(
        f"commit → consume at {STEADY_RATE} events/s: p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms (goal p99 < 50 ms)"
    )
    return {
        "throughput": {
            "ours_events_per_s": round(ours),
            "bare_aiokafka_events_per_s": round(bare),
            "ratio": round(ours / bare, 3),
            "runs": {"ours": ours_runs, "bare": bare_runs},
            "line": line,
        },
        "latency_at_500_per_s": latency,
    }


def main(argv: list[str]) -> None:
    with postgres_server(Path(tempfile.mkdtemp()) / "pgdata") as server:
        write_result("outbox", asyncio.run(run(server)))
