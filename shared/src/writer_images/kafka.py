"""Kafka helpers: explicit topic creation and broker construction with the project's defaults."""

from __future__ import annotations

import contextlib

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from writer_images.topics import TopicSpec, all_topics


async def ensure_topics(bootstrap: str, partitions: int, extra: list[TopicSpec] | None = None) -> None:
    """Create every topic the system uses if missing. Topics are never auto-created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="writer-images-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [*all_topics(partitions), *(extra or [])]
        missing = [NewTopic(s.name, s.partitions, 1) for s in wanted if s.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                await admin.create_topics(missing)
    finally:
        await admin.close()


def make_broker(bootstrap: str, *, client_id: str) -> KafkaBroker:
    return KafkaBroker(bootstrap, client_id=client_id, enable_idempotence=False)


def kafka_producer(bootstrap: str, *, client_id: str) -> AIOKafkaProducer:
    """The one producer configuration: acks from all replicas, small linger to form batches."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        linger_ms=2,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
        request_timeout_ms=15_000,
        enable_idempotence=False,  # tansu lacks it; our consumers are idempotent instead
    )
