"""One provider instance per provider name, built on first use from the generator's settings."""

from __future__ import annotations

from generator.adapters.providers import ImageProvider, build_provider
from generator.adapters.render_pool import RenderPool


class ProviderRegistry:
    def __init__(
        self, *, openai_base_url: str | None, openai_api_key: str | None, render_pool: RenderPool
    ) -> None:
        self._openai_base_url = openai_base_url
        self._openai_api_key = openai_api_key
        self._render_pool = render_pool
        self._providers: dict[str, ImageProvider] = {}

    def get(self, name: str) -> ImageProvider:
        """The provider called `name`; raises ProviderConfigError for an unknown or unconfigured one."""
        provider = self._providers.get(name)
        if provider is None:
            provider = build_provider(
                name,
                openai_base_url=self._openai_base_url,
                openai_api_key=self._openai_api_key,
                render_pool=self._render_pool,
            )
            self._providers[name] = provider
        return provider

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
