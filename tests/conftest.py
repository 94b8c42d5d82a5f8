"""The whole product as real processes: its own tansu broker, its own database, all four services.

Cross-service tests talk to it only the way users and WordPress do: over HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from writer_images.infra.broker import TansuBroker
from writer_images.infra.ports import free_port
from writer_images.infra.postgres import create_database, drop_database
from writer_images.kafka import ensure_topics
from writer_images.testing.plugin import short_group_timeouts
from writer_images.testing.stack import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    SERVICES,
    Api,
    Stack,
    create_owner,
)

BRIDGE_PLUGIN = Path(__file__).parents[1] / "services" / "sync" / "wordpress-plugin" / "writer-images-bridge"


@pytest.fixture(scope="session")
async def stack(pg_server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    broker = TansuBroker(log_path=root / "tansu.log").start()
    name = f"wi_e2e_{uuid.uuid4().hex[:10]}"
    database_url = await create_database(pg_server_dsn, name)
    await ensure_topics(broker.bootstrap, 3)
    ports = {service: free_port() for service in SERVICES}
    stack = Stack(
        bootstrap=broker.bootstrap,
        database_url=database_url,
        blob_dir=root / "blobs",
        log_dir=root,
        env={
            "WI_DATABASE_URL": database_url,
            "WI_KAFKA_BOOTSTRAP": broker.bootstrap,
            "WI_BLOB_DIR": str(root / "blobs"),
            "WI_ALLOW_PRIVATE_URLS": "true",
            "WI_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['images-api']}",
            "WI_JOB_LEASE_S": "3",
            "WI_JOB_POLL_INTERVAL_S": "0.2",
            "WI_SWEEPER_INTERVAL_S": "1",
            "WI_RECONCILE_INTERVAL_S": "2",
            "WI_LOG_LEVEL": "INFO",
            **short_group_timeouts(),
        },
        ports=ports,
    )
    try:
        for service in SERVICES:
            stack.start(service)
        yield stack
    finally:
        stack.stop_all()
        broker.stop()
        await drop_database(pg_server_dsn, name)


@pytest.fixture(scope="session")
async def owner_api(stack: Stack) -> AsyncIterator[Api]:
    create_owner(stack)
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as client:
        login = await client.post("/v1/auth/login", json={"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['data']['access_token']}"
        yield Api(client)


@pytest.fixture(scope="session")
def wordpress_with_bridge(stack: Stack, wordpress_factory: Any) -> Any:
    """A real WordPress whose bridge plugin sends webhooks to the stack's sync service."""
    return wordpress_factory.start(
        bridge_plugin=BRIDGE_PLUGIN,
        webhook_url=f"{stack.url('sync')}/v1/sync/wordpress/webhook",
        site_key=f"e2e-{uuid.uuid4().hex[:6]}",
    )
