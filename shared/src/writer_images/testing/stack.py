"""The whole product as real processes for cross-service tests: Stack (start/kill services) and Api."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from writer_images.testing.processes import ServiceProcess

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
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            last = await probe()
            if last:
                return last
            await asyncio.sleep(interval_s)
        raise AssertionError(f"condition not met in {timeout_s}s; last value: {last!r}")


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
