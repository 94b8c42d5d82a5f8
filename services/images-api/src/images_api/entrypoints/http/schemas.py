"""Request and response models of the HTTP API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from images_api.service.image_settings import ImageGenerationSettings
from writer_images.validation import NulFreeModel

Role = Literal["owner", "editor", "viewer"]
ContentStatus = Literal["draft", "published"]
ImageStatus = Literal["pending", "queued", "generating", "generated", "failed"]
ManualImageStatus = Literal["pending", "generated", "failed"]
OverallStatus = Literal["pending", "partial", "complete", "failed"]
SyncStatus = Literal["draft", "pending", "scheduled", "published", "synced", "failed", "removed"]
ImageType = Literal["featured", "in_article"]
Id = Annotated[int, Field(ge=1, le=2**62)]
# A moment without an offset is ambiguous (whose 10:00?) and cannot be compared with the clock: 422.
PUBLISH_AT = "When WordPress publishes the post (in the future: scheduled); with a time zone"


# asyncpg sends the first and last microsecond of the calendar as -infinity and infinity (and reads those
# back without a time zone): not moments.
_INFINITIES = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def _storable(moment: datetime) -> datetime:
    """Postgres stores a timestamptz in UTC: a moment whose UTC falls outside years 1-9999
    (0001-01-01T00:00:00+14:00) would fail in the driver, so it is refused here, on its field."""
    try:
        utc: datetime | None = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or utc in _INFINITIES:
        raise ValueError("out of range: the moment in UTC must lie after year 1 began and before 9999 ends")
    return moment


# Every moment the API takes: with an offset, and storable.
Moment = Annotated[AwareDatetime, AfterValidator(_storable)]


NO_NUL = r"^[^\x00]*$"


def _example(example: dict[str, Any]) -> ConfigDict:
    def schema_extra(schema: dict[str, Any]) -> None:
        schema["examples"] = [example]
        # Documents what `Input` enforces: no text field takes a NUL.
        for field in schema.get("properties", {}).values():
            for variant in (field, *field.get("anyOf", ())):
                if variant.get("type") == "string" and not {"format", "enum", "const"} & variant.keys():
                    variant.setdefault("pattern", NO_NUL)

    return ConfigDict(extra="forbid", json_schema_extra=schema_extra)


class Input(NulFreeModel):
    """Base of request bodies: text never carries NUL characters (Postgres refuses them)."""


# --- auth ---------------------------------------------------------------------------------------


class LoginIn(Input):
    model_config = _example({"email": "demo@example.com", "password": "demo-password"})
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(Input):
    model_config = _example({"refresh_token": "Jq3…"})
    refresh_token: str = Field(min_length=1, max_length=512)


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme name
    expires_in: int
    user_id: int
    account_id: int
    role: Role


class LoggedOut(BaseModel):
    logged_out: bool


# --- sites and sectors --------------------------------------------------------------------------


class SiteIn(Input):
    model_config = _example(
        {
            "name": "Travel blog",
            "base_url": "https://blog.example.com",
            "username": "editor",
            "application_password": "abcd efgh ijkl mnop qrst uvwx",
        }
    )
    name: str = Field(min_length=1, max_length=200)
    base_url: str = Field(min_length=1, max_length=2000)
    username: str = Field(min_length=1, max_length=200)
    application_password: str = Field(min_length=1, max_length=500)


class SitePatch(Input):
    model_config = _example({"name": "Renamed blog"})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    base_url: str | None = Field(default=None, min_length=1, max_length=2000)
    username: str | None = Field(default=None, min_length=1, max_length=200)
    application_password: str | None = Field(default=None, min_length=1, max_length=500)


class SiteOut(BaseModel):
    id: int
    name: str
    base_url: str
    username: str
    site_key: str = Field(description="Public id the WordPress bridge plugin sends with its webhooks")
    revision: int
    has_application_password: bool
    created_at: datetime
    updated_at: datetime


class SiteCreatedOut(SiteOut):
    webhook_secret: str = Field(description="Shown once: configure the bridge plugin with it")


class SectorIn(Input):
    model_config = _example({"name": "Europe"})
    name: str = Field(min_length=1, max_length=200)


class SectorOut(BaseModel):
    id: int
    site_id: int
    name: str
    created_at: datetime
    updated_at: datetime


class Deleted(BaseModel):
    deleted: bool


# --- content and images -------------------------------------------------------------------------


class ContentIn(Input):
    model_config = _example(
        {
            "title": "Ten days in Lisbon",
            "html": "<p>Intro</p><h2>Where to stay</h2><p>…</p><h2>What to eat</h2>",
            "status": "published",
            "site_id": 1,
            "sector_id": 1,
        }
    )
    title: str = Field(min_length=1, max_length=500)
    html: str = Field(default="", max_length=1_000_000)
    status: ContentStatus = "draft"
    site_id: int | None = Field(default=None, ge=1, le=2**62)
    sector_id: int | None = Field(default=None, ge=1, le=2**62)
    publish_at: Moment | None = Field(default=None, description=PUBLISH_AT)


class ContentPatch(Input):
    model_config = _example({"status": "published"})
    # Optional but never null: the schema must not offer a null that the route refuses.
    title: str | SkipJsonSchema[None] = Field(default=None, min_length=1, max_length=500)
    html: str | SkipJsonSchema[None] = Field(default=None, max_length=1_000_000)
    status: ContentStatus | SkipJsonSchema[None] = None
    site_id: int | None = Field(default=None, ge=1, le=2**62)
    sector_id: int | None = Field(default=None, ge=1, le=2**62)
    publish_at: Moment | None = Field(default=None, description=PUBLISH_AT)


class RenditionOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    blob_key: str
    url: str | None = None


class ImageOut(BaseModel):
    id: int
    content_id: int
    image_type: ImageType
    image_url: str | None
    image_path: str | None
    prompt: str
    alt_text: str
    caption: str | None
    status: ImageStatus
    position: int
    revision: int
    sha256: str | None
    renditions: list[RenditionOut]
    provider: str | None
    model: str | None
    revised_prompt: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    generated_at: datetime | None


class ContentOut(BaseModel):
    id: int
    site_id: int | None
    sector_id: int | None
    title: str
    html: str
    status: ContentStatus
    publish_at: datetime | None
    external_id: str | None
    external_url: str | None
    sync_status: str | None
    wp_status: str | None
    publication_key: str | None
    overall_status: OverallStatus
    images_total: int
    images_generated: int
    images_failed: int
    created_at: datetime
    updated_at: datetime
    images: list[ImageOut]


class ImagePatch(Input):
    model_config = _example({"prompt": "A tram climbing a hill in Lisbon at sunset"})
    prompt: str | SkipJsonSchema[None] = Field(default=None, min_length=1, max_length=4000)
    alt_text: str | None = Field(default=None, max_length=500)
    caption: str | None = Field(default=None, max_length=1000)


class NewImageIn(Input):
    model_config = _example({"prompt": "A map of the old town"})
    prompt: str = Field(min_length=1, max_length=4000)


# --- the seed's grouped view -------------------------------------------------------------------


class ContentImage(BaseModel):
    """The seed's ContentImage."""

    id: int
    image_type: ImageType
    image_url: str | None = Field(description="Absolute, short-lived signed URL a browser can load")
    image_path: str | None = Field(description="The blob key")
    prompt: str | None
    status: ImageStatus
    position: int
    created_at: datetime
    updated_at: datetime


class ContentImagesGroup(BaseModel):
    """The seed's ContentImagesGroup."""

    content_id: int
    content_title: str
    featured_image: ContentImage | None
    in_article_images: list[ContentImage]
    overall_status: OverallStatus
    status: ContentStatus
    external_id: str | None
    external_url: str | None
    sync_status: SyncStatus | None


class ContentImagesPage(BaseModel):
    count: int = Field(description="Groups matching the filters (all pages)")
    results: list[ContentImagesGroup]
    next_cursor: str | None = Field(description="Opaque keyset cursor for the next page, null on the last")
    page: int | None
    page_size: int


class ImageGenerationConfig(BaseModel):
    """The image generation settings as the seed answers them (`{success, config}`), in the envelope's data."""

    config: ImageGenerationSettings


class GenerateIn(Input):
    model_config = _example({"ids": [123, 124, 125], "content_id": 42})
    ids: list[Id] = Field(min_length=1, max_length=100)
    # Optional as in the seed's client (`generateImages(imageIds, contentId?)`): the images' own content.
    content_id: int | None = Field(default=None, ge=1, le=2**62)


class GenerateOut(BaseModel):
    task_id: str
    images_created: int
    message: str


class BulkUpdateIn(Input):
    model_config = _example({"content_id": 42, "status": "generated"})
    content_id: int = Field(ge=1, le=2**62)
    status: ManualImageStatus


class BulkUpdateOut(BaseModel):
    updated_count: int


class TaskItemOut(BaseModel):
    image_id: int
    image_type: ImageType
    position: int
    revision: int
    state: Literal["queued", "generating", "generated", "failed", "superseded"]
    stage: str | None
    percent: int
    error: str | None
    attempts: int
    deadline_at: datetime
    updated_at: datetime


class TaskOut(BaseModel):
    task_id: str
    content_id: int
    state: Literal["running", "completed", "failed"]
    total: int
    generated: int
    failed: int
    superseded: int
    items: list[TaskItemOut]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class AiLogOut(BaseModel):
    id: int
    call_id: str
    task_id: str | None
    image_id: int | None
    content_id: int | None
    function: str
    provider: str
    model: str
    prompt: str
    size: str
    latency_ms: int
    images: int
    input_tokens: int | None
    output_tokens: int | None
    estimated_cost_usd: float
    success: bool
    error: str | None
    called_at: datetime


class AiLogsPage(BaseModel):
    count: int
    results: list[AiLogOut]
    page: int
    page_size: int


# --- publishing ---------------------------------------------------------------------------------


class PublishIn(Input):
    model_config = _example({"content_id": 42, "destinations": ["wordpress"]})
    content_id: int = Field(ge=1, le=2**62)
    destinations: list[Literal["wordpress"]] = Field(default=["wordpress"], min_length=1, max_length=1)
    publish_at: Moment | None = Field(default=None, description=PUBLISH_AT)
    allow_missing_images: bool = False


class RepublishIn(Input):
    model_config = _example({"content_id": 42})
    content_id: int = Field(ge=1, le=2**62)
    allow_missing_images: bool = False


class PublishBatchIn(Input):
    model_config = _example({"content_ids": [42, 43, 44], "destinations": ["wordpress"]})
    content_ids: list[Id] = Field(min_length=1, max_length=200)
    destinations: list[Literal["wordpress"]] = Field(default=["wordpress"], min_length=1, max_length=1)
    publish_at: Moment | None = Field(
        default=None,
        description="Schedule every post of the batch (WordPress `future`) when in the future; with a time zone",
    )
    allow_missing_images: bool = False
    atomic: bool = Field(
        default=False,
        description="All or nothing: if any content is refused, none is requested (409 with every reason)",
    )


class PublishRequestedOut(BaseModel):
    publication_id: int
    content_id: int
    status: Literal["requested"]


class PublishedOut(BaseModel):
    """The seed's publish response (returned with `?wait=true` once WordPress answered)."""

    content_id: int
    external_id: str | None
    external_url: str | None
    sync_status: str | None


class BatchItemOut(BaseModel):
    content_id: int
    accepted: bool
    publication_id: int | None
    status: Literal["requested", "refused"]
    reason: str | None


class BatchOut(BaseModel):
    accepted: int
    refused: int
    results: list[BatchItemOut]


class _Publication(BaseModel):
    publication_id: int
    content_id: int
    site_id: int
    action: Literal["publish", "republish"]
    status: Literal["requested", "published", "failed"]
    reason: str | None
    external_url: str | None
    sync_status: str | None = Field(description="The content's sync status now (WordPress has the last word)")
    requested_at: datetime
    finished_at: datetime | None


class QueuedPublicationOut(_Publication):
    title: str
    publish_at: datetime | None = Field(
        description="When WordPress publishes the post (scheduled posts only)"
    )
    latest: bool = Field(
        description="No newer publication of the content exists (a failed one may be retried)"
    )


class PublicationQueuePage(BaseModel):
    count: int
    results: list[QueuedPublicationOut]
    page: int
    page_size: int


class PublicationOut(_Publication):
    publication_key: str
    attempt_id: str
    code: str | None
    external_id: str | None
