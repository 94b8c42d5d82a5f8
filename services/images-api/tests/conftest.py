"""Fixtures: the real app in-process (ASGI lifespan) on real Postgres and the real broker, and tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from images_api.adapters.security import verify_password
from images_api.bootstrap import create_app
from images_api.service import auth
from images_api.settings import ImagesApiSettings
from images_api.testing import Tenant, app_client, make_tenant, served


@pytest.fixture(scope="session")
def api_settings(database_url: str, kafka_bootstrap: str, blob_dir: Path) -> ImagesApiSettings:
    return ImagesApiSettings(
        database_url=database_url,
        kafka_bootstrap=kafka_bootstrap,
        blob_dir=blob_dir,
        allow_private_urls=True,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=500,
        public_base_url="http://testserver",
        sweeper_interval_s=0.5,
        consumer_backoff_base_s=0.01,
        consumer_backoff_max_s=0.05,
        log_json=False,
    )


@pytest.fixture(scope="session")
async def app(api_settings: ImagesApiSettings) -> AsyncIterator[FastAPI]:
    application = create_app(api_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def served_app(app: FastAPI) -> AsyncIterator[str]:
    """The base URL of the session's app, served over real sockets (for WebSocket tests)."""
    async with served(app) as url:
        yield url


@pytest.fixture(scope="session")
async def anon(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as client:
        yield client


@pytest.fixture
async def tenant(app: FastAPI) -> AsyncIterator[Tenant]:
    async for t in make_tenant(app):
        yield t


@pytest.fixture
async def other_tenant(app: FastAPI) -> AsyncIterator[Tenant]:
    async for t in make_tenant(app):
        yield t


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords login checks from now on, in order (each check is the slow, limited step)."""
    checked: list[str] = []

    def counting_verify(password_hash: str | None, password: str) -> bool:
        checked.append(password)
        return verify_password(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", counting_verify)
    return checked
