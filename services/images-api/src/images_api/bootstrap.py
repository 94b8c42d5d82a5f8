"""Wiring in one place: `create_app(settings)` builds the FastAPI app whose lifespan opens the shared
runtime (migrations, pool, producer, outbox relay), registers the projections consumer, and runs the
notification listener and the sweeper."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from images_api.adapters.media import MediaSigner
from images_api.adapters.notifier import Notifier
from images_api.adapters.page_cache import PageCache
from images_api.entrypoints.http.deps import ApiState
from images_api.entrypoints.http.fast_path import CachedPageFastPath
from images_api.entrypoints.http.limits import BodySizeLimitMiddleware, InvalidatePagesOnWriteMiddleware
from images_api.entrypoints.http.live import live_router
from images_api.entrypoints.http.routes import media_router, router
from images_api.service.projections import HANDLERS
from images_api.service.sweeper import Sweeper
from images_api.settings import ImagesApiSettings
from writer_images import http, runtime
from writer_images.consumer import EventConsumer, consumer_config
from writer_images.secrets import SecretBox

SCHEMA = "images_api"
CONSUMER_GROUP = "images-api"
VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"


def _drop_cached_pages(app: FastAPI) -> None:
    api = getattr(app.state, "api", None)
    if api is not None:
        api.page_cache.on_notification("*")


def create_app(settings: ImagesApiSettings | None = None) -> FastAPI:
    settings = settings or ImagesApiSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = await runtime.open_resources(settings, SCHEMA, VERSIONS_DIR)
        consumer = EventConsumer(
            resources.broker,
            resources.pool,
            consumer_config(settings),
            HANDLERS,
        )
        consumer.register()
        notifier = Notifier(settings.database_url)
        page_cache = PageCache(settings.page_cache_entries)
        notifier.observe(page_cache.on_notification)
        sweeper = Sweeper(resources.pool, resources.outbox, settings)
        resources.workers += [notifier, sweeper]
        resources.extras.update(consumer=consumer, sweeper=sweeper)
        app.state.resources = resources
        app.state.api = ApiState(
            settings=settings,
            resources=resources,
            notifier=notifier,
            signer=MediaSigner(settings.public_base_url, settings.jwt_secret, settings.media_url_ttl_s),
            box=SecretBox(settings.secrets_key),
            page_cache=page_cache,
        )
        try:
            async with runtime.running(resources):
                yield
        finally:
            await runtime.close_resources(resources)

    app = FastAPI(
        title="Writer Images API",
        version="1.0.0",
        description=(
            "The Writer Images page's API: content groups with their images, generation with live "
            "progress, WordPress publishing. Every response is the envelope `{success, data, request_id}` "
            "or `{success: false, error, errors, request_id}`."
        ),
        lifespan=lifespan,
    )
    # added first so that the request-id middleware (added by install) wraps it: a 413 has a request id too
    app.add_middleware(CachedPageFastPath, get_state=lambda: getattr(app.state, "api", None))
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(InvalidatePagesOnWriteMiddleware, on_write=lambda: _drop_cached_pages(app))
    http.install(app, settings.service_name)
    app.include_router(router)
    app.include_router(media_router)
    app.include_router(live_router)
    app.include_router(runtime.ops_router(lambda: app.state.resources))
    _serve_page(app)
    return app


STATIC_DIR = Path(__file__).parent / "static"


def _serve_page(app: FastAPI) -> None:
    """The Writer Images page: static files, no build step; it talks to this API like any client."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})
