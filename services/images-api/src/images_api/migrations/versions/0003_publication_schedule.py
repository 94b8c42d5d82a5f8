"""publications: when each is scheduled to go live, for the publishing queue and calendar.

`publish_at` was only inside the request payload; as a column (set for posts WordPress will publish later,
`future`) the queue can list an account's publications by schedule through an index.

Revision ID: 0003
"""

from __future__ import annotations

from alembic import op

from writer_images.db import run_ddl

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE publications ADD COLUMN publish_at timestamptz;
UPDATE publications SET publish_at = (request->>'publish_at')::timestamptz
    WHERE request->>'wp_status' = 'future' AND request->>'publish_at' IS NOT NULL;
CREATE INDEX publications_account ON publications (account_id, id);
CREATE INDEX publications_schedule ON publications (account_id, publish_at) WHERE publish_at IS NOT NULL;
"""


def upgrade(schema: str) -> None:
    run_ddl(op.execute, DDL)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
