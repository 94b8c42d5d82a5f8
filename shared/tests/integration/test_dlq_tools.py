"""Operators can list a DLQ and replay its events: new event ids, caused by the originals."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from writer_images import dlq, events, topics
from writer_images.events import decode_envelope, make_event
from writer_images.testing.examples import example
from writer_images.testing.kafka_tools import collect


async def test_dead_letters_are_listed_with_reasons_and_replayed_under_new_ids(kafka_bootstrap: str) -> None:
    marker = uuid.uuid4().hex
    original = make_event(example(events.SiteChanged), account_id=4, correlation_id=marker)
    letters = [
        {
            "reason": "permanent: site belongs to nobody",
            "attempts": 1,
            "original": orjson.loads(original.value),
        },
        {"reason": "malformed event: not JSON", "attempts": 1, "original": f"garbage-{marker}"},
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for letter in letters:
            await producer.send_and_wait(topics.dlq_topic(topics.SITE_CHANGED), orjson.dumps(letter))
    finally:
        await producer.stop()

    listed = [
        x
        for x in await dlq.read_dead_letters(kafka_bootstrap, topics.SITE_CHANGED)
        if marker in str(x.original)
    ]
    assert [x.reason for x in listed] == [letter["reason"] for letter in letters]
    assert listed[0].envelope is not None
    assert listed[1].envelope is None

    replay = dlq.replayed(listed[0].envelope)
    await dlq.publish(kafka_bootstrap, [replay], client_id="test-replay")

    def is_replay(r: ConsumerRecord[Any, Any]) -> bool:
        return marker.encode() in r.value

    arrived = await collect(
        kafka_bootstrap, [topics.SITE_CHANGED], keep=is_replay, until=lambda r: len(r) >= 1
    )
    envelope, payload = decode_envelope(arrived[0].value)
    assert envelope.event_id != original.event_id
    assert envelope.causation_id == str(original.event_id)
    assert payload == example(events.SiteChanged)
