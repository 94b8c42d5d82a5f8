"""`python -m images_api` serves the API; operator commands: create-user, seed-demo."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from images_api.bootstrap import SCHEMA, VERSIONS_DIR, create_app
from images_api.service.projections import HANDLERS
from images_api.settings import ImagesApiSettings
from writer_images import db, runtime
from writer_images.blobstore import FilesystemBlobStore
from writer_images.dlq import dlq_cli
from writer_images.events import contract_for
from writer_images.outbox import Outbox
from writer_images.secrets import SecretBox
from writer_images.settings import load_settings

app = typer.Typer(help="images-api: the Writer Images HTTP API", no_args_is_help=False)
app.add_typer(dlq_cli(ImagesApiSettings, [contract_for(t, 1).topic for t in HANDLERS]), name="dlq")


@app.callback(invoke_without_command=True)
def default(ctx: typer.Context) -> None:
    """Without a command: serve the API."""
    if ctx.invoked_subcommand is None:
        serve()


@app.command()
def serve() -> None:
    """Serve the API (settings from WI_* environment variables)."""
    settings = load_settings(ImagesApiSettings)
    runtime.serve(create_app(settings), settings)


async def _with_pool(settings: ImagesApiSettings) -> db.Pool:
    await db.migrate(settings.database_url, SCHEMA, VERSIONS_DIR)
    return await db.create_pool(settings.database_url, SCHEMA, max_size=2)


@app.command("create-user")
def create_user(
    email: Annotated[str, typer.Option(help="Login email")],
    password: Annotated[str, typer.Option(help="Password", prompt=True, hide_input=True)],
    role: Annotated[str, typer.Option(help="owner | editor | viewer")] = "owner",
    account: Annotated[str, typer.Option(help="Account name (created if missing)")] = "default",
) -> None:
    """Create a user (and its account if needed)."""
    from images_api.service.auth import create_user as create

    async def run() -> int:
        pool = await _with_pool(load_settings(ImagesApiSettings))
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await create(conn, account, email, password, role)  # type: ignore[arg-type]
        finally:
            await pool.close()

    if role not in ("owner", "editor", "viewer"):
        raise typer.BadParameter("role must be owner, editor or viewer")
    user_id = asyncio.run(run())
    typer.echo(f"created user {user_id} ({email}, {role}) in account {account!r}")


@app.command("seed-demo")
def seed_demo() -> None:
    """Seed the demo account (idempotent) and print its login."""
    from images_api.service.demo import seed_demo as seed

    async def run() -> str:
        settings = load_settings(ImagesApiSettings)
        pool = await _with_pool(settings)
        try:
            result = await seed(
                pool, Outbox(SCHEMA), SecretBox(settings.secrets_key), FilesystemBlobStore(settings.blob_dir)
            )
        finally:
            await pool.close()
        state = "created" if result.created else "already present"
        return (
            f"demo account {state}: login {result.email} / {result.password} "
            f"(account {result.account_id}, {result.contents} contents)"
        )

    typer.echo(asyncio.run(run()))


def main() -> None:
    app()
