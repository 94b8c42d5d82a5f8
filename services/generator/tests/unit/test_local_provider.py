"""The local provider: a deterministic picture per prompt, rendered off the event loop."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import statistics
import time
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from generator.adapters.providers import (
    SUPPORTED_MODELS,
    ImageSpec,
    LocalProvider,
    ProviderConfigError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    build_provider,
)
from generator.adapters.providers.local import render_prompt_png
from generator.adapters.render_pool import RenderPool, create_render_pool

PROMPT = "A lighthouse on a cliff at dusk, watercolour"


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[RenderPool]:
    pool = create_render_pool(workers=2)
    # Start both workers now, so process start-up is not mistaken for rendering in the timing tests.
    await asyncio.gather(*(pool.run(render_prompt_png, "warm-up", 64, 64) for _ in range(4)))
    yield pool
    pool.shutdown(cancel_futures=True)


@pytest.fixture
def provider(pool: RenderPool) -> LocalProvider:
    return LocalProvider(pool)


def spec(prompt: str = PROMPT, width: int = 512, height: int = 512) -> ImageSpec:
    return ImageSpec(prompt=prompt, model="local-v1", width=width, height=height)


async def test_same_prompt_and_size_give_the_same_bytes(provider: LocalProvider) -> None:
    first = await provider.generate(spec(), timeout_s=10)
    second = await provider.generate(spec(), timeout_s=10)

    assert first.data == second.data
    assert first.data == render_prompt_png(PROMPT, 512, 512)


async def test_different_prompts_give_different_images(provider: LocalProvider) -> None:
    lighthouse = await provider.generate(spec("a lighthouse"), timeout_s=10)
    forest = await provider.generate(spec("a forest"), timeout_s=10)

    assert lighthouse.data != forest.data


@pytest.mark.parametrize(("width", "height"), [(512, 512), (1280, 720), (640, 960), (1, 1)])
async def test_image_is_a_png_of_the_requested_size(provider: LocalProvider, width: int, height: int) -> None:
    generated = await provider.generate(spec(width=width, height=height), timeout_s=10)

    with Image.open(io.BytesIO(generated.data)) as image:
        assert (image.format, image.size) == ("PNG", (width, height))


async def test_local_images_cost_nothing_and_count_as_one_image(provider: LocalProvider) -> None:
    generated = await provider.generate(spec(), timeout_s=10)

    assert generated.usage.images == 1
    assert generated.usage.estimated_cost_usd == 0.0
    assert (generated.usage.input_tokens, generated.usage.output_tokens) == (None, None)
    assert generated.revised_prompt is None


async def test_rendering_does_not_stall_the_event_loop(provider: LocalProvider) -> None:
    # Each 2048² render takes ~80 ms of CPU: run in the loop, it would stop the ticker for that long.
    gaps: list[float] = []
    batch_done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not batch_done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    renders = [provider.generate(spec(f"prompt {n}", 2048, 2048), timeout_s=30) for n in range(8)]
    images = await asyncio.gather(*renders)
    batch_done.set()
    await ticking

    assert len(images) == 8
    assert len(gaps) >= 10, "the batch should last long enough for the ticker to tick"
    assert max(gaps) < 0.05, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"


def test_a_512_render_takes_well_under_30_ms() -> None:
    render_prompt_png(PROMPT, 512, 512)  # font loading belongs to the first call only
    durations = []
    for _ in range(10):
        started = time.perf_counter()
        render_prompt_png(PROMPT, 512, 512)
        durations.append(time.perf_counter() - started)

    assert statistics.median(durations) < 0.030


async def test_a_render_slower_than_the_timeout_is_a_timeout(provider: LocalProvider) -> None:
    with pytest.raises(ProviderTimeoutError) as raised:
        await provider.generate(spec(width=4096, height=4096), timeout_s=0.01)

    assert raised.value.retryable


async def test_an_unknown_model_is_a_configuration_error(provider: LocalProvider) -> None:
    with pytest.raises(ProviderConfigError) as raised:
        await provider.generate(ImageSpec(PROMPT, "dall-e-3", 512, 512), timeout_s=10)

    assert not raised.value.retryable


@pytest.mark.parametrize(("width", "height"), [(0, 512), (512, -1), (4097, 512)])
async def test_an_impossible_size_is_a_configuration_error(
    provider: LocalProvider, width: int, height: int
) -> None:
    with pytest.raises(ProviderConfigError):
        await provider.generate(spec(width=width, height=height), timeout_s=10)


def test_build_provider_gives_the_local_provider_its_pool(pool: RenderPool) -> None:
    provider = build_provider("local", openai_base_url=None, openai_api_key=None, render_pool=pool)

    assert provider.name == "local"
    assert SUPPORTED_MODELS["local"] == ("local-v1",)


def test_build_provider_refuses_an_unknown_provider() -> None:
    with pytest.raises(ProviderConfigError):
        build_provider("midjourney", openai_base_url=None, openai_api_key=None, render_pool=None)


async def test_a_killed_render_worker_fails_only_the_renders_in_flight_and_the_next_ones_succeed() -> None:
    pool = create_render_pool(workers=2)  # its own: the kill must not reach the other tests' pool
    try:
        provider = LocalProvider(pool)
        worker = await pool.run(os.getpid)
        # Eight 4096² renders keep both workers busy for well over a second.
        in_flight = [
            asyncio.ensure_future(provider.generate(spec(f"big {n}", 4096, 4096), timeout_s=60))
            for n in range(8)
        ]
        await asyncio.sleep(0.3)
        os.kill(worker, signal.SIGKILL)  # as the OOM killer would
        outcomes = await asyncio.gather(*in_flight, return_exceptions=True)
        lost = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        after = await asyncio.gather(*(provider.generate(spec(f"after {n}"), timeout_s=30) for n in range(4)))
    finally:
        pool.shutdown(cancel_futures=True)

    assert lost, "the kill should have caught renders in flight"
    assert all(isinstance(error, ProviderUnavailableError) and error.retryable for error in lost), lost
    assert [image.data for image in after] == [render_prompt_png(f"after {n}", 512, 512) for n in range(4)]
