"""contents: the title the WordPress post last had, so that a title edited in WordPress reaches the content.

Every `wordpress.post.changed` carries the post's title, also when only its status changed. Comparing it with
the content's own title would undo a rename made here and not yet published; comparing it with the title
WordPress last had tells an edit made there from the title we published. Existing contents start from the
title of their last successful publication: what WordPress had as far as we know.

Revision ID: 0005
"""

from __future__ import annotations

from alembic import op

from writer_images.db import run_ddl

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE contents ADD COLUMN wp_title text;
UPDATE contents c SET wp_title = last.title
    FROM (SELECT DISTINCT ON (content_id) content_id, request->>'title' AS title
            FROM publications WHERE status = 'published' ORDER BY content_id, id DESC) AS last
    WHERE c.id = last.content_id;
"""


def upgrade(schema: str) -> None:
    run_ddl(op.execute, DDL)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
