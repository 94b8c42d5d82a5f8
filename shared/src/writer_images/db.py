"""Database helpers: an asyncpg pool bound to a service's schema, and alembic migrations per schema."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from alembic import command
from alembic.config import Config

Connection = asyncpg.Connection
Pool = asyncpg.Pool


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without a reset round trip. asyncpg's default runs `pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL` on every release, which costs a round trip and server CPU per transaction. Our
    connections hold no session state: advisory locks are transaction-scoped, nothing runs `SET` outside a
    transaction, cursors live inside transactions, and the two LISTEN users UNLISTEN before releasing.
    asyncpg still rolls back an open transaction and drops listener callbacks before calling this."""


async def create_pool(dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections see the service's own schema first, with JSON decoded by orjson."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings={"search_path": f"{schema},public", "application_name": schema},
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One connection, one transaction: committed when the block exits normally."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


def run_ddl(execute: Callable[[str], object], *ddl: str) -> None:
    """Run DDL one statement at a time (for migrations: `run_ddl(op.execute, outbox_ddl(), jobs_ddl())`);
    asyncpg prepares each statement, so one call may carry one command only."""
    for block in ddl:
        for statement in split_statements(block):
            execute(statement)


def split_statements(script: str) -> list[str]:
    """Split on every `;` outside `$$` function bodies (which keep theirs); whole-line `--` comments are
    dropped first, so that a `;` in a comment splits nothing."""
    statements: list[str] = []
    current = ""
    for index, part in enumerate(script.split("$$")):
        if index % 2:  # a function body
            current += f"$${part}$$"
            continue
        code = "\n".join(line for line in part.splitlines() if not line.strip().startswith("--"))
        first, *rest = code.split(";")
        current += first
        for piece in rest:
            statements.append(current)
            current = piece
    statements.append(current)
    return [statement.strip() for statement in statements if statement.strip()]


def sqlalchemy_url(dsn: str) -> str:
    """alembic speaks SQLAlchemy; the same asyncpg DSN with the dialect named."""
    parts = urlsplit(dsn)
    scheme = "postgresql+asyncpg"
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def _alembic_config(dsn: str, schema: str, versions_dir: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("writer_images") / "alembic"))
    config.set_main_option("version_locations", str(versions_dir))
    config.set_main_option("path_separator", "os")
    config.attributes["dsn"] = sqlalchemy_url(dsn)
    config.attributes["schema"] = schema
    return config


def upgrade_sync(dsn: str, schema: str, versions_dir: Path, revision: str = "head") -> None:
    command.upgrade(_alembic_config(dsn, schema, versions_dir), revision)


async def migrate(dsn: str, schema: str, versions_dir: Path) -> None:
    """Bring the service's schema to the newest revision (safe to run from several processes)."""
    # alembic is synchronous and runs its own event loop for the async engine: give it a thread.
    await asyncio.to_thread(upgrade_sync, dsn, schema, versions_dir)


async def fetch_json(conn: asyncpg.Connection, query: str, *args: Any) -> Any:
    return await conn.fetchval(query, *args)
