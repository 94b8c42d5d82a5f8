"""Fixtures for the sync service's tests (helpers live in `sync.testing`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from sync.testing import (
    RegisteredSite,
    SyncService,
    new_site_id,
    publish_site,
    start_sync,
    sync_env,
    wait_for_site,
)
from writer_images.infra.broker import TansuBroker
from writer_images.infra.ports import free_port
from writer_images.infra.postgres import create_database, drop_database
from writer_images.kafka import ensure_topics


# The sync service reconciles every site that `site.changed` names. On the session's shared broker other
# suites leave events for sites that do not exist (https://blog.example, ...), and the reconciler would
# spend these tests' time timing out on them: sync's tests get a broker and a database of their own.
@pytest.fixture(scope="session")
async def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    broker = TansuBroker(log_path=tmp_path_factory.mktemp("sync-tansu") / "tansu.log").start()
    await ensure_topics(broker.bootstrap, 3)
    yield broker.bootstrap
    broker.stop()


@pytest.fixture(scope="session")
async def database_url(pg_server_dsn: str) -> AsyncIterator[str]:
    name = f"wi_sync_{uuid.uuid4().hex[:10]}"
    dsn = await create_database(pg_server_dsn, name)
    yield dsn
    await drop_database(pg_server_dsn, name)


@pytest.fixture(scope="module")
def sync_service(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SyncService]:
    """`python -m sync` as a subprocess for a whole test module."""
    port = free_port()
    service = start_sync(tmp_path_factory.mktemp("sync"), sync_env(database_url, kafka_bootstrap, port), port)
    yield service
    service.process.stop()


@pytest.fixture
async def sync_db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "sync"})
    yield conn
    await conn.close()


@pytest.fixture
async def registered_site(
    sync_service: SyncService, kafka_bootstrap: str, sync_db: asyncpg.Connection
) -> RegisteredSite:
    """A site known to the running sync service (through a real `site.changed` on the broker)."""
    site = RegisteredSite(new_site_id(), f"key-{uuid.uuid4().hex[:10]}", f"secret-{uuid.uuid4().hex}", 7)
    await publish_site(kafka_bootstrap, site_id=site.site_id, site_key=site.site_key, secret=site.secret)
    await wait_for_site(sync_db, site.site_id)
    return site


@pytest.fixture
async def http(sync_service: SyncService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sync_service.url, timeout=10) as client:
        yield client
