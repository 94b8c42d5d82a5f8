from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from writer_images.db import create_pool
from writer_images.inbox import inbox_ddl
from writer_images.outbox import outbox_ddl


@pytest.fixture
async def service_schema(database_url: str) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A schema of its own shaped like a service's: outbox, inbox and a table for effects."""
    schema = f"svc_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE SCHEMA {schema}; SET search_path TO {schema};")
    await admin.execute(outbox_ddl() + inbox_ddl() + "CREATE TABLE effects (event_id uuid, note text);")
    await admin.close()
    pool = await create_pool(database_url, schema, max_size=5)
    yield schema, pool
    await pool.close()
