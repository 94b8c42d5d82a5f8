"""Topic creation at startup against the real broker: idempotent, and loud when a topic cannot be made."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from writer_images.kafka import TopicCreationError, ensure_topics
from writer_images.topics import TopicSpec


async def _partitions(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return len(described["partitions"])
    finally:
        await admin.close()


async def test_services_starting_together_create_each_topic_once_without_failing(
    kafka_bootstrap: str,
) -> None:
    # Both see the topic missing and ask for it; the loser gets TOPIC_ALREADY_EXISTS, which is fine.
    topic = f"race.{uuid.uuid4().hex[:8]}"
    extra = [TopicSpec(topic, 2)]

    await asyncio.gather(*(ensure_topics(kafka_bootstrap, 3, extra) for _ in range(4)))
    await ensure_topics(kafka_bootstrap, 3, extra)

    assert await _partitions(kafka_bootstrap, topic) == 2


@pytest.mark.parametrize("partitions", [0, -2])
async def test_a_partition_count_below_one_fails_startup_naming_the_topic(
    kafka_bootstrap: str, partitions: int
) -> None:
    # tansu accepts such a request and makes a topic nobody can produce to; refuse it before asking.
    topic = f"bad.{uuid.uuid4().hex[:8]}"

    with pytest.raises(TopicCreationError, match=rf"{topic}.*partition"):
        await ensure_topics(kafka_bootstrap, 3, [TopicSpec(topic, partitions)])

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()
