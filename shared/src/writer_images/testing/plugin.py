"""The project's pytest plugin: real Postgres, a real tansu broker, real WordPress, subprocesses.

Loaded for every test run by `-p writer_images.testing.plugin` (root pyproject). Nothing here
skips: when a piece of infrastructure is missing, the fixture fails and says what is missing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from writer_images.infra.broker import TansuBroker
from writer_images.infra.postgres import create_database, drop_database, postgres_server
from writer_images.kafka import ensure_topics
from writer_images.settings import use_development_secrets

TEST_PARTITIONS = 3

# Services and their settings have no default secrets; the session's own reach every service it starts.
use_development_secrets()


@pytest.fixture(scope="session")
def pg_server_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Postgres server for this run: WI_TEST_PG_SERVER, else 127.0.0.1:5432, else a private cluster."""
    configured = os.environ.get("WI_TEST_PG_SERVER")
    if configured:
        yield configured
        return
    with postgres_server(tmp_path_factory.mktemp("pgdata")) as server:
        yield server


@pytest.fixture(scope="session")
async def database_url(pg_server_dsn: str) -> AsyncIterator[str]:
    """A throw-away database for the whole test session (services migrate their schemas into it)."""
    name = f"wi_test_{uuid.uuid4().hex[:12]}"
    dsn = await create_database(pg_server_dsn, name)
    yield dsn
    await drop_database(pg_server_dsn, name)


@pytest.fixture
async def fresh_database_url(pg_server_dsn: str) -> AsyncIterator[str]:
    """A database of its own for one test, where isolation matters more than speed."""
    name = f"wi_test_{uuid.uuid4().hex[:12]}"
    dsn = await create_database(pg_server_dsn, name)
    yield dsn
    await drop_database(pg_server_dsn, name)


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One real Kafka-compatible broker process for the session."""
    broker = TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log")
    with broker:
        yield broker


@pytest.fixture(scope="session")
async def kafka_bootstrap(tansu: TansuBroker) -> str:
    """The broker's address, with every topic of the system created explicitly."""
    await ensure_topics(tansu.bootstrap, TEST_PARTITIONS)
    return tansu.bootstrap


@pytest.fixture(scope="session")
def blob_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("blobs")


def short_group_timeouts() -> dict[str, str]:
    """Environment for services under test: fast consumer-group joins on tansu."""
    return {
        "WI_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "WI_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "WI_KAFKA_FETCH_MAX_WAIT_MS": "20",
    }


# Real WordPress sites (PHP + MariaDB), started on demand and torn down at session end.
from writer_images.testing.wordpress_fixtures import mariadb, wordpress_factory, wordpress_site  # noqa: E402

__all__ = ["mariadb", "wordpress_factory", "wordpress_site"]
