"""Generator tables: outbox, inbox, jobs, results, provider calls and the shared token buckets.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

from writer_images.db import run_ddl
from writer_images.inbox import inbox_ddl
from writer_images.jobs import jobs_ddl
from writer_images.outbox import outbox_ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    run_ddl(op.execute, outbox_ddl(), inbox_ddl(), jobs_ddl())
    # One row per generated (image, revision): the `image.generated` payload, re-emitted on a duplicate request.
    op.execute(
        """
        CREATE TABLE results (
            image_id bigint NOT NULL,
            revision int NOT NULL,
            content_id bigint NOT NULL,
            account_id bigint NOT NULL,
            payload jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (image_id, revision)
        );
        """
    )
    # One row per paid provider call, written before the call: a row without `finished_at` is a call that a
    # crash interrupted. `raw_blob_key` keeps a succeeded call's bytes so a retry never pays twice.
    op.execute(
        """
        CREATE TABLE provider_calls (
            call_id uuid PRIMARY KEY,
            idempotency_key text NOT NULL UNIQUE,
            image_id bigint NOT NULL,
            revision int NOT NULL,
            attempt int NOT NULL,
            account_id bigint NOT NULL,
            provider text NOT NULL,
            model text NOT NULL,
            started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            finished_at timestamptz,
            outcome text NOT NULL DEFAULT 'started' CHECK (outcome IN ('started', 'succeeded', 'failed')),
            latency_ms int,
            estimated_cost_usd double precision,
            input_tokens int,
            output_tokens int,
            error text,
            raw_blob_key text,
            revised_prompt text,
            UNIQUE (image_id, revision, attempt)
        );
        """
    )
    # Token buckets per provider key, shared by every generator instance.
    op.execute(
        """
        CREATE TABLE rate_buckets (
            key text PRIMARY KEY,
            tokens double precision NOT NULL,
            updated_at timestamptz NOT NULL
        );
        """
    )


def downgrade(schema: str) -> None:
    op.execute("DROP TABLE rate_buckets, provider_calls, results, jobs, inbox, outbox")
