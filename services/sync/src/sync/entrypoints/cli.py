"""`python -m sync`: serve (default) and operator commands."""

from __future__ import annotations

import asyncio
import json

import typer

from sync.bootstrap import SCHEMA, VERSIONS_DIR, create_app
from sync.service.projections import handlers
from sync.service.reconcile import Reconciler
from sync.service.webhooks import SecretOpener
from sync.settings import SyncSettings
from writer_images import db
from writer_images.dlq import dlq_cli
from writer_images.events import contract_for
from writer_images.logging import configure_logging
from writer_images.outbox import Outbox
from writer_images.runtime import serve as serve_app
from writer_images.secrets import SecretBox
from writer_images.settings import load_settings

app = typer.Typer(help="Writer Images sync: WordPress webhooks and reconciliation.", no_args_is_help=False)
app.add_typer(dlq_cli(SyncSettings, [contract_for(t, 1).topic for t in handlers()]), name="dlq")


@app.callback(invoke_without_command=True)
def main_callback(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        serve()


@app.command()
def serve() -> None:
    """Serve the webhook receiver, the consumer and the reconciler (settings from WI_* variables)."""
    settings = load_settings(SyncSettings)
    serve_app(create_app(settings), settings)


@app.command()
def reconcile(site_id: int = typer.Option(..., "--site-id", help="The site to reconcile now")) -> None:
    """Run one reconciliation pass over a site and print its report. Events go through the outbox
    (a running sync service relays them)."""
    settings = load_settings(SyncSettings)
    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    report = asyncio.run(_reconcile_once(settings, site_id))
    typer.echo(json.dumps(report))


async def _reconcile_once(settings: SyncSettings, site_id: int) -> dict[str, object]:
    await db.migrate(settings.database_url, SCHEMA, VERSIONS_DIR)
    pool = await db.create_pool(settings.database_url, SCHEMA, min_size=1, max_size=2)
    try:
        reconciler = Reconciler(pool, Outbox(SCHEMA), SecretOpener(SecretBox(settings.secrets_key)), settings)
        return (await reconciler.reconcile(site_id)).as_dict()
    finally:
        await pool.close()


def main() -> None:
    app()
