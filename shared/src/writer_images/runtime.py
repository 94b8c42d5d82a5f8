"""How every service process runs: one FastAPI app served by uvicorn whose lifespan opens the
database, migrates the service's schema, starts the outbox relay, the Kafka consumer and any job
runners, and stops them in reverse order. Consumer-only services serve just the ops routes.

Ops routes on every service: `/healthz` (the process is alive), `/readyz` (database and broker
reachable), `/metrics` (Prometheus).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker

from writer_images import db
from writer_images.blobstore import FilesystemBlobStore
from writer_images.http import metrics_response
from writer_images.inbox import InboxPruner
from writer_images.kafka import ensure_topics, kafka_producer, make_broker
from writer_images.logging import configure_logging, get_logger
from writer_images.outbox import Outbox, OutboxRelay
from writer_images.settings import ServiceSettings

log = get_logger(__name__)


class Worker(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class ServiceResources:
    """What a running service holds: its pool, broker, producer, outbox and blob store."""

    settings: ServiceSettings
    schema: str
    pool: asyncpg.Pool
    broker: KafkaBroker
    producer: AIOKafkaProducer
    outbox: Outbox
    relay: OutboxRelay
    blobs: FilesystemBlobStore
    workers: list[Worker] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


async def open_resources(settings: ServiceSettings, schema: str, versions_dir: Path) -> ServiceResources:
    """Migrate the schema, create topics, open the pool and the producer; nothing consumes yet."""
    await db.migrate(settings.database_url, schema, versions_dir)
    await ensure_topics(settings.kafka_bootstrap, settings.kafka_partitions)
    pool = await db.create_pool(
        settings.database_url, schema, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    producer = kafka_producer(settings.kafka_bootstrap, client_id=f"{schema}-relay")
    await producer.start()
    outbox = Outbox(schema)
    return ServiceResources(
        settings=settings,
        schema=schema,
        pool=pool,
        broker=make_broker(settings.kafka_bootstrap, client_id=schema),
        producer=producer,
        outbox=outbox,
        relay=OutboxRelay(pool, schema, producer, linger_s=settings.outbox_linger_s),
        blobs=FilesystemBlobStore(settings.blob_dir),
        workers=[InboxPruner(pool, settings.inbox_retention_s)],
    )


async def close_resources(resources: ServiceResources) -> None:
    with contextlib.suppress(Exception):
        await resources.producer.stop()
    with contextlib.suppress(Exception):
        await resources.pool.close()


@contextlib.asynccontextmanager
async def running(resources: ServiceResources, *, consume: bool = True) -> AsyncIterator[None]:
    """Start the relay, job runners and (if any subscriber is registered) the consumer."""
    workers: Sequence[Worker] = [resources.relay, *resources.workers]
    tasks = [asyncio.create_task(w.run(), name=type(w).__name__) for w in workers]
    if consume and resources.broker.subscribers:
        await resources.broker.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            await resources.broker.stop()
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


async def readiness(resources: ServiceResources) -> dict[str, bool]:
    checks = {"database": False, "broker": False}
    with contextlib.suppress(Exception):
        async with resources.pool.acquire(timeout=2) as conn:
            checks["database"] = await conn.fetchval("SELECT true")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(resources.producer.client.fetch_all_metadata(), 2)
        checks["broker"] = True
    return checks


def ops_router(get_resources: Any) -> APIRouter:
    """`/healthz`, `/readyz` and `/metrics`; `get_resources()` returns the live ServiceResources."""
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = await readiness(get_resources())
        return JSONResponse(
            {"ready": all(checks.values()), "checks": checks},
            status_code=200 if all(checks.values()) else 503,
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        return metrics_response()

    return router


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run the app until SIGINT/SIGTERM; the lifespan stops consumers and workers cleanly."""
    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
