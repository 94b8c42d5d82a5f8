"""inbox: a BRIN index on `handled_at`, by which `writer_images.inbox.InboxPruner` forgets old event ids.

Revision ID: 0007
"""

from __future__ import annotations

from alembic import op

from writer_images.db import run_ddl
from writer_images.inbox import inbox_retention_ddl

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    run_ddl(op.execute, inbox_retention_ddl())


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
