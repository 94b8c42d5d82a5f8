"""images: statement-level triggers, so that a batch of image changes refreshes each content once.

The projections write a whole consumer batch of results in one statement. Row-level triggers refreshed a
content's counts and notified the API processes once per image row; these fire once per statement, on the
distinct contents and accounts the statement touched, and rewrite a content only when its counts change
(a content row is wide and indexed eight ways, the title trigram index among them).

Revision ID: 0002
"""

from __future__ import annotations

from alembic import op

from writer_images.db import run_ddl

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DDL = """
DROP TRIGGER images_stats ON images;
DROP TRIGGER images_changed_notify ON images;
DROP FUNCTION images_changed();
DROP FUNCTION refresh_content_image_stats(bigint);

-- overall_status: complete when every slot is generated; else failed when any failed; else partial
-- when one is generated; else pending (see domain/rules.py; a unit test keeps the two in step).
CREATE FUNCTION refresh_content_image_stats(targets bigint[]) RETURNS void LANGUAGE sql AS $$
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
$$;

CREATE FUNCTION notify_accounts_changed(accounts bigint[]) RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('images_api_changes', 'account:' || a) FROM unnest(accounts) AS a;
$$;

CREATE FUNCTION images_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM refresh_content_image_stats(ARRAY(SELECT DISTINCT content_id FROM new_images));
    PERFORM notify_accounts_changed(ARRAY(SELECT DISTINCT account_id FROM new_images));
    RETURN NULL;
END $$;

CREATE FUNCTION images_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM refresh_content_image_stats(ARRAY(
        SELECT n.content_id FROM new_images n JOIN old_images o USING (id)
        WHERE n.status IS DISTINCT FROM o.status OR n.content_id <> o.content_id
        UNION
        SELECT o.content_id FROM new_images n JOIN old_images o USING (id) WHERE n.content_id <> o.content_id
    ));
    PERFORM notify_accounts_changed(ARRAY(SELECT DISTINCT account_id FROM new_images));
    RETURN NULL;
END $$;

CREATE FUNCTION images_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM refresh_content_image_stats(ARRAY(SELECT DISTINCT content_id FROM old_images));
    PERFORM notify_accounts_changed(ARRAY(SELECT DISTINCT account_id FROM old_images));
    RETURN NULL;
END $$;

-- A trigger with transition tables serves one event, hence three.
CREATE TRIGGER images_inserted AFTER INSERT ON images REFERENCING NEW TABLE AS new_images
    FOR EACH STATEMENT EXECUTE FUNCTION images_inserted();
CREATE TRIGGER images_updated AFTER UPDATE ON images REFERENCING OLD TABLE AS old_images NEW TABLE AS new_images
    FOR EACH STATEMENT EXECUTE FUNCTION images_updated();
CREATE TRIGGER images_deleted AFTER DELETE ON images REFERENCING OLD TABLE AS old_images
    FOR EACH STATEMENT EXECUTE FUNCTION images_deleted();
"""


def upgrade(schema: str) -> None:
    run_ddl(op.execute, DDL)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
