"""Image generation settings per account: provider, model, format, renditions, in-article slots."""

from __future__ import annotations

from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from images_api.settings import RENDITION_WIDTHS, SUPPORTED_MODELS
from writer_images.events import RenditionRequest

Provider = Literal["local", "openai"]


class ImageGenerationSettings(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "provider": "openai",
                    "model": "dall-e-3",
                    "image_type": "featured",
                    "max_in_article_images": 3,
                    "image_format": "jpg",
                    "desktop_enabled": True,
                    "mobile_enabled": True,
                }
            ]
        },
    )

    provider: Provider = "local"
    model: str = Field(
        default="local-v1", description="One of the provider's models", max_length=64, validate_default=True
    )
    image_type: Literal["featured", "in_article"] = "featured"
    max_in_article_images: int = Field(default=3, ge=0, le=10)
    image_format: Literal["jpg", "png", "webp"] = "jpg"
    desktop_enabled: bool = True
    mobile_enabled: bool = True

    @field_validator("model")
    @classmethod
    def _model_belongs_to_provider(cls, model: str, info: ValidationInfo) -> str:
        provider = info.data.get("provider")
        if provider is None:
            return model  # the provider itself is invalid and reported on its own field
        allowed = SUPPORTED_MODELS[provider]
        if model not in allowed:
            raise ValueError(f"model {model!r} is not offered by {provider} (one of {list(allowed)})")
        return model

    def renditions(self) -> list[RenditionRequest]:
        wanted = [("desktop", self.desktop_enabled), ("mobile", self.mobile_enabled)]
        return [RenditionRequest(name=name, max_width=RENDITION_WIDTHS[name]) for name, on in wanted if on]


_FIELDS = (
    "provider",
    "model",
    "image_type",
    "max_in_article_images",
    "image_format",
    "desktop_enabled",
    "mobile_enabled",
)
_COLUMNS = ", ".join(_FIELDS)
# The settings as columns of a query that LEFT JOINs `image_settings s` (for a request that reads them
# beside other rows in one round trip); `from_row` turns them back into settings.
SETTINGS_SELECT = (
    ", ".join(f"s.{f} AS settings_{f}" for f in _FIELDS) + ", s.account_id IS NOT NULL AS settings_saved"
)


def from_row(row: asyncpg.Record) -> ImageGenerationSettings:
    """The settings in a row selected with `SETTINGS_SELECT`: the defaults when the account saved none."""
    if not row["settings_saved"]:
        return ImageGenerationSettings()
    return ImageGenerationSettings(**{f: row[f"settings_{f}"] for f in _FIELDS})


async def load(conn: asyncpg.Connection, account_id: int) -> ImageGenerationSettings:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM image_settings WHERE account_id = $1", account_id)
    return ImageGenerationSettings(**dict(row)) if row else ImageGenerationSettings()


async def save(conn: asyncpg.Connection, account_id: int, settings: ImageGenerationSettings) -> None:
    values: dict[str, Any] = settings.model_dump()
    await conn.execute(
        f"""
        INSERT INTO image_settings (account_id, {_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (account_id) DO UPDATE SET
            provider = EXCLUDED.provider, model = EXCLUDED.model, image_type = EXCLUDED.image_type,
            max_in_article_images = EXCLUDED.max_in_article_images, image_format = EXCLUDED.image_format,
            desktop_enabled = EXCLUDED.desktop_enabled, mobile_enabled = EXCLUDED.mobile_enabled,
            updated_at = now()
        """,
        account_id,
        *values.values(),
    )
