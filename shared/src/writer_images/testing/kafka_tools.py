"""Read what really reached the broker (tests and benchmarks)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from writer_images.events import OutgoingEvent, Payload, all_contracts, decode_envelope

PayloadT = TypeVar("PayloadT", bound=Payload)


async def collect(
    bootstrap: str,
    topics: list[str],
    *,
    until: Callable[[list[ConsumerRecord[Any, Any]]], bool],
    keep: Callable[[ConsumerRecord[Any, Any]], bool] = lambda _: True,
    timeout_s: float = 20.0,
) -> list[ConsumerRecord[Any, Any]]:
    """Consume from the beginning with a fresh group until `until(kept)` holds or the time is up."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"test-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
        fetch_max_wait_ms=20,  # tansu answers a waiting fetch only when the wait is over
    )
    await consumer.start()
    kept: list[ConsumerRecord[Any, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not until(kept) and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                kept.extend(r for r in records if keep(r))
    finally:
        await consumer.stop()
    return kept


async def emitted(bootstrap: str, kind: type[PayloadT], count: int = 1, **fields: Any) -> list[PayloadT]:
    """The first `count` events of type `kind` on the broker whose payload has these field values, decoded:
    what a service emitted for the request a test just made."""
    topic = next(c.topic for c in all_contracts() if c.model is kind)

    def wanted(record: ConsumerRecord[Any, Any]) -> bool:
        payload = orjson.loads(record.value).get("payload") or {}
        return all(payload.get(name) == value for name, value in fields.items())

    records = await collect(bootstrap, [topic], keep=wanted, until=lambda kept: len(kept) >= count)
    payloads = [decode_envelope(r.value)[1] for r in records[:count]]
    assert len(payloads) == count, f"{len(payloads)} of {count} {kind.__name__} events with {fields}"
    return [p for p in payloads if isinstance(p, kind)]


async def send_events(bootstrap: str, events: list[OutgoingEvent]) -> None:
    """Put events on the broker exactly as a service's relay would (key, headers), each acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                event.topic,
                value=event.value,
                key=event.key.encode(),
                headers=[("event_type", event.type.encode()), ("event_id", str(event.event_id).encode())],
            )
    finally:
        await producer.stop()
