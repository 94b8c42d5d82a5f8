"""images: an update refreshes its contents' counts only when it can change them.

A content's counts (total, generated, failed) and its overall_status move only when an image enters or
leaves the content, or its status enters or leaves `generated` or `failed`. Every generation moves each image
through `queued` and `generating` first, and each of those statements refreshed its contents anyway: the
counts were recomputed and found unchanged (0.44 ms of server time per statement, a third of the
`generate_images` statement). Same results; the statements that cannot change a count skip the refresh.

Revision ID: 0006
"""

from __future__ import annotations

from alembic import op

from writer_images.db import run_ddl

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DDL = """
CREATE OR REPLACE FUNCTION images_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    moved bigint[];
BEGIN
    moved := ARRAY(
        SELECT n.content_id FROM new_images n JOIN old_images o USING (id)
        WHERE n.content_id <> o.content_id
           OR (n.status IS DISTINCT FROM o.status
               AND (n.status IN ('generated', 'failed') OR o.status IN ('generated', 'failed')))
        UNION
        SELECT o.content_id FROM new_images n JOIN old_images o USING (id) WHERE n.content_id <> o.content_id
    );
    IF cardinality(moved) > 0 THEN
        PERFORM refresh_content_image_stats(moved);
    END IF;
    PERFORM notify_accounts_changed(ARRAY(SELECT DISTINCT account_id FROM new_images));
    RETURN NULL;
END $$;
"""


def upgrade(schema: str) -> None:
    run_ddl(op.execute, DDL)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
