"""Fixtures for the generator's tests: a broker of its own per test, a fresh database, request events."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from generator.settings import GeneratorSettings
from writer_images import events
from writer_images.events import (
    Envelope,
    ImageGenerationRequested,
    OutgoingEvent,
    RenditionRequest,
    make_event,
)
from writer_images.infra.broker import TansuBroker
from writer_images.kafka import ensure_topics
from writer_images.testing.fake_openai import FakeOpenAI
from writer_images.testing.kafka_tools import collect
from writer_images.topics import dlq_topic

PARTITIONS = 3
RESULT_TYPES = (
    "image.generation.progress",
    "image.generated",
    "image.generation.failed",
    "ai.function.called",
)


@dataclass
class Outcome:
    """What the generator emitted, by event type, duplicates (same event id) removed."""

    by_type: dict[str, list[Envelope]] = field(default_factory=lambda: defaultdict(list))

    def of(self, event_type: str, image_id: int | None = None) -> list[Envelope]:
        found = self.by_type.get(event_type, [])
        return [e for e in found if image_id is None or e.payload.get("image_id") == image_id]

    def images(self, event_type: str) -> set[int]:
        return {int(e.payload["image_id"]) for e in self.of(event_type)}


@dataclass
class Harness:
    bootstrap: str
    database_url: str
    blob_dir: Path
    account_id: int = 7

    def settings(self, **overrides: Any) -> GeneratorSettings:
        """Fast settings for tests: short leases, quick backoff, short consumer-group timeouts."""
        values: dict[str, Any] = dict(
            database_url=self.database_url,
            kafka_bootstrap=self.bootstrap,
            kafka_partitions=PARTITIONS,
            kafka_session_timeout_ms=2000,
            kafka_heartbeat_interval_ms=500,
            blob_dir=self.blob_dir,
            render_workers=2,
            job_lease_s=2.0,
            job_poll_interval_s=0.2,
            job_max_attempts=3,
            job_backoff_base_s=0.05,
            job_backoff_max_s=0.5,
            consumer_backoff_base_s=0.01,
            consumer_backoff_max_s=0.05,
            openai_api_key="sk-test",
            openai_images_per_minute=0,
            provider_timeout_s=10.0,
            log_json=False,
        )
        values.update(overrides)
        return GeneratorSettings(**values)

    def request(
        self,
        image_id: int,
        *,
        content_id: int = 501,
        revision: int = 1,
        provider: str = "local",
        model: str = "local-v1",
        size: int = 512,
        prompt: str | None = None,
        deadline_s: float = 120.0,
        position: int = 0,
        task_id: uuid.UUID | None = None,
    ) -> OutgoingEvent:
        """An `image.generation.requested` event exactly as images-api emits it."""
        payload = ImageGenerationRequested(
            task_id=task_id or uuid.uuid4(),
            image_id=image_id,
            content_id=content_id,
            revision=revision,
            prompt=prompt or f"image {image_id}: a lighthouse on a cliff at dusk, watercolour",
            image_type="featured" if position == 0 else "in_article",
            position=position,
            provider=provider,
            model=model,
            width=size,
            height=size,
            image_format="jpg",
            renditions=[
                RenditionRequest(name="desktop", max_width=1280),
                RenditionRequest(name="mobile", max_width=256),
            ],
            deadline_at=events.utcnow() + timedelta(seconds=deadline_s),
        )
        return make_event(payload, account_id=self.account_id, correlation_id=f"task-{payload.task_id}")

    async def publish(self, items: list[OutgoingEvent]) -> None:
        await self.publish_raw([(e.topic, e.key.encode(), e.value) for e in items])

    async def publish_raw(self, items: list[tuple[str, bytes, bytes]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            for topic, key, value in items:
                await producer.send_and_wait(topic, value=value, key=key)
        finally:
            await producer.stop()

    async def outcome(
        self,
        until: Callable[[Outcome], bool],
        *,
        timeout_s: float = 30.0,
        topics: tuple[str, ...] = RESULT_TYPES,
    ) -> Outcome:
        """Read the result topics from the beginning until `until(outcome)` holds (or the time is up)."""
        result = Outcome()
        seen: set[str] = set()

        def keep(record: Any) -> bool:
            envelope = Envelope.model_validate_json(record.value)
            if str(envelope.event_id) in seen:
                return False
            seen.add(str(envelope.event_id))
            result.by_type[envelope.type].append(envelope)
            return True

        await collect(
            self.bootstrap, list(topics), until=lambda _: until(result), keep=keep, timeout_s=timeout_s
        )
        return result

    async def dead_letters(
        self, until: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 20.0
    ) -> list[dict[str, Any]]:
        import orjson

        letters: list[dict[str, Any]] = []

        def keep(record: Any) -> bool:
            letters.append(orjson.loads(record.value))
            return True

        await collect(
            self.bootstrap,
            [dlq_topic("image.generation.requested")],
            until=lambda _: until(letters),
            keep=keep,
            timeout_s=timeout_s,
        )
        return letters

    async def db(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self.database_url, server_settings={"search_path": "generator"}
        )
        return conn


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker for this test alone: the generator's consumer group starts at `earliest`, so shared
    topics would hand it every other test's requests."""
    with TansuBroker(log_path=tmp_path / "tansu.log") as broker:
        yield broker


@pytest.fixture
async def harness(own_broker: TansuBroker, fresh_database_url: str, tmp_path: Path) -> Harness:
    await ensure_topics(own_broker.bootstrap, PARTITIONS)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    return Harness(bootstrap=own_broker.bootstrap, database_url=fresh_database_url, blob_dir=blobs)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI.start() as fake:
        yield fake
