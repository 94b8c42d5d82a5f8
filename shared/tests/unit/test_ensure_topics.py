"""A per-topic error in the broker's CreateTopics answer fails startup; TOPIC_ALREADY_EXISTS does not.

aiokafka's admin client returns the broker's per-topic error codes instead of raising, and the
local broker (tansu) refuses nothing but duplicates, so the broker's answer is faked here.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from aiokafka.admin import NewTopic

from writer_images import kafka
from writer_images.kafka import TopicCreationError, ensure_topics
from writer_images.topics import TopicSpec


class FakeAdmin:
    """Knows no topics; answers CreateTopics with the given error per topic name (default: none)."""

    errors: ClassVar[dict[str, tuple[int, str | None]]] = {}
    created: ClassVar[list[str]] = []

    def __init__(self, **_: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return []

    async def create_topics(self, new_topics: list[NewTopic]) -> SimpleNamespace:
        answers = []
        for t in new_topics:
            code, message = self.errors.get(t.name, (0, None))
            if code == 0:
                FakeAdmin.created.append(t.name)
            answers.append((t.name, code, message))
        return SimpleNamespace(topic_errors=answers)


@pytest.fixture
def fake_admin(monkeypatch: pytest.MonkeyPatch) -> type[FakeAdmin]:
    monkeypatch.setattr(kafka, "AIOKafkaAdminClient", FakeAdmin)
    FakeAdmin.errors = {}
    FakeAdmin.created = []
    return FakeAdmin


async def test_a_topic_the_broker_refuses_fails_startup_naming_topic_and_error(
    fake_admin: type[FakeAdmin],
) -> None:
    fake_admin.errors = {
        "site.changed": (38, "Replication factor: 3 larger than available brokers: 1."),
        "image.generated": (37, None),
    }

    with pytest.raises(TopicCreationError) as failure:
        await ensure_topics("broker:9092", 3)

    text = str(failure.value)
    assert "site.changed" in text
    assert "INVALID_REPLICATION_FACTOR" in text and "larger than available brokers" in text
    assert "image.generated" in text and "INVALID_PARTITIONS" in text
    assert "content.published" not in text  # topics that were created are not blamed


async def test_topics_another_service_created_first_are_not_an_error(fake_admin: type[FakeAdmin]) -> None:
    fake_admin.errors = {"site.changed": (36, "Topic with this name already exists.")}

    await ensure_topics("broker:9092", 3, [TopicSpec("extra.topic", 1)])

    assert "extra.topic" in fake_admin.created
