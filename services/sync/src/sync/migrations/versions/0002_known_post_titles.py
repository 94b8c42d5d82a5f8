"""known_posts: the post's title as its last webhook gave it, so that a title edited in WordPress is news.

WordPress keeps whole seconds in `post_modified_gmt`: a title edited in the same second as the post's previous
change arrives with the same status and modification time, and was taken for a repeat.

Revision ID: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute("ALTER TABLE known_posts ADD COLUMN title text")


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
