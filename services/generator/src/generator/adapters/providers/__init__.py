"""Image providers behind one interface (`ImageProvider`), chosen by name from settings."""

from __future__ import annotations

from generator.adapters.providers.base import (
    ContentPolicyError,
    GeneratedImage,
    ImageProvider,
    ImageSpec,
    InvalidProviderOutputError,
    ProviderConfigError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ProviderUsage,
    RateLimitedError,
)
from generator.adapters.providers.local import LOCAL_MODEL, LocalProvider
from generator.adapters.providers.openai_provider import OPENAI_MODELS, OpenAIProvider
from generator.adapters.render_pool import RenderPool

SUPPORTED_MODELS: dict[str, tuple[str, ...]] = {
    "local": (LOCAL_MODEL,),
    "openai": OPENAI_MODELS,
}

__all__ = [
    "SUPPORTED_MODELS",
    "ContentPolicyError",
    "GeneratedImage",
    "ImageProvider",
    "ImageSpec",
    "InvalidProviderOutputError",
    "LocalProvider",
    "OpenAIProvider",
    "ProviderConfigError",
    "ProviderError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "ProviderUsage",
    "RateLimitedError",
    "build_provider",
]


def build_provider(
    name: str,
    *,
    openai_base_url: str | None,
    openai_api_key: str | None,
    render_pool: RenderPool | None,
) -> ImageProvider:
    """The provider called `name`; ProviderConfigError when it is unknown or its settings are missing."""
    if name == "local":
        if render_pool is None:
            raise ProviderConfigError("the local provider needs a render pool to render in")
        return LocalProvider(render_pool)
    if name == "openai":
        if not openai_api_key:
            raise ProviderConfigError("the openai provider needs an API key")
        return OpenAIProvider(api_key=openai_api_key, base_url=openai_base_url)
    raise ProviderConfigError(f"unknown image provider {name!r} (one of {sorted(SUPPORTED_MODELS)})")
