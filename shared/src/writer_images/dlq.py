"""Operator access to dead-letter topics: list the letters with their reasons, replay their events.

Every service's CLI mounts the same commands (`python -m <service> dlq list|replay`). A replay
publishes the original event again under a NEW event id (the consumer's inbox remembers the old one)
with `causation_id` pointing at the original; a service may refresh the payload first (a generation
request gets a new deadline, for instance).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import typer
from aiokafka import AIOKafkaConsumer, TopicPartition

from writer_images.events import (
    Envelope,
    OutgoingEvent,
    Payload,
    contract_for,
    make_event,
    new_event_id,
    utcnow,
)
from writer_images.kafka import kafka_producer
from writer_images.settings import ServiceSettings, load_settings
from writer_images.topics import dlq_topic


def letter(
    *,
    reason: str,
    attempts: int,
    group_id: str,
    topic: str,
    key: str | None,
    original: Any,
    original_encoding: str = "json",
    partition: int | None = None,
    offset: int | None = None,
) -> dict[str, Any]:
    """The one shape of a dead letter, whoever writes it (the consumer, or a job runner's last attempt)."""
    return {
        "reason": reason,
        "attempts": attempts,
        "group_id": group_id,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key,
        "failed_at": utcnow().isoformat(),
        "original_encoding": original_encoding,
        "original": original,
    }


def dead_letter_event(envelope: Envelope, *, reason: str, attempts: int, group_id: str) -> OutgoingEvent:
    """A dead letter for an event whose work failed for good, to write through the outbox beside the
    failure event (one transaction: the failure is visible in the API and the request is replayable)."""
    contract = contract_for(envelope.type, envelope.version)
    key = contract.key(envelope.typed_payload())
    body = letter(
        reason=reason,
        attempts=attempts,
        group_id=group_id,
        topic=contract.topic,
        key=key,
        original=envelope.model_dump(mode="json"),
    )
    return OutgoingEvent(
        event_id=new_event_id(),
        type="dead_letter",
        topic=dlq_topic(contract.topic),
        key=key,
        value=orjson.dumps(body),
        correlation_id=envelope.correlation_id,
    )


@dataclass(frozen=True)
class DeadLetter:
    topic: str
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


async def read_dead_letters(bootstrap: str, topic: str) -> list[DeadLetter]:
    """Every letter of `<topic>.dlq`, from the beginning to the current end (no consumer group)."""
    dead = dlq_topic(topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(dead, p) for p in sorted(consumer.partitions_for_topic(dead) or {0})]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        letters: list[DeadLetter] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(*partitions, timeout_ms=500)
            for records in batches.values():
                letters.extend(_letter(topic, r.offset, r.value or b"") for r in records)
        return sorted(letters, key=lambda letter: letter.offset)
    finally:
        await consumer.stop()


def _letter(topic: str, offset: int, raw: bytes) -> DeadLetter:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return DeadLetter(topic, offset, "unreadable dead letter", 0, None, None)
    return DeadLetter(
        topic=topic,
        offset=offset,
        reason=str(body.get("reason", "")),
        attempts=int(body.get("attempts", 0)),
        failed_at=body.get("failed_at"),
        original=body.get("original"),
    )


Refresh = Callable[[Payload], Payload]


def replayed(envelope: Envelope, refresh: Refresh | None = None) -> OutgoingEvent:
    """The same event under a new id, caused by the original; `refresh` may renew its payload."""
    payload = envelope.typed_payload()
    if refresh is not None:
        payload = refresh(payload)
    return make_event(
        payload,
        account_id=envelope.account_id,
        correlation_id=envelope.correlation_id,
        causation_id=str(envelope.event_id),
    )


async def publish(bootstrap: str, events: Sequence[OutgoingEvent], *, client_id: str) -> None:
    producer = kafka_producer(bootstrap, client_id=client_id)
    await producer.start()
    try:
        for event in events:
            await producer.send(event.topic, value=event.value, key=event.key.encode())
        await producer.flush()
    finally:
        await producer.stop()


def dlq_cli(
    settings_type: type[ServiceSettings],
    topics: Sequence[str],
    refreshers: dict[str, Refresh] | None = None,
) -> typer.Typer:
    """`dlq list` and `dlq replay` for the topics a service consumes."""
    app = typer.Typer(help="Dead letters of this service's topics: list them, replay them.")
    # Plain defaults, not Annotated: annotations are strings here and cannot see this closure.
    topic_option = typer.Option(topics[0], help=f"One of: {', '.join(topics)}")
    offsets_option = typer.Option(None, help="Only these offsets (repeatable)")

    @app.command("list")
    def list_letters(topic: str = topic_option) -> None:
        """Show each dead letter: offset, attempts, reason, event type and id."""
        letters = asyncio.run(read_dead_letters(load_settings(settings_type).kafka_bootstrap, topic))
        for letter in letters:
            env = letter.envelope
            what = f"{env.type} {env.event_id}" if env else "(not an envelope)"
            typer.echo(f"{letter.offset}\t{letter.attempts}\t{what}\t{letter.reason}")
        typer.echo(f"{len(letters)} dead letter(s) in {dlq_topic(topic)}")

    @app.command("replay")
    def replay(topic: str = topic_option, offset: list[int] | None = offsets_option) -> None:
        """Publish the dead letters' events again (new event ids) to their topic."""
        settings = load_settings(settings_type)
        letters = asyncio.run(read_dead_letters(settings.kafka_bootstrap, topic))
        chosen = [x for x in letters if not offset or x.offset in offset]
        refresh = (refreshers or {}).get(topic)
        events, skipped = [], 0
        for letter in chosen:
            envelope = letter.envelope
            if envelope is None or not _known(envelope):
                skipped += 1
                continue
            events.append(replayed(envelope, refresh))
        asyncio.run(
            publish(settings.kafka_bootstrap, events, client_id=f"{settings.service_name}-dlq-replay")
        )
        typer.echo(f"replayed {len(events)} event(s) to {topic}; skipped {skipped} that are not valid events")

    return app


def _known(envelope: Envelope) -> bool:
    try:
        contract_for(envelope.type, envelope.version)
    except ValueError:
        return False
    return True
