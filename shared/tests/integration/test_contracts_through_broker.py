"""Every event contract travels outbox → relay → real broker → EventConsumer and arrives exactly as typed."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from writer_images import events
from writer_images.consumer import ConsumerConfig, EventConsumer, IncomingEvent
from writer_images.kafka import kafka_producer, make_broker
from writer_images.outbox import Outbox, OutboxRelay
from writer_images.testing.examples import EXAMPLES, example


async def test_every_contract_arrives_as_typed_through_the_real_broker(
    service_schema: tuple[str, asyncpg.Pool], kafka_bootstrap: str
) -> None:
    schema, pool = service_schema
    correlation = f"contracts-{uuid.uuid4()}"
    sent = {
        model: events.make_event(example(model), account_id=9, correlation_id=correlation)
        for model in EXAMPLES
    }
    received: dict[uuid.UUID, events.Payload] = {}

    async def keep(conn: asyncpg.Connection, event: IncomingEvent) -> None:
        if event.envelope.correlation_id == correlation:
            received[event.envelope.event_id] = event.payload

    broker = make_broker(kafka_bootstrap, client_id="contracts")
    consumer = EventConsumer(
        broker,
        pool,
        ConsumerConfig(
            group_id=f"contracts-{uuid.uuid4().hex[:8]}",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            fetch_max_wait_ms=20,
        ),
        {c.event_type: keep for c in events.all_contracts()},
    )
    consumer.register()
    producer = kafka_producer(kafka_bootstrap, client_id="contracts")
    await producer.start()
    await broker.start()
    try:
        async with pool.acquire() as conn, conn.transaction():
            await Outbox(schema).write(conn, list(sent.values()))
        await OutboxRelay(pool, schema, producer).relay_once()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(received) < len(sent) and loop.time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await broker.stop()
        await producer.stop()

    for model, outgoing in sent.items():
        assert received.get(outgoing.event_id) == example(model), model.__name__
