"""EventConsumer through the real broker: effects once, poison to the DLQ, the consumer moves on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from writer_images import events, topics
from writer_images.consumer import Batched, ConsumerConfig, EventConsumer, IncomingEvent, PermanentError
from writer_images.events import make_event
from writer_images.kafka import make_broker
from writer_images.retry import RetryPolicy
from writer_images.testing.kafka_tools import collect


def _failed(image_id: int, reason: str) -> events.OutgoingEvent:
    payload = events.ImageGenerationFailed(
        task_id=uuid.uuid4(),
        image_id=image_id,
        content_id=900_000 + image_id,
        revision=1,
        reason=reason,
        retryable=False,
        attempts=1,
    )
    return make_event(payload, account_id=1, correlation_id="consumer-test")


async def _send_raw(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def _committed_effects(pool: asyncpg.Pool, marker: str) -> int:
    async with pool.acquire() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM effects WHERE note = $1", marker)
        return count


async def test_poison_goes_to_dlq_with_reason_and_the_consumer_keeps_going(
    service_schema: tuple[str, asyncpg.Pool], kafka_bootstrap: str
) -> None:
    _, pool = service_schema
    marker = uuid.uuid4().hex
    good_before, good_after, duplicate = _failed(1, marker), _failed(2, marker), _failed(3, marker)
    failing = _failed(4, "explode-" + marker)
    seen: list[int] = []

    async def record_effect(conn: asyncpg.Connection, event: IncomingEvent) -> None:
        payload = event.payload
        assert isinstance(payload, events.ImageGenerationFailed)
        if payload.reason.startswith("explode-"):
            raise PermanentError("this image belongs to nobody")
        if marker not in payload.reason:
            return  # other tests' events on the shared topic
        seen.append(payload.image_id)
        await conn.execute(
            "INSERT INTO effects (event_id, note) VALUES ($1, $2)", event.envelope.event_id, marker
        )

    broker = make_broker(kafka_bootstrap, client_id="consumer-test")
    consumer = EventConsumer(
        broker,
        pool,
        ConsumerConfig(
            group_id=f"g-{marker}",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            retry=RetryPolicy(max_attempts=2, base_s=0.01, max_s=0.05),
        ),
        {"image.generation.failed": record_effect},
    )
    consumer.register()
    await broker.start()
    try:
        await _send_raw(
            kafka_bootstrap,
            topics.IMAGE_GENERATION_FAILED,
            [
                (b"900001", good_before.value),
                (b"900001", b"{not an envelope"),
                (b"900004", failing.value),
                (b"900002", good_after.value),
                (b"900003", duplicate.value),
                (b"900003", duplicate.value),  # redelivered: must not apply twice
            ],
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while await _committed_effects(pool, marker) < 3 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a late duplicate would show up here
    finally:
        await broker.stop()

    assert await _committed_effects(pool, marker) == 3
    assert {1, 2, 3} <= set(seen)

    def is_ours(r: ConsumerRecord[Any, Any]) -> bool:
        return marker.encode() in r.value or b"{not an envelope" in r.value

    letters = await collect(
        kafka_bootstrap,
        [topics.dlq_topic(topics.IMAGE_GENERATION_FAILED)],
        keep=is_ours,
        until=lambda r: len(r) >= 2,
    )
    reasons = sorted(orjson.loads(r.value)["reason"] for r in letters)
    assert any(r.startswith("malformed event") for r in reasons)
    assert any("permanent: this image belongs to nobody" in r for r in reasons)
    exploded = next(orjson.loads(r.value) for r in letters if b"explode-" in r.value)
    assert exploded["original"]["event_id"] == str(failing.event_id)
    assert exploded["topic"] == topics.IMAGE_GENERATION_FAILED


async def test_a_batched_handler_takes_the_new_events_of_a_batch_in_one_call_in_order(
    service_schema: tuple[str, asyncpg.Pool], kafka_bootstrap: str
) -> None:
    _, pool = service_schema
    marker = uuid.uuid4().hex
    sent = [_failed(image_id, marker) for image_id in range(1, 41)]
    calls: list[list[int]] = []

    async def record_effects(conn: asyncpg.Connection, batch: Sequence[IncomingEvent]) -> None:
        ours = [
            e
            for e in batch
            if isinstance(e.payload, events.ImageGenerationFailed) and marker in e.payload.reason
        ]
        if not ours:
            return
        calls.append(
            [e.payload.image_id for e in ours if isinstance(e.payload, events.ImageGenerationFailed)]
        )
        await conn.executemany(
            "INSERT INTO effects (event_id, note) VALUES ($1, $2)",
            [(e.envelope.event_id, marker) for e in ours],
        )

    # Sent before the consumer starts, on one key (one partition): they arrive together, in this order.
    await _send_raw(
        kafka_bootstrap,
        topics.IMAGE_GENERATION_FAILED,
        [(b"batched", e.value) for e in [*sent, sent[0], sent[7]]],  # two redeliveries among them
    )
    broker = make_broker(kafka_bootstrap, client_id="consumer-test")
    consumer = EventConsumer(
        broker,
        pool,
        ConsumerConfig(group_id=f"g-{marker}", session_timeout_ms=2000, heartbeat_interval_ms=500),
        {"image.generation.failed": Batched(record_effects)},
    )
    consumer.register()
    await broker.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while await _committed_effects(pool, marker) < len(sent) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a late duplicate would show up here
    finally:
        await broker.stop()

    assert await _committed_effects(pool, marker) == len(sent)
    assert [image_id for call in calls for image_id in call] == list(range(1, 41))
    assert len(calls) < len(sent)  # not one call per event
