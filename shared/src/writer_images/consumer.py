"""The one way services consume events: commit after the effect, idempotent, retried, dead-lettered.

A service registers one handler per event type; `EventConsumer` subscribes ONE FastStream batch
subscriber to all their topics (one consumer-group join instead of one per topic) with
`AckPolicy.NACK_ON_ERROR`:

* a batch is handled in one database transaction: inbox claims + every handler's effect; the
  offsets are committed only after that transaction commits (at-least-once, effects once); a handler
  wrapped in `Batched` gets all the batch's new events of its type in one call;
* a message that is not a valid envelope of a known event goes to `<topic>.dlq` at once;
* if the batch fails, each message is retried alone with backoff so one poison message cannot
  block its neighbours; after the last attempt it goes to `<topic>.dlq` with its reason;
* database or broker outages are not the message's fault: back off, then raise so FastStream
  seeks back and the batch is redelivered (never dead-lettered for an outage).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage

from writer_images import dlq, inbox, metrics
from writer_images.events import Envelope, MalformedEventError, Payload, contract_for, decode_envelope
from writer_images.logging import bound_context, get_logger
from writer_images.retry import RetryPolicy
from writer_images.settings import ServiceSettings
from writer_images.topics import dlq_topic

log = get_logger(__name__)


@dataclass(frozen=True)
class IncomingEvent:
    envelope: Envelope
    payload: Payload
    topic: str
    partition: int
    offset: int


Handler = Callable[[asyncpg.Connection, IncomingEvent], Awaitable[None]]
BatchHandler = Callable[[asyncpg.Connection, Sequence[IncomingEvent]], Awaitable[None]]


@dataclass(frozen=True)
class Batched:
    """A handler that takes every new event of its type in a consumer batch at once, in delivery order, so
    that it can write them with set-wise statements: one round trip per batch instead of one per event,
    which is most of a projection's cost under load. It must leave what handling them one by one, in order,
    would leave (fold events aimed at the same row). Events of different types come with no order between
    them (Kafka orders a partition, not topics)."""

    handle: BatchHandler


HandlerSpec = Handler | Batched


class PermanentError(Exception):
    """The event can never be handled (e.g. it refers to something that does not exist): dead-letter it."""


_INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)


def is_infrastructure_error(exc: BaseException) -> bool:
    return isinstance(exc, _INFRASTRUCTURE_ERRORS)


_KAFKA_DEFAULT_MAX_POLL_INTERVAL_S = 300.0
_HANDLING_ALLOWANCE_S = 1.0  # per message and attempt, for the handler's own work


@dataclass(frozen=True)
class ConsumerConfig:
    group_id: str
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    fetch_max_wait_ms: int = 500
    max_records: int = 200
    retry: RetryPolicy = RetryPolicy(max_attempts=5, base_s=0.2, max_s=30.0)  # noqa: RUF009 - frozen value

    def max_poll_interval_ms(self) -> int:
        """How long a batch may take before the broker gives its partitions to another member. A batch whose
        every message fails is handled message by message, each retried with backoff until it is dead-lettered:
        with Kafka's default five minutes, 200 such messages took longer, the consumer was thrown out of its
        group mid-batch, and the batch came back to be retried again, dead letters and all, for ever."""
        backoff_s = sum(self.retry.longest_delay(attempt) for attempt in range(1, self.retry.max_attempts))
        worst_s = self.max_records * (backoff_s + _HANDLING_ALLOWANCE_S)
        return int(max(_KAFKA_DEFAULT_MAX_POLL_INTERVAL_S, worst_s) * 1000)


class DeadLetters:
    """Publishes dead letters straight to the broker (awaited) before the offset is committed."""

    def __init__(self, broker: KafkaBroker, group_id: str) -> None:
        self._broker = broker
        self._group_id = group_id

    async def send(self, record: ConsumerRecord[Any, Any], *, reason: str, attempts: int) -> None:
        value: bytes = record.value or b""
        try:
            original: Any = orjson.loads(value)
            encoding = "json"
        except orjson.JSONDecodeError:
            original, encoding = base64.b64encode(value).decode(), "base64"
        body = dlq.letter(
            reason=reason,
            attempts=attempts,
            group_id=self._group_id,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode(errors="replace") if record.key else None,
            original=original,
            original_encoding=encoding,
        )
        await self._broker.publish(
            orjson.dumps(body),
            topic=dlq_topic(record.topic),
            key=record.key,
            headers={"reason": reason[:200]},
        )
        metrics.EVENTS_DEAD_LETTERED.labels(self._group_id, record.topic).inc()
        log.warning("message dead-lettered", topic=record.topic, offset=record.offset, reason=reason[:500])


async def _undecoded(message: StreamMessage[Any]) -> Any:
    """The subscriber's decoder: the batch's records themselves, each decoded once, by `decode_envelope`.
    FastStream's own decoder parsed every body as JSON first, only for us to parse it again; with the
    broker's `apply_types=False` (`kafka.make_broker`) the handler takes this as its one argument."""
    return message.raw_message


def consumer_config(settings: ServiceSettings, **overrides: Any) -> ConsumerConfig:
    """The consumer configuration every service derives from its settings (one way, every service)."""
    return ConsumerConfig(
        group_id=settings.consumer_group or settings.service_name,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        retry=RetryPolicy(
            max_attempts=settings.consumer_max_attempts,
            base_s=settings.consumer_backoff_base_s,
            max_s=settings.consumer_backoff_max_s,
        ),
        **overrides,
    )


class EventConsumer:
    def __init__(
        self,
        broker: KafkaBroker,
        pool: asyncpg.Pool,
        config: ConsumerConfig,
        handlers: Mapping[str, HandlerSpec],
    ) -> None:
        self._broker = broker
        self._pool = pool
        self._config = config
        self._handlers = handlers
        self._dead_letters = DeadLetters(broker, config.group_id)
        self._topics = sorted({contract_for(t, 1).topic for t in handlers})

    @property
    def topics(self) -> list[str]:
        return self._topics

    def register(self) -> None:
        """Attach the subscriber to the broker (call before the broker starts)."""
        subscriber = self._broker.subscriber(
            *self._topics,
            group_id=self._config.group_id,
            batch=True,
            max_records=self._config.max_records,
            batch_timeout_ms=50,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            session_timeout_ms=self._config.session_timeout_ms,
            heartbeat_interval_ms=self._config.heartbeat_interval_ms,
            fetch_max_wait_ms=self._config.fetch_max_wait_ms,
            max_poll_interval_ms=self._config.max_poll_interval_ms(),
            decoder=_undecoded,
        )
        subscriber(self.on_batch)

    async def on_batch(self, raw: Any) -> None:
        """A batch of records as the broker gave them (see `_undecoded`)."""
        records: Sequence[ConsumerRecord[Any, Any]] = raw if isinstance(raw, tuple) else (raw,)
        events = await self._decode_or_dead_letter(records)
        if not events:
            return
        try:
            await self._handle_together(events)
        except Exception as exc:
            if is_infrastructure_error(exc):
                await self._pause_then_redeliver(exc)
            log.info("batch failed; handling its messages one by one", error=repr(exc), size=len(events))
            for record, event in events:
                await self._handle_alone(record, event)

    async def _decode_or_dead_letter(
        self, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> list[tuple[ConsumerRecord[Any, Any], IncomingEvent]]:
        events = []
        for record in records:
            try:
                envelope, payload = decode_envelope(record.value or b"")
            except MalformedEventError as exc:
                await self._dead_letters.send(record, reason=f"malformed event: {exc}", attempts=1)
                continue
            if envelope.type not in self._handlers:
                continue  # another consumer's event on a shared topic: not ours to handle
            events.append(
                (record, IncomingEvent(envelope, payload, record.topic, record.partition, record.offset))
            )
        return events

    async def _handle_together(
        self, events: Sequence[tuple[ConsumerRecord[Any, Any], IncomingEvent]]
    ) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = await inbox.claim_many(conn, [(e.envelope.event_id, e.envelope.type) for _, e in events])
            pending = set(fresh)
            new_events = []
            for _, event in events:
                if event.envelope.event_id in pending:  # a duplicate within the batch runs once
                    pending.discard(event.envelope.event_id)
                    new_events.append(event)
            await self._dispatch(conn, new_events)
        for _, event in events:
            outcome = "handled" if event.envelope.event_id in fresh else "duplicate"
            metrics.EVENTS_HANDLED.labels(self._config.group_id, event.envelope.type, outcome).inc()

    async def _handle_alone(self, record: ConsumerRecord[Any, Any], event: IncomingEvent) -> None:
        policy = self._config.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    if await inbox.claim(conn, event.envelope.event_id, event.envelope.type):
                        await self._dispatch(conn, [event])
                metrics.EVENTS_HANDLED.labels(self._config.group_id, event.envelope.type, "handled").inc()
                return
            except PermanentError as exc:
                await self._dead_letters.send(record, reason=f"permanent: {exc}", attempts=attempt)
                return
            except Exception as exc:
                if is_infrastructure_error(exc):
                    await self._pause_then_redeliver(exc)
                if policy.exhausted(attempt):
                    await self._dead_letters.send(
                        record, reason=f"{type(exc).__name__}: {exc}", attempts=attempt
                    )
                    metrics.EVENTS_HANDLED.labels(self._config.group_id, event.envelope.type, "failed").inc()
                    return
                log.warning("handler failed; retrying", error=repr(exc), attempt=attempt)
                await asyncio.sleep(policy.delay(attempt))

    async def _dispatch(self, conn: asyncpg.Connection, events: Sequence[IncomingEvent]) -> None:
        """Plain handlers one event at a time, in order; then each `Batched` handler once with its events."""
        batches: dict[str, list[IncomingEvent]] = {}
        for event in events:
            handler = self._handlers[event.envelope.type]
            if isinstance(handler, Batched):
                batches.setdefault(event.envelope.type, []).append(event)
                continue
            with bound_context(
                event_id=str(event.envelope.event_id),
                correlation_id=event.envelope.correlation_id,
                event_type=event.envelope.type,
            ):
                await handler(conn, event)
        for event_type, batch in batches.items():
            handler = self._handlers[event_type]
            assert isinstance(handler, Batched)
            with bound_context(event_type=event_type, batch_size=len(batch)):
                await handler.handle(conn, batch)

    async def _pause_then_redeliver(self, exc: BaseException) -> None:
        delay = self._config.retry.delay(3)
        log.warning("infrastructure unavailable; batch will be redelivered", error=repr(exc), delay_s=delay)
        await asyncio.sleep(delay)
        raise exc
