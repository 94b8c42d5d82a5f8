"""Topic registry: every topic the system uses, created explicitly (never auto-created)."""

from __future__ import annotations

from dataclasses import dataclass

SITE_CHANGED = "site.changed"
IMAGE_GENERATION_REQUESTED = "image.generation.requested"
IMAGE_GENERATION_PROGRESS = "image.generation.progress"
IMAGE_GENERATED = "image.generated"
IMAGE_GENERATION_FAILED = "image.generation.failed"
AI_FUNCTION_CALLED = "ai.function.called"
CONTENT_PUBLISH_REQUESTED = "content.publish.requested"
CONTENT_PUBLISHED = "content.published"
CONTENT_PUBLISH_FAILED = "content.publish.failed"
WORDPRESS_POST_CHANGED = "wordpress.post.changed"

MAIN_TOPICS: tuple[str, ...] = (
    SITE_CHANGED,
    IMAGE_GENERATION_REQUESTED,
    IMAGE_GENERATION_PROGRESS,
    IMAGE_GENERATED,
    IMAGE_GENERATION_FAILED,
    AI_FUNCTION_CALLED,
    CONTENT_PUBLISH_REQUESTED,
    CONTENT_PUBLISHED,
    CONTENT_PUBLISH_FAILED,
    WORDPRESS_POST_CHANGED,
)

DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    """The dead-letter twin of a topic."""
    return topic + DLQ_SUFFIX


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


def all_topics(partitions: int) -> list[TopicSpec]:
    """Every main topic and its DLQ twin. DLQs get one partition: they are read by operators, not at scale."""
    specs = [TopicSpec(name, partitions) for name in MAIN_TOPICS]
    specs += [TopicSpec(dlq_topic(name), 1) for name in MAIN_TOPICS]
    return specs
