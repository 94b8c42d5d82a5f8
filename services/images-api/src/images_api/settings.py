"""images-api settings: the shared `WI_*` pattern plus what the front door needs."""

from __future__ import annotations

from pydantic import Field, field_validator

from writer_images.settings import SiteSecretsSettings

# The generator's providers and models (generator.adapters.providers.SUPPORTED_MODELS), copied on
# purpose: services never import each other, and an unknown value must be refused at the API.
SUPPORTED_MODELS: dict[str, tuple[str, ...]] = {
    "local": ("local-v1",),
    "openai": ("dall-e-3", "dall-e-2", "gpt-image-1"),
}
# Output size asked of each model: the widest size it supports (featured images are landscape).
MODEL_SIZES: dict[str, tuple[int, int]] = {
    "local-v1": (1024, 576),
    "dall-e-3": (1792, 1024),
    "dall-e-2": (1024, 1024),
    "gpt-image-1": (1536, 1024),
}
RENDITION_WIDTHS = {"desktop": 1280, "mobile": 640}


class ImagesApiSettings(SiteSecretsSettings):
    service_name: str = "images-api"
    local_image_size: str = Field(
        default="x".join(str(side) for side in MODEL_SIZES["local-v1"]),
        pattern=r"^[1-9][0-9]{1,3}x[1-9][0-9]{1,3}$",
        description="What the local provider renders (WIDTHxHEIGHT, at most 4096 a side): smaller renders faster",
    )
    http_port: int = 8000
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", description="Base of absolute URLs handed to browsers (image_url)"
    )
    # No default: a published one would let anyone sign tokens for any account (`development_secrets()`).
    jwt_secret: str = Field(min_length=32, description="HMAC key of access tokens and media URLs")
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    media_url_ttl_s: int = 15 * 60
    login_window_s: int = 15 * 60
    login_max_failures_per_email: int = 5
    login_max_failures_per_ip: int = 30
    generation_timeout_s: int = 300
    publish_timeout_s: int = 600
    sweeper_interval_s: float = 5.0
    sweeper_max_rerequests: int = 2
    publish_wait_s: float = 30.0
    # A page reloads its view on each `changed` event: during a generation the account changes many times a
    # second, and one reload per burst is enough.
    changes_coalesce_s: float = 1.0
    max_request_bytes: int = 2 * 1024 * 1024
    default_page_size: int = 25
    page_cache_entries: int = Field(
        default=2048, description="Grouped-view pages cached per process; 0 disables"
    )

    @field_validator("local_image_size")
    @classmethod
    def _within_the_local_providers_limit(cls, size: str) -> str:
        if any(int(side) > 4096 for side in size.split("x")):
            raise ValueError("at most 4096 px a side (the local provider's limit)")
        return size

    def model_sizes(self) -> dict[str, tuple[int, int]]:
        """The output size asked of each model, the local one as configured."""
        width, height = (int(side) for side in self.local_image_size.split("x"))
        return {**MODEL_SIZES, "local-v1": (width, height)}
