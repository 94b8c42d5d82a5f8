"""Publisher tables: outbox, inbox, jobs, sites, publications and the media ledger.

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
    # Site connections as images-api announced them; the application password stays sealed (Fernet).
    op.execute(
        """
        CREATE TABLE sites (
            site_id bigint PRIMARY KEY,
            account_id bigint NOT NULL,
            site_key text NOT NULL,
            name text NOT NULL,
            base_url text NOT NULL,
            username text NOT NULL,
            application_password_sealed text NOT NULL,
            deleted boolean NOT NULL DEFAULT false,
            revision int NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )
    # One row per content + site: the WordPress post id is stored the moment WordPress returns it;
    # `create_attempts` is bumped (committed) before every post create, so a lookup made earlier can be trusted
    # only while it has not changed.
    run_ddl(
        op.execute,
        """
        CREATE TABLE publications (
            publication_key text PRIMARY KEY,
            publication_id bigint NOT NULL,
            content_id bigint NOT NULL,
            site_id bigint NOT NULL,
            post_id bigint,
            wp_status text,
            link text,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'publishing', 'published', 'failed')),
            create_attempts int NOT NULL DEFAULT 0,
            last_attempt_id uuid,
            last_error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX publications_content ON publications (content_id, site_id);
        """,
    )
    # Media ledger: one WordPress media item per (site, image bytes). A row with `media_id IS NULL` and
    # `upload_attempts > 0` is an upload a crash may have finished on WordPress: look it up before uploading.
    op.execute(
        """
        CREATE TABLE media (
            site_id bigint NOT NULL,
            sha256 text NOT NULL,
            media_id bigint,
            source_url text,
            upload_attempts int NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (site_id, sha256)
        );
        """
    )


def downgrade(schema: str) -> None:
    run_ddl(op.execute, "DROP TABLE media; DROP TABLE publications; DROP TABLE sites; DROP TABLE jobs;")
    run_ddl(op.execute, "DROP TABLE inbox; DROP TABLE outbox;")
