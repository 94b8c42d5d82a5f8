"""Wiring in one place: resources, providers, the render pool, the consumer and the job runner."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from generator.adapters.provider_registry import ProviderRegistry
from generator.adapters.rate_limit import Limit, PostgresTokenBucket
from generator.adapters.render_pool import RenderPool, create_render_pool
from generator.domain.rules import GENERATE_QUEUE
from generator.service.generation import GenerationLimits, ImageGeneration, accept_requests
from generator.settings import GeneratorSettings
from writer_images.consumer import Batched, EventConsumer, consumer_config
from writer_images.jobs import FinishedJobsPruner, JobRunner, RunnerConfig, runner_config
from writer_images.runtime import ServiceResources, close_resources, open_resources, running

SCHEMA = "generator"
VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"
PROVIDERS = ("local", "openai")


@dataclass
class GeneratorService:
    settings: GeneratorSettings
    resources: ServiceResources
    generation: ImageGeneration
    runner: JobRunner
    consumer: EventConsumer | None
    render_pool: RenderPool
    providers: ProviderRegistry


def generation_limits(settings: GeneratorSettings) -> GenerationLimits:
    rates = {}
    for name in PROVIDERS:
        per_minute, burst = settings.rate_limit(name)
        rates[name] = Limit(per_minute=per_minute, burst=burst)
    return GenerationLimits(
        provider_timeout_s=settings.provider_timeout_s,
        concurrency={name: settings.provider_concurrency(name) for name in PROVIDERS},
        rate=rates,
        consumer_group=settings.consumer_group,
        result_linger_s=settings.result_linger_s,
    )


def generation_runner_config(settings: GeneratorSettings) -> RunnerConfig:
    return runner_config(settings, GENERATE_QUEUE, per_group_limit=settings.per_account_limit)


async def build(settings: GeneratorSettings, *, consume: bool = True) -> GeneratorService:
    """Migrate, open resources and wire the service; nothing runs until `running(service)`.

    `consume=False` builds a runner-only instance (tests run several of them beside one consumer).
    """
    resources = await open_resources(settings, SCHEMA, VERSIONS_DIR)
    render_pool = create_render_pool(settings.render_workers)
    providers = ProviderRegistry(
        openai_base_url=settings.openai_base_url,
        openai_api_key=settings.openai_api_key,
        render_pool=render_pool,
    )
    generation = ImageGeneration(
        pool=resources.pool,
        outbox=resources.outbox,
        blobs=resources.blobs,
        providers=providers,
        buckets=PostgresTokenBucket(resources.pool),
        render_pool=render_pool,
        limits=generation_limits(settings),
    )
    runner = JobRunner(
        resources.pool, SCHEMA, generation_runner_config(settings), generation.handle, generation.on_exhausted
    )
    resources.workers += [runner, FinishedJobsPruner(resources.pool, settings.job_retention_s)]
    consumer = None
    if consume:
        consumer = EventConsumer(
            resources.broker,
            resources.pool,
            consumer_config(settings),
            {
                "image.generation.requested": Batched(
                    partial(accept_requests, schema=SCHEMA, outbox=resources.outbox)
                )
            },
        )
        consumer.register()
    return GeneratorService(settings, resources, generation, runner, consumer, render_pool, providers)


async def close(service: GeneratorService) -> None:
    await service.providers.aclose()
    service.render_pool.shutdown(cancel_futures=True)
    await close_resources(service.resources)


@contextlib.asynccontextmanager
async def generator_running(
    settings: GeneratorSettings, *, consume: bool = True
) -> AsyncIterator[GeneratorService]:
    """The whole service running in this event loop (the app's lifespan, tests and benchmarks)."""
    service = await build(settings, consume=consume)
    try:
        async with running(service.resources, consume=consume):
            yield service
    finally:
        await close(service)
