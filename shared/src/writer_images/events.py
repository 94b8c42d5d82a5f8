"""Event contracts: one envelope, versioned payload models, and the registry that ties them to topics.

Every event crossing a service line is an `Envelope` whose `payload` is one of the models below.
The Kafka key is the aggregate id (content id for content and image events, site id for site
events) so that one aggregate's events keep their order within a partition. A change that would
break a consumer is a new `version` with a new model, registered beside the old one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import uuid_utils
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from writer_images import topics


def new_event_id() -> uuid.UUID:
    """A time-ordered UUID (v7), so ids sort by creation time in logs and tables."""
    return uuid.UUID(str(uuid_utils.uuid7()))


def utcnow() -> datetime:
    return datetime.now(UTC)


class Payload(BaseModel):
    """Base of every event payload: immutable and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


ImageStatus = Literal["pending", "queued", "generating", "generated", "failed"]
ImageType = Literal["featured", "in_article"]
ImageFormat = Literal["jpg", "png", "webp"]
WordPressStatus = Literal["publish", "future", "draft", "pending", "private", "trash", "deleted"]
SyncStatus = Literal["draft", "pending", "scheduled", "published", "synced", "failed", "removed"]


# --- sites -----------------------------------------------------------------------------------


class SiteChanged(Payload):
    """A site's connection as the publisher and sync service need it. Secrets stay encrypted."""

    site_id: int
    site_key: str
    name: str
    base_url: str
    username: str
    application_password_encrypted: str
    webhook_secret_encrypted: str
    deleted: bool = False
    revision: int


# --- images ----------------------------------------------------------------------------------


class RenditionRequest(Payload):
    name: Literal["desktop", "mobile"]
    max_width: int


class ImageGenerationRequested(Payload):
    task_id: uuid.UUID
    image_id: int
    content_id: int
    revision: int = Field(description="Bumps when the prompt or settings change: part of the idempotency key")
    prompt: str
    image_type: ImageType
    position: int
    provider: str
    model: str
    width: int
    height: int
    image_format: ImageFormat
    renditions: list[RenditionRequest]
    deadline_at: datetime


class ImageGenerationProgress(Payload):
    task_id: uuid.UUID
    image_id: int
    content_id: int
    revision: int
    stage: Literal["queued", "generating", "storing"]
    percent: int = Field(ge=0, le=100)
    attempt: int = 1


class Rendition(Payload):
    name: Literal["original", "desktop", "mobile"]
    blob_key: str
    width: int
    height: int
    format: ImageFormat
    content_type: str
    bytes: int
    sha256: str


class ImageGenerated(Payload):
    task_id: uuid.UUID
    image_id: int
    content_id: int
    revision: int
    provider: str
    model: str
    revised_prompt: str | None = None
    renditions: list[Rendition]


class ImageGenerationFailed(Payload):
    task_id: uuid.UUID
    image_id: int
    content_id: int
    revision: int
    reason: str
    retryable: bool
    attempts: int


class AiFunctionCalled(Payload):
    call_id: uuid.UUID
    function: str = "generate_image"
    task_id: uuid.UUID | None
    image_id: int | None
    content_id: int
    provider: str
    model: str
    prompt: str
    size: str
    latency_ms: int
    images: int
    input_tokens: int | None = None
    output_tokens: int | None = None
    estimated_cost_usd: float
    success: bool
    error: str | None = None
    called_at: datetime


# --- publishing ------------------------------------------------------------------------------


class PublishImage(Payload):
    image_id: int
    image_type: ImageType
    position: int
    blob_key: str
    sha256: str
    content_type: str
    alt_text: str
    caption: str | None = None


class ContentPublishRequested(Payload):
    publication_id: int
    attempt_id: uuid.UUID
    content_id: int
    site_id: int
    publication_key: str
    action: Literal["publish", "republish"]
    title: str
    html: str
    wp_status: Literal["publish", "draft", "future"]
    publish_at: datetime | None = None
    images: list[PublishImage]
    known_external_id: str | None = Field(
        default=None,
        description="The post id from an earlier publication of this content to this site; "
        "null after the content moved to another site.",
    )
    deadline_at: datetime


class ContentPublished(Payload):
    publication_id: int
    attempt_id: uuid.UUID
    content_id: int
    site_id: int
    external_id: str
    external_url: str
    wp_status: WordPressStatus
    sync_status: SyncStatus
    featured_media_id: int | None
    media_ids: dict[str, int] = Field(description="image id (as string) → WordPress media id")
    modified_gmt: datetime | None = Field(
        default=None,
        description="the post's modification time in WordPress after this publication: orders it among the "
        "post's changes made in WordPress (`wordpress.post.changed`), which travel on another topic",
    )


class ContentPublishFailed(Payload):
    publication_id: int
    attempt_id: uuid.UUID
    content_id: int
    site_id: int
    reason: str
    code: str
    retryable: bool
    attempts: int


class WordPressPostChanged(Payload):
    site_id: int
    post_id: str
    wp_status: WordPressStatus
    modified_gmt: datetime | None
    link: str | None
    title: str | None = None
    publication_key: str | None = None
    source: Literal["webhook", "reconciler"]
    observed_at: datetime


# --- envelope and registry -------------------------------------------------------------------


class Envelope(BaseModel):
    """The one wrapper around every event on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    type: str
    version: int
    occurred_at: datetime
    account_id: int
    correlation_id: str
    causation_id: str | None = None
    payload: dict[str, Any]

    def typed_payload(self) -> Payload:
        """The payload as its registered model; raises `UnknownEventError` or pydantic's error."""
        return contract_for(self.type, self.version).model.model_validate(self.payload)


@dataclass(frozen=True)
class Contract:
    event_type: str
    version: int
    model: type[Payload]
    topic: str
    key: Callable[[Any], str]


class UnknownEventError(ValueError):
    pass


_CONTRACTS: dict[tuple[str, int], Contract] = {}
_BY_MODEL: dict[type[Payload], Contract] = {}


def _register(type_: str, version: int, model: type[Payload], topic: str, key: Callable[[Any], str]) -> None:
    contract = Contract(type_, version, model, topic, key)
    _CONTRACTS[(type_, version)] = contract
    _BY_MODEL[model] = contract


def _by_content(p: Any) -> str:
    return str(p.content_id)


def _by_site(p: Any) -> str:
    return str(p.site_id)


_register("site.changed", 1, SiteChanged, topics.SITE_CHANGED, _by_site)
_register(
    "image.generation.requested", 1, ImageGenerationRequested, topics.IMAGE_GENERATION_REQUESTED, _by_content
)
_register(
    "image.generation.progress", 1, ImageGenerationProgress, topics.IMAGE_GENERATION_PROGRESS, _by_content
)
_register("image.generated", 1, ImageGenerated, topics.IMAGE_GENERATED, _by_content)
_register("image.generation.failed", 1, ImageGenerationFailed, topics.IMAGE_GENERATION_FAILED, _by_content)
_register("ai.function.called", 1, AiFunctionCalled, topics.AI_FUNCTION_CALLED, _by_content)
_register(
    "content.publish.requested", 1, ContentPublishRequested, topics.CONTENT_PUBLISH_REQUESTED, _by_content
)
_register("content.published", 1, ContentPublished, topics.CONTENT_PUBLISHED, _by_content)
_register("content.publish.failed", 1, ContentPublishFailed, topics.CONTENT_PUBLISH_FAILED, _by_content)
_register("wordpress.post.changed", 1, WordPressPostChanged, topics.WORDPRESS_POST_CHANGED, _by_site)


def contract_for(type_: str, version: int) -> Contract:
    try:
        return _CONTRACTS[(type_, version)]
    except KeyError:
        raise UnknownEventError(f"unknown event type {type_!r} version {version}") from None


def contract_of(payload: Payload) -> Contract:
    return _BY_MODEL[type(payload)]


def all_contracts() -> list[Contract]:
    return list(_CONTRACTS.values())


@dataclass(frozen=True)
class OutgoingEvent:
    """An event ready for the outbox: its topic, key and serialized envelope."""

    event_id: uuid.UUID
    type: str
    topic: str
    key: str
    value: bytes
    correlation_id: str


def make_event(
    payload: Payload,
    *,
    account_id: int,
    correlation_id: str,
    causation_id: str | None = None,
    event_id: uuid.UUID | None = None,
) -> OutgoingEvent:
    """Wrap a payload in its envelope, choosing topic and key from the registry."""
    contract = contract_of(payload)
    envelope = Envelope(
        event_id=event_id or new_event_id(),
        type=contract.event_type,
        version=contract.version,
        occurred_at=utcnow(),
        account_id=account_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        payload=payload.model_dump(mode="json"),
    )
    value = encode_envelope(envelope)
    if len(value) > MAX_EVENT_BYTES:
        raise EventTooLargeError(contract.event_type, len(value))
    return OutgoingEvent(
        event_id=envelope.event_id,
        type=contract.event_type,
        topic=contract.topic,
        key=contract.key(payload),
        value=value,
        correlation_id=correlation_id,
    )


# A Kafka broker refuses a record larger than its `message.max.bytes` (Apache Kafka's default: 1,048,588
# bytes, the record batch's overhead included). An event is refused when it is written, where the caller can
# still answer its user, rather than found unsendable by the outbox relay later.
MAX_EVENT_BYTES = 1_000_000


class EventTooLargeError(ValueError):
    """The event's envelope is larger than a broker takes (`MAX_EVENT_BYTES`)."""

    def __init__(self, event_type: str, size: int) -> None:
        super().__init__(f"{event_type} would be {size:,} bytes; an event may be at most {MAX_EVENT_BYTES:,}")
        self.event_type = event_type
        self.size = size


def encode_envelope(envelope: Envelope) -> bytes:
    return orjson.dumps(envelope.model_dump(mode="json"))


class MalformedEventError(ValueError):
    """The bytes are not a valid envelope of a known event: a poison message."""


def decode_envelope(raw: bytes) -> tuple[Envelope, Payload]:
    """Parse and validate raw bytes into an envelope and its typed payload."""
    try:
        envelope = Envelope.model_validate_json(raw)
        return envelope, envelope.typed_payload()
    except (ValidationError, UnknownEventError, ValueError) as exc:
        raise MalformedEventError(str(exc)[:2000]) from exc
