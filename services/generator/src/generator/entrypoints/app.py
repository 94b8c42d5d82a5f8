"""The ops-only HTTP app: its lifespan runs the consumer, the job runner and the outbox relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from generator.bootstrap import GeneratorService, generator_running
from generator.settings import GeneratorSettings
from writer_images.runtime import ServiceResources, ops_router


def create_app(settings: GeneratorSettings) -> FastAPI:
    state: dict[str, GeneratorService] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with generator_running(settings) as service:
            state["service"] = service
            yield

    def resources() -> ServiceResources:
        return state["service"].resources

    app = FastAPI(title="generator", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(ops_router(resources))
    return app
