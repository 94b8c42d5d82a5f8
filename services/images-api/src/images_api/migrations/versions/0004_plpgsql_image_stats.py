"""images: the statistics helpers the image triggers call, in PL/pgSQL, so that their plans are cached.

A SQL-language function is planned again at every call. The trigger on every statement that changes an
image's status called `refresh_content_image_stats`, whose UPDATE (a join over the contents' images,
grouped) was planned each time: 0.7 ms per call, of which the UPDATE itself ran 0.18 ms. A PL/pgSQL body
keeps its plans for the connection's life. Same statements, same results.

Revision ID: 0004
"""

from __future__ import annotations

from alembic import op

from writer_images.db import run_ddl

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DDL = """
-- overall_status: complete when every slot is generated; else failed when any failed; else partial
-- when one is generated; else pending (see domain/rules.py; a unit test keeps the two in step).
CREATE OR REPLACE FUNCTION refresh_content_image_stats(targets bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE contents c SET
        images_total = s.total,
        images_generated = s.generated,
        images_failed = s.failed,
        overall_status = CASE
            WHEN s.total > 0 AND s.generated = s.total THEN 'complete'
            WHEN s.failed > 0 THEN 'failed'
            WHEN s.generated > 0 THEN 'partial'
            ELSE 'pending' END,
        updated_at = now()
    FROM (
        SELECT t.id, count(i.id) AS total,
               count(i.id) FILTER (WHERE i.status = 'generated') AS generated,
               count(i.id) FILTER (WHERE i.status = 'failed') AS failed
        FROM unnest(targets) AS t(id) LEFT JOIN images i ON i.content_id = t.id
        GROUP BY t.id
    ) s
    WHERE c.id = s.id
      AND (c.images_total, c.images_generated, c.images_failed) IS DISTINCT FROM (s.total, s.generated, s.failed);
END $$;

CREATE OR REPLACE FUNCTION notify_accounts_changed(accounts bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('images_api_changes', 'account:' || a) FROM unnest(accounts) AS a;
END $$;
"""


def upgrade(schema: str) -> None:
    run_ddl(op.execute, DDL)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
