"""`python -m generator`: serve (default), and `dlq list|replay` for the request DLQ."""

from __future__ import annotations

from datetime import timedelta

import typer

from generator.settings import GeneratorSettings
from writer_images.dlq import dlq_cli
from writer_images.events import ImageGenerationRequested, Payload, utcnow
from writer_images.settings import load_settings
from writer_images.topics import IMAGE_GENERATION_REQUESTED

cli = typer.Typer(help="Writer Images generator: image generation from `image.generation.requested` events.")


def _fresh_deadline(payload: Payload) -> Payload:
    """A replayed request gets a new deadline: the old one has usually passed by the time it is replayed."""
    assert isinstance(payload, ImageGenerationRequested)
    window = timedelta(seconds=load_settings(GeneratorSettings).replay_deadline_s)
    return payload.model_copy(update={"deadline_at": utcnow() + window})


cli.add_typer(
    dlq_cli(GeneratorSettings, [IMAGE_GENERATION_REQUESTED], {IMAGE_GENERATION_REQUESTED: _fresh_deadline}),
    name="dlq",
)


@cli.callback(invoke_without_command=True)
def default(ctx: typer.Context) -> None:
    """Serve when no command is given."""
    if ctx.invoked_subcommand is None:
        serve()


@cli.command()
def serve() -> None:
    """Consume generation requests and generate images; ops routes on WI_HTTP_PORT (default 8001)."""
    from generator.entrypoints.app import create_app
    from writer_images.runtime import serve as serve_app

    settings = load_settings(GeneratorSettings)
    serve_app(create_app(settings), settings)


def main() -> None:
    cli()
