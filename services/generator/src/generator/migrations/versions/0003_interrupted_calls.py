"""provider_calls: the `interrupted` outcome of a call whose generator stopped during it.

Such a call stays `started` until a later attempt of its job (or the job's failure) closes it as
`interrupted` and reports it: the provider may have billed it, so the AI function log must show it.
`estimated_cost_usd` is now written with the row, before the call, so that the closing knows what it
probably cost; the answer of a finished call replaces it.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(
        """
        ALTER TABLE provider_calls
            DROP CONSTRAINT provider_calls_outcome_check,
            ADD CONSTRAINT provider_calls_outcome_check
                CHECK (outcome IN ('started', 'succeeded', 'failed', 'interrupted'));
        """
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
