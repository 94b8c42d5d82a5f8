"""Sync tables: outbox, inbox, sites, known posts, webhook deliveries and reconciler state.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

from writer_images.inbox import inbox_ddl
from writer_images.outbox import outbox_ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(outbox_ddl())
    op.execute(inbox_ddl())
    # Projected from `site.changed`; secrets stay sealed and are opened only in memory.
    op.execute(
        """
        CREATE TABLE sites (
            site_id bigint PRIMARY KEY,
            account_id bigint NOT NULL,
            site_key text NOT NULL,
            base_url text NOT NULL,
            username text NOT NULL,
            application_password_sealed text NOT NULL,
            webhook_secret_sealed text NOT NULL,
            revision int NOT NULL,
            deleted boolean NOT NULL DEFAULT false,
            first_seen_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX sites_live_site_key ON sites (site_key) WHERE NOT deleted")
    # What we last saw of each post: the emitted state, to collapse repeats and to find deletions.
    # `ours` marks posts Writer Images published (content.published or a publication key): deletion is
    # checked for those.
    op.execute(
        """
        CREATE TABLE known_posts (
            site_id bigint NOT NULL,
            post_id bigint NOT NULL,
            publication_key text,
            wp_status text NOT NULL,
            modified_gmt timestamptz,
            ours boolean NOT NULL DEFAULT false,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (site_id, post_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX known_posts_to_check ON known_posts (site_id, post_id) WHERE ours AND wp_status <> 'deleted'"
    )
    op.execute(
        """
        CREATE TABLE webhook_deliveries (
            webhook_id text PRIMARY KEY,
            site_id bigint NOT NULL,
            post_id bigint NOT NULL,
            wp_status text NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX webhook_deliveries_received_at ON webhook_deliveries (received_at)")
    # One row per site: the reconciler's watermark (WordPress's own modified_gmt, never our clock) and backoff.
    op.execute(
        """
        CREATE TABLE reconcile_state (
            site_id bigint PRIMARY KEY,
            modified_after timestamptz,
            last_run_at timestamptz,
            last_success_at timestamptz,
            failures int NOT NULL DEFAULT 0,
            last_error text,
            next_attempt_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX reconcile_state_due ON reconcile_state (next_attempt_at)")


def downgrade(schema: str) -> None:
    op.execute("DROP TABLE reconcile_state, webhook_deliveries, known_posts, sites, inbox, outbox")
