"""The whole product as real processes for cross-service tests: Stack (start/kill services) and Api."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from writer_images.infra.broker import TansuBroker
from writer_images.infra.ports import free_port
from writer_images.infra.postgres import create_database, drop_database
from writer_images.kafka import ensure_topics
from writer_images.testing.plugin import short_group_timeouts
from writer_images.testing.processes import ServiceProcess
from writer_images.testing.waiting import eventually

SERVICES = {"images-api": "images_api", "generator": "generator", "publisher": "publisher", "sync": "sync"}
DEMO_EMAIL, DEMO_PASSWORD = "owner@e2e.test", "e2e-password-123"


@dataclass
class Stack:
    bootstrap: str
    database_url: str
    blob_dir: Path
    log_dir: Path
    env: dict[str, str]
    ports: dict[str, int]
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    broker: TansuBroker | None = None

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def api(self) -> str:
        return self.url("images-api")

    def start(self, service: str, **extra_env: str) -> ServiceProcess:
        process = ServiceProcess(
            service,
            ["-m", SERVICES[service]],
            env={
                **self.env,
                **extra_env,
                "WI_HTTP_PORT": str(self.ports[service]),
                "WI_SERVICE_NAME": service,
            },
            log_path=self.log_dir / f"{service}.log",
            health_url=f"{self.url(service)}/healthz",
        ).start(wait_s=60)
        self.processes[service] = process
        return process

    def kill9(self, service: str) -> None:
        self.processes[service].kill9()

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.stop()


def create_owner(
    stack: Stack, email: str = DEMO_EMAIL, password: str = DEMO_PASSWORD, account: str = "e2e"
) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "images_api",
            "create-user",
            "--email",
            email,
            "--password",
            password,
            "--role",
            "owner",
            "--account",
            account,
        ],
        env={**os.environ, **stack.env},
        check=True,
        capture_output=True,
        timeout=60,
    )


class Api:
    """A tiny client for the envelope API: returns `data`, raises with the error on failure."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def call(
        self, method: str, path: str, *, expect: int | tuple[int, ...] = (200, 201, 202), **kw: Any
    ) -> Any:
        response = await self.client.request(method, path, **kw)
        expected = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in expected, f"{method} {path} → {response.status_code}: {response.text}"
        return response.json().get("data")

    async def eventually(self, probe: Any, *, timeout_s: float = 30.0, interval_s: float = 0.2) -> Any:
        return await eventually(
            probe, what=getattr(probe, "__name__", "the probe"), timeout_s=timeout_s, interval_s=interval_s
        )


def configure_bridge(wp_config: Path, *, webhook_url: str, secret: str, site_key: str) -> None:
    """Point a running WordPress's bridge plugin at a sync service (PHP re-reads wp-config per request)."""
    text = wp_config.read_text()
    for name, value in (
        ("WRITER_IMAGES_WEBHOOK_URL", webhook_url),
        ("WRITER_IMAGES_WEBHOOK_SECRET", secret),
        ("WRITER_IMAGES_SITE_KEY", site_key),
    ):
        literal = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        replacement = f"define('{name}', {literal});"
        # A function, not a template: backslashes in the secret must stay as they are.
        text, count = re.subn(rf"define\('{name}', .*?\);", lambda _: replacement, text)  # noqa: B023
        assert count == 1, f"{name} not found in {wp_config}"
    wp_config.write_text(text)


PARTITIONS = 3


@contextlib.asynccontextmanager
async def started_stack(
    server_dsn: str, workdir: Path, services: Sequence[str] = tuple(SERVICES), **env: str
) -> AsyncIterator[Stack]:
    """The product as processes: its own tansu broker and database, `services` started and healthy,
    test-friendly timings (overridable through `env`); everything stopped and dropped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"wi_stack_{uuid.uuid4().hex[:10]}"
    database_url = await create_database(server_dsn, name)
    ports = {service: free_port() for service in SERVICES}
    try:
        with TansuBroker(log_path=workdir / "tansu.log") as broker:
            await ensure_topics(broker.bootstrap, PARTITIONS)
            stack = Stack(
                bootstrap=broker.bootstrap,
                database_url=database_url,
                blob_dir=workdir / "blobs",
                log_dir=workdir,
                env={
                    "WI_DATABASE_URL": database_url,
                    "WI_KAFKA_BOOTSTRAP": broker.bootstrap,
                    "WI_KAFKA_PARTITIONS": str(PARTITIONS),
                    "WI_BLOB_DIR": str(workdir / "blobs"),
                    "WI_ALLOW_PRIVATE_URLS": "true",
                    "WI_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['images-api']}",
                    "WI_JOB_POLL_INTERVAL_S": "0.2",
                    **short_group_timeouts(),
                    **env,
                },
                ports=ports,
                broker=broker,
            )
            try:
                for service in services:
                    await asyncio.to_thread(stack.start, service)
                yield stack
            finally:
                await asyncio.to_thread(stack.stop_all)
    finally:
        await drop_database(server_dsn, name)


@contextlib.asynccontextmanager
async def owner_session(stack: Stack, *, timeout_s: float = 60) -> AsyncIterator[Api]:
    """An owner created with the CLI, logged in: an `Api` for the images-api."""
    await asyncio.to_thread(create_owner, stack)
    async with httpx.AsyncClient(base_url=stack.api, timeout=timeout_s) as client:
        login = await client.post("/v1/auth/login", json={"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['data']['access_token']}"
        yield Api(client)


async def use_local_provider(api: Api, *, in_article_slots: int) -> None:
    """The account generates with the local renderer (JPEG, both renditions) into 1 + `in_article_slots` slots."""
    await api.call(
        "PUT",
        "/v1/system/integrations/image_generation/",
        json={
            "provider": "local",
            "model": "local-v1",
            "image_type": "featured",
            "max_in_article_images": in_article_slots,
            "image_format": "jpg",
            "desktop_enabled": True,
            "mobile_enabled": True,
        },
    )
