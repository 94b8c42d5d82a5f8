"""`python -m generator`: serve (default) and the operator commands for the request DLQ."""

from __future__ import annotations

import asyncio

import typer

from generator.adapters import dlq
from generator.settings import GeneratorSettings

cli = typer.Typer(help="Writer Images generator: image generation from `image.generation.requested` events.")


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

    settings = GeneratorSettings()
    serve_app(create_app(settings), settings)


@cli.command("dlq-list")
def dlq_list() -> None:
    """List the generation requests in `image.generation.requested.dlq`, with their reasons."""
    settings = GeneratorSettings()
    letters = asyncio.run(dlq.read_dead_letters(settings.kafka_bootstrap))
    for letter in letters:
        envelope = letter.envelope
        what = (
            f"event {envelope.event_id} image {envelope.payload.get('image_id')} rev {envelope.payload.get('revision')}"
            if envelope
            else "unreadable original"
        )
        typer.echo(f"#{letter.offset}  {what}  attempts={letter.attempts}  {letter.reason}")
    typer.echo(f"{len(letters)} dead letter(s)")


@cli.command("dlq-replay")
def dlq_replay(
    event_id: list[str] = typer.Option(None, "--event-id", help="Replay only these event ids (default: all)"),  # noqa: B008
    deadline_s: float = typer.Option(600.0, help="Seconds from now for the replayed requests' deadline"),
) -> None:
    """Publish the dead-lettered requests again (new event ids, fresh deadline)."""
    settings = GeneratorSettings()
    letters = asyncio.run(dlq.read_dead_letters(settings.kafka_bootstrap))
    wanted = set(event_id or [])
    replays = []
    for letter in letters:
        envelope = letter.envelope
        if envelope is None or envelope.type != "image.generation.requested":
            continue
        if wanted and str(envelope.event_id) not in wanted:
            continue
        replays.append(dlq.replayed_request(envelope, deadline_s=deadline_s))
    asyncio.run(dlq.publish(settings.kafka_bootstrap, replays))
    typer.echo(f"replayed {len(replays)} request(s)")


def main() -> None:
    cli()
