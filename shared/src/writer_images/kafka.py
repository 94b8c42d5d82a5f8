"""Kafka helpers: explicit topic creation and broker construction with the project's defaults."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from faststream.kafka import KafkaBroker

from writer_images.topics import TopicSpec, all_topics


class TopicCreationError(RuntimeError):
    """A topic the system needs could not be created: startup must stop here, not fail later."""


async def ensure_topics(bootstrap: str, partitions: int, extra: list[TopicSpec] | None = None) -> None:
    """Create every topic the system uses if missing. Topics are never auto-created.

    Raises TopicCreationError naming each topic the broker refused (or that asks for fewer than one
    partition); TOPIC_ALREADY_EXISTS is not an error, since services start concurrently.
    """
    wanted = [*all_topics(partitions), *(extra or [])]
    invalid = [f"{s.name}: partition count {s.partitions} is below 1" for s in wanted if s.partitions < 1]
    if invalid:
        raise TopicCreationError(
            "cannot create Kafka topics (check WI_KAFKA_PARTITIONS): " + "; ".join(invalid)
        )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="writer-images-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(s.name, s.partitions, 1) for s in wanted if s.name not in existing]
        if missing:
            # aiokafka reports per-topic failures as error codes in the response; it does not raise.
            # TOPIC_ALREADY_EXISTS only means another service, starting alongside, won the race.
            response = await admin.create_topics(missing)
            refused = [
                f"{name}: {for_code(code).message} ({(rest[0] if rest else None) or for_code(code).description})"
                for name, code, *rest in response.topic_errors
                if code not in (0, TopicAlreadyExistsError.errno)
            ]
            if refused:
                raise TopicCreationError(
                    f"broker {bootstrap} refused to create topics: " + "; ".join(refused)
                )
    finally:
        await admin.close()


def make_broker(bootstrap: str, *, client_id: str) -> KafkaBroker:
    # apply_types=False: handlers take the decoded message as their one argument, with no dependency
    # injection. Resolving the handler's message annotation ran in a worker thread for every batch.
    # logger: FastStream's own logger wrote a coloured plain-text line as each batch came and went, beside our
    # JSON lines; a stdlib logger goes through the service's one handler (`configure_logging`), which keeps
    # FastStream's errors and warnings and leaves its per-batch notices out.
    return KafkaBroker(
        bootstrap,
        client_id=client_id,
        enable_idempotence=False,
        apply_types=False,
        logger=logging.getLogger("faststream"),
    )


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
