"""What a WordPress change is, as the bridge plugin reports it and as the reconciler observes it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

from pydantic import ConfigDict, Field, field_validator

from writer_images.events import WordPressStatus
from writer_images.validation import NulFreeModel

WORDPRESS_STATUSES: tuple[str, ...] = get_args(WordPressStatus)
# Statuses a post can have on the REST API (`deleted` is ours: the post is gone).
LISTED_STATUSES: tuple[str, ...] = tuple(s for s in WORDPRESS_STATUSES if s != "deleted")


def parse_wp_datetime(value: str | None) -> datetime | None:
    """WordPress's `modified_gmt` ("2024-05-01T10:00:00", UTC without offset) as an aware datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError(f"{value!r} is outside years 1 to 9999 in UTC") from None


class WebhookBody(NulFreeModel):
    """The bridge plugin's JSON body (see wordpress-plugin/writer-images-bridge/readme.txt)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    site_key: str = Field(min_length=1, max_length=200)
    post_id: int = Field(gt=0, lt=2**63)
    status: WordPressStatus
    modified_gmt: datetime | None = None
    link: str | None = Field(default=None, max_length=4000)
    title: str | None = Field(default=None, max_length=20_000)
    publication_key: str | None = Field(default=None, max_length=200)
    event: str | None = Field(default=None, max_length=100)

    @field_validator("modified_gmt", mode="before")
    @classmethod
    def _utc(cls, value: object) -> object:
        return parse_wp_datetime(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class PostState:
    """One observation of a post: what `wordpress.post.changed` carries."""

    post_id: int
    wp_status: str
    modified_gmt: datetime | None
    link: str | None
    title: str | None
    publication_key: str | None


Source = Literal["webhook", "reconciler"]
