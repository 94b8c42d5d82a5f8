"""`python -m publisher`: serve (default) and operator commands."""

from __future__ import annotations

import asyncio
import sys

import typer

from publisher.adapters import repository as repo
from publisher.adapters.wordpress import CredentialCheck, SiteConnection, WordPressClients, WordPressError
from publisher.bootstrap import client_config, create_app
from publisher.settings import SCHEMA, PublisherSettings
from writer_images import db, topics
from writer_images.dlq import dlq_cli
from writer_images.runtime import serve as serve_app
from writer_images.secrets import SecretBox
from writer_images.settings import load_settings

app = typer.Typer(help="Writer Images publisher: publishes content to WordPress.", no_args_is_help=False)
app.add_typer(dlq_cli(PublisherSettings, [topics.CONTENT_PUBLISH_REQUESTED, topics.SITE_CHANGED]), name="dlq")


@app.callback(invoke_without_command=True)
def default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        serve()


@app.command()
def serve() -> None:
    """Consume publish requests and publish to WordPress (ops routes on WI_HTTP_PORT, default 8002)."""
    settings = load_settings(PublisherSettings)
    serve_app(create_app(settings), settings)


@app.command("check-site")
def check_site(
    site_id: int = typer.Option(None, help="A site the publisher knows (credentials from its database)"),
    url: str = typer.Option(None, help="Or: the WordPress address"),
    username: str = typer.Option(None),
    password: str = typer.Option(None, help="The application password", envvar="WI_CHECK_PASSWORD"),
) -> None:
    """Check a site's credentials and say precisely what is wrong (bad password, REST off, header stripped...)."""
    settings = load_settings(PublisherSettings)
    result = asyncio.run(_check(settings, site_id, url, username, password))
    typer.echo(f"{'OK' if result.ok else 'FAILED'} [{result.code}] {result.message}")
    if not result.ok:
        raise typer.Exit(1)


async def _check(
    settings: PublisherSettings,
    site_id: int | None,
    url: str | None,
    username: str | None,
    password: str | None,
) -> CredentialCheck:
    if site_id is not None:
        pool = await db.create_pool(settings.database_url, SCHEMA, max_size=1)
        try:
            async with pool.acquire() as conn:
                site = await repo.get_site(conn, site_id)
        finally:
            await pool.close()
        if site is None:
            return CredentialCheck(False, "site_unknown", f"site {site_id} is not known to the publisher")
        connection = SiteConnection(
            site_id,
            site.base_url,
            site.username,
            SecretBox(settings.secrets_key).open(site.application_password_sealed),
        )
    elif url and username and password:
        connection = SiteConnection(0, url, username, password)
    else:
        print("give --site-id, or --url, --username and --password", file=sys.stderr)
        raise typer.Exit(2)
    clients = WordPressClients(client_config(settings))
    try:
        client = await clients.for_site(connection)
        return await client.check_credentials()
    except WordPressError as error:
        return CredentialCheck(False, error.code, error.message)
    finally:
        await clients.aclose()


def main() -> None:
    app()
