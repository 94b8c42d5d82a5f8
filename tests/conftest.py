"""The whole product as real processes: its own tansu broker, its own database, all four services.

Cross-service tests talk to it only the way users and WordPress do: over HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from writer_images.testing.stack import Api, Stack, owner_session, started_stack

BRIDGE_PLUGIN = Path(__file__).parents[1] / "services" / "sync" / "wordpress-plugin" / "writer-images-bridge"


@pytest.fixture(scope="session")
async def stack(pg_server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    timings = {"WI_JOB_LEASE_S": "3", "WI_SWEEPER_INTERVAL_S": "1", "WI_RECONCILE_INTERVAL_S": "2"}
    async with started_stack(pg_server_dsn, workdir, **timings) as running:
        yield running


@pytest.fixture(scope="session")
async def owner_api(stack: Stack) -> AsyncIterator[Api]:
    async with owner_session(stack, timeout_s=30) as api:
        yield api


@pytest.fixture(scope="session")
def wordpress_with_bridge(stack: Stack, wordpress_factory: Any) -> Any:
    """A real WordPress whose bridge plugin sends webhooks to the stack's sync service."""
    return wordpress_factory.start(
        bridge_plugin=BRIDGE_PLUGIN,
        webhook_url=f"{stack.url('sync')}/v1/sync/wordpress/webhook",
        site_key=f"e2e-{uuid.uuid4().hex[:6]}",
    )
