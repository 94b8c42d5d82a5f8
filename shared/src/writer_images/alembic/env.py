"""alembic environment shared by every service: one schema per service, its own version table.

Called programmatically by `writer_images.db.migrate`; the caller passes the DSN and the schema in
`config.attributes`. An advisory lock serializes concurrent start-ups migrating the same schema.
"""

from __future__ import annotations

import asyncio
import zlib

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config
schema: str = config.attributes["schema"]
dsn: str = config.attributes["dsn"]


def _run(connection: Connection) -> None:
    lock_id = zlib.crc32(f"migrate:{schema}".encode())
    connection.execute(text(f"SELECT pg_advisory_xact_lock({lock_id})"))
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    connection.execute(text(f'SET search_path TO "{schema}", public'))
    context.configure(
        connection=connection,
        version_table_schema=schema,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations(schema=schema)


async def _main() -> None:
    engine = create_async_engine(dsn)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported")
asyncio.run(_main())
