"""Operator access to the request DLQ: read the dead letters, replay their requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from writer_images.events import Envelope, ImageGenerationRequested, OutgoingEvent, make_event, utcnow
from writer_images.outbox import kafka_producer
from writer_images.topics import IMAGE_GENERATION_REQUESTED, dlq_topic

REQUEST_DLQ = dlq_topic(IMAGE_GENERATION_REQUESTED)


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    reason: str
    attempts: int
    failed_at: str | None
    original: Any

    @property
    def envelope(self) -> Envelope | None:
        try:
            return Envelope.model_validate(self.original)
        except ValueError:
            return None


async def read_dead_letters(bootstrap: str, topic: str = REQUEST_DLQ) -> list[DeadLetter]:
    """Every letter in the DLQ, from the beginning to the current end (no consumer group involved)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        letters: list[DeadLetter] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(*partitions, timeout_ms=500)
            for records in batches.values():
                letters.extend(_letter(r.offset, r.value or b"") for r in records)
        return sorted(letters, key=lambda letter: letter.offset)
    finally:
        await consumer.stop()


def _letter(offset: int, raw: bytes) -> DeadLetter:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return DeadLetter(offset, "unreadable dead letter", 0, None, None)
    return DeadLetter(
        offset=offset,
        reason=str(body.get("reason", "")),
        attempts=int(body.get("attempts", 0)),
        failed_at=body.get("failed_at"),
        original=body.get("original"),
    )


def replayed_request(envelope: Envelope, *, deadline_s: float) -> OutgoingEvent:
    """The same request under a new event id (the inbox remembers the old one) and a fresh deadline."""
    request = ImageGenerationRequested.model_validate(envelope.payload)
    fresh = request.model_copy(update={"deadline_at": utcnow() + timedelta(seconds=deadline_s)})
    return make_event(
        fresh,
        account_id=envelope.account_id,
        correlation_id=envelope.correlation_id,
        causation_id=str(envelope.event_id),
    )


async def publish(bootstrap: str, events: list[OutgoingEvent]) -> None:
    producer = kafka_producer(bootstrap, client_id="generator-dlq-replay")
    await producer.start()
    try:
        for event in events:
            await producer.send(event.topic, value=event.value, key=event.key.encode())
        await producer.flush()
    finally:
        await producer.stop()
