"""Wiring in one place: resources, consumer, reconciler and the HTTP app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from sync.entrypoints.http import SyncContext, add_webhook_route, router
from sync.entrypoints.worker import ReconcilerWorker
from sync.service.projections import handlers
from sync.service.reconcile import Reconciler
from sync.service.webhooks import SecretOpener, SiteDirectory
from sync.settings import SyncSettings
from writer_images import http
from writer_images.consumer import EventConsumer, consumer_config
from writer_images.runtime import ServiceResources, close_resources, open_resources, ops_router, running
from writer_images.secrets import SecretBox

SCHEMA = "sync"
VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"


def create_app(settings: SyncSettings) -> FastAPI:
    """The sync service: webhook receiver + on-demand reconciliation over HTTP; consumer and reconciler
    worker started by the lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = await open_resources(settings, SCHEMA, VERSIONS_DIR)
        try:
            secrets = SecretOpener(SecretBox(settings.secrets_key))
            EventConsumer(resources.broker, resources.pool, consumer_config(settings), handlers()).register()
            reconciler = Reconciler(resources.pool, resources.outbox, secrets, settings)
            if settings.reconcile_enabled:
                resources.workers.append(ReconcilerWorker(resources.pool, reconciler, settings))
            app.state.resources = resources
            sites = SiteDirectory(resources.pool, secrets)
            app.state.sync = SyncContext(settings, resources.pool, resources.relay.wake, sites, reconciler)
            async with running(resources):
                yield
        finally:
            await close_resources(resources)

    app = FastAPI(title="Writer Images sync", version="1.0.0", lifespan=lifespan)
    http.install(app, settings.service_name)
    add_webhook_route(app)
    app.include_router(ops_router(lambda: _resources(app)))
    app.include_router(router)
    return app


def _resources(app: FastAPI) -> ServiceResources:
    resources: ServiceResources = app.state.resources
    return resources
