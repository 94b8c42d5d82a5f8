"""The operator commands docs/operations.md promises on every service: `dlq list|replay`."""

from __future__ import annotations

from typer.testing import CliRunner

from sync.entrypoints.cli import app
from sync.service.projections import handlers
from writer_images.events import contract_for


def test_dlq_commands_cover_every_topic_sync_consumes() -> None:
    result = CliRunner().invoke(app, ["dlq", "list", "--help"])

    assert result.exit_code == 0, result.output
    for event_type in handlers():
        assert contract_for(event_type, 1).topic in result.output
