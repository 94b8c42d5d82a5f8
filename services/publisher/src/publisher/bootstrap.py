"""Wiring in one place: resources, the consumer, the job runner and the WordPress clients."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from publisher.adapters.wordpress import ClientConfig, WordPressClients
from publisher.service.publishing import (
    QUEUE,
    Publishing,
    exhausted_handler,
    on_site_changed,
    publish,
    publish_requested_handler,
)
from publisher.settings import SCHEMA, PublisherSettings
from writer_images import http
from writer_images.consumer import EventConsumer, consumer_config
from writer_images.jobs import FinishedJobsPruner, JobRunner, runner_config
from writer_images.runtime import ServiceResources, close_resources, open_resources, ops_router, running
from writer_images.secrets import SecretBox

VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"


def client_config(settings: PublisherSettings) -> ClientConfig:
    return ClientConfig(
        connect_timeout_s=settings.wp_connect_timeout_s,
        timeout_s=settings.wp_timeout_s,
        media_timeout_s=settings.wp_media_timeout_s,
        max_connections=settings.per_site_limit,
        max_concurrent_requests=settings.per_site_limit,
        retry=settings.request_retry(),
        allow_private_urls=settings.allow_private_urls,
    )


def wire(resources: ServiceResources, settings: PublisherSettings) -> Publishing:
    """Register the consumer and the job runner on opened resources; returns the use cases' dependencies."""
    deps = Publishing(
        pool=resources.pool,
        schema=resources.schema,
        outbox=resources.outbox,
        blobs=resources.blobs,
        clients=WordPressClients(client_config(settings)),
        secrets=SecretBox(settings.secrets_key),
    )
    consumer = EventConsumer(
        resources.broker,
        resources.pool,
        consumer_config(settings),
        {
            "site.changed": on_site_changed,
            "content.publish.requested": publish_requested_handler(resources.schema),
        },
    )
    consumer.register()
    runner = JobRunner(
        resources.pool,
        resources.schema,
        runner_config(settings, QUEUE, per_group_limit=settings.per_site_jobs),
        functools.partial(publish, deps),
        exhausted_handler(deps),
    )
    resources.workers += [runner, FinishedJobsPruner(resources.pool, settings.job_retention_s)]
    return deps


def create_app(settings: PublisherSettings) -> FastAPI:
    """The publisher process: ops routes only (`/healthz`, `/readyz`, `/metrics`), work in the lifespan."""
    live: dict[str, ServiceResources] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        resources = await open_resources(settings, SCHEMA, VERSIONS_DIR)
        live["resources"] = resources
        deps = wire(resources, settings)
        try:
            async with running(resources):
                yield
        finally:
            await deps.clients.aclose()
            await close_resources(resources)

    app = FastAPI(title="publisher", lifespan=lifespan)
    http.install(app, settings.service_name)
    app.include_router(ops_router(lambda: live["resources"]))
    return app
