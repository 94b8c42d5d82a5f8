"""jobs: the claim's order in its index (see `writer_images.jobs.jobs_claim_order_ddl`).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from writer_images.db import run_ddl
from writer_images.jobs import jobs_claim_order_ddl

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    run_ddl(op.execute, jobs_claim_order_ddl())


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
