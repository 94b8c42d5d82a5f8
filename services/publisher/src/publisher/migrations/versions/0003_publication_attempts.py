"""attempts: every attempt the publisher heard of, per publication key, with its latest deadline.

A key names a content on a site, so each publication of it (a new publication id, growing, and a new attempt
id) shares it: an attempt delayed past images-api's giving up on it could write after a newer one. The largest
publication id known for a key says which attempt may still write; the deadline is kept here, not read from the
job, because images-api re-requests an overdue attempt with a later deadline while its job may still be waiting
with the first request's payload.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from writer_images.db import run_ddl

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    run_ddl(
        op.execute,
        """
        CREATE TABLE attempts (
            publication_key text NOT NULL,
            attempt_id uuid NOT NULL,
            publication_id bigint NOT NULL,
            deadline_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (publication_key, attempt_id)
        );
        CREATE INDEX attempts_newest ON attempts (publication_key, publication_id);
        """,
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
