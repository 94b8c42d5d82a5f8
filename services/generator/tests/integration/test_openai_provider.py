"""The openai provider against a real HTTP server speaking OpenAI's image API, through the real SDK.

Decision (malformed responses): a body that is not JSON is a transport failure -> ProviderUnavailableError,
retryable; a well-formed answer whose image does not decode -> InvalidProviderOutputError, not retryable.
"""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from PIL import Image

from generator.adapters.providers import (
    SUPPORTED_MODELS,
    ContentPolicyError,
    ImageSpec,
    InvalidProviderOutputError,
    OpenAIProvider,
    ProviderConfigError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    build_provider,
)
from writer_images.testing.fake_openai import (
    FakeOpenAI,
    content_policy,
    error_body,
    fail_with,
    garbage_image,
    hang,
    malformed_json,
    ok,
    rate_limited,
    server_error,
    url_response,
)

DALL_E_3_SQUARE = ImageSpec(prompt="a red bicycle by a canal", model="dall-e-3", width=1024, height=1024)


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI.start() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAI) -> FakeOpenAI:
    fake_server.reset()
    return fake_server


@pytest.fixture
async def provider(fake: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(api_key="sk-test", base_url=fake.base_url)
    yield provider
    await provider.aclose()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


async def failure_of(provider: OpenAIProvider, spec: ImageSpec = DALL_E_3_SQUARE) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        await provider.generate(spec, timeout_s=5)
    return raised.value


async def test_base64_answer_gives_the_image_and_the_revised_prompt(
    provider: OpenAIProvider, fake: FakeOpenAI
) -> None:
    generated = await provider.generate(DALL_E_3_SQUARE, timeout_s=5)

    assert size_of(generated.data) == (1024, 1024)
    assert generated.revised_prompt == "A detailed illustration: a red bicycle by a canal"
    [request] = fake.requests
    assert (request.model, request.n, request.size, request.response_format) == (
        "dall-e-3",
        1,
        "1024x1024",
        "b64_json",
    )
    assert request.headers["authorization"] == "Bearer sk-test"


async def test_url_answer_is_downloaded_at_once(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    fake.script(url_response())

    generated = await provider.generate(DALL_E_3_SQUARE, timeout_s=5)

    assert size_of(generated.data) == (1024, 1024)
    assert fake.downloads == 1


async def test_rate_limit_carries_retry_after_and_costs_exactly_one_call(
    provider: OpenAIProvider, fake: FakeOpenAI
) -> None:
    fake.script(rate_limited(retry_after_s=1))

    error = await failure_of(provider)

    assert isinstance(error, RateLimitedError)
    assert (error.retryable, error.retry_after_s, error.status_code) == (True, 1.0, 429)
    assert fake.total_calls == 1  # the SDK's own retries are off: the caller decides when to try again


async def test_retry_after_ms_is_preferred_for_its_precision(
    provider: OpenAIProvider, fake: FakeOpenAI
) -> None:
    fake.script(rate_limited(retry_after_s=2, retry_after_ms=1500))

    error = await failure_of(provider)

    assert isinstance(error, RateLimitedError)
    assert error.retry_after_s == 1.5


async def test_out_of_quota_429_is_not_retryable(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    body = error_body(
        "You exceeded your current quota.", error_type="insufficient_quota", code="insufficient_quota"
    )
    fake.script(fail_with(429, body))

    error = await failure_of(provider)

    assert isinstance(error, ProviderConfigError)
    assert not error.retryable


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable_unavailability(
    provider: OpenAIProvider, fake: FakeOpenAI, status: int
) -> None:
    fake.script(server_error(status))

    error = await failure_of(provider)

    assert isinstance(error, ProviderUnavailableError)
    assert (error.retryable, error.status_code) == (True, status)
    assert fake.total_calls == 1


async def test_unreachable_server_is_retryable_unavailability() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    provider = OpenAIProvider(api_key="sk-test", base_url=f"http://127.0.0.1:{closed_port}/v1")
    try:
        error = await failure_of(provider)
    finally:
        await provider.aclose()

    assert isinstance(error, ProviderUnavailableError)
    assert error.retryable


async def test_content_policy_refusal_surfaces_the_message_and_is_final(
    provider: OpenAIProvider, fake: FakeOpenAI
) -> None:
    fake.script(content_policy("Your prompt may contain text that is not allowed by our safety system."))

    error = await failure_of(provider)

    assert isinstance(error, ContentPolicyError)
    assert error.message == "Your prompt may contain text that is not allowed by our safety system."
    assert not error.retryable
    assert fake.total_calls == 1


async def test_invalid_json_is_retryable_unavailability(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    fake.script(malformed_json())

    error = await failure_of(provider)

    assert isinstance(error, ProviderUnavailableError)
    assert error.retryable


async def test_non_json_body_is_retryable_unavailability(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    fake.script(fail_with(200, b"<html>upstream gone</html>", {"content-type": "text/html"}))

    error = await failure_of(provider)

    assert isinstance(error, ProviderUnavailableError)


async def test_undecodable_image_is_invalid_output_and_not_retried(
    provider: OpenAIProvider, fake: FakeOpenAI
) -> None:
    fake.script(garbage_image())

    error = await failure_of(provider)

    assert isinstance(error, InvalidProviderOutputError)
    assert not error.retryable


async def test_answer_without_an_image_is_invalid_output(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    fake.script(fail_with(200, {"created": 1700000000, "data": []}))

    error = await failure_of(provider)

    assert isinstance(error, InvalidProviderOutputError)


async def test_a_hanging_server_ends_as_a_timeout_on_time(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    fake.script(hang())
    started = time.monotonic()

    with pytest.raises(ProviderTimeoutError) as raised:
        await provider.generate(DALL_E_3_SQUARE, timeout_s=0.5)

    assert time.monotonic() - started < 0.5 + 0.3
    assert raised.value.retryable
    assert fake.total_calls == 1


@pytest.mark.parametrize(
    ("status", "code"), [(401, "invalid_api_key"), (403, None), (404, "model_not_found")]
)
async def test_access_and_model_errors_are_configuration_errors(
    provider: OpenAIProvider, fake: FakeOpenAI, status: int, code: str | None
) -> None:
    fake.script(fail_with(status, error_body("nope", error_type="invalid_request_error", code=code)))

    error = await failure_of(provider)

    assert isinstance(error, ProviderConfigError)
    assert (error.retryable, error.status_code) == (False, status)


async def test_an_unknown_model_is_refused_before_any_call(
    provider: OpenAIProvider, fake: FakeOpenAI
) -> None:
    error = await failure_of(provider, ImageSpec("a cat", "dall-e-9", 1024, 1024))

    assert isinstance(error, ProviderConfigError)
    assert fake.total_calls == 0


@pytest.mark.parametrize(
    ("model", "width", "height", "sent_size"),
    [
        ("dall-e-3", 1280, 720, "1792x1024"),
        ("dall-e-3", 720, 1280, "1024x1792"),
        ("dall-e-3", 800, 800, "1024x1024"),
        ("dall-e-2", 300, 300, "512x512"),
        ("dall-e-2", 200, 120, "256x256"),
        ("dall-e-2", 2000, 1000, "1024x1024"),
        ("gpt-image-1", 1280, 720, "1536x1024"),
        ("gpt-image-1", 640, 960, "1024x1536"),
    ],
)
async def test_requested_size_maps_to_the_closest_supported_size(
    provider: OpenAIProvider, fake: FakeOpenAI, model: str, width: int, height: int, sent_size: str
) -> None:
    await provider.generate(ImageSpec("a harbour", model, width, height), timeout_s=5)

    assert fake.requests[0].size == sent_size


async def test_dall_e_3_standard_square_is_estimated_at_4_cents(provider: OpenAIProvider) -> None:
    generated = await provider.generate(DALL_E_3_SQUARE, timeout_s=5)

    assert generated.usage.estimated_cost_usd == pytest.approx(0.04)
    assert (generated.usage.images, generated.usage.input_tokens) == (1, None)


async def test_dall_e_3_hd_wide_is_estimated_at_12_cents(provider: OpenAIProvider) -> None:
    generated = await provider.generate(ImageSpec("a harbour", "dall-e-3", 1792, 1024, "hd"), timeout_s=5)

    assert generated.usage.estimated_cost_usd == pytest.approx(0.12)


async def test_the_price_known_before_a_call_is_the_estimate_of_its_answer(provider: OpenAIProvider) -> None:
    spec = ImageSpec("a harbour", "dall-e-3", 1792, 1024, "hd")

    before = provider.list_price_usd(spec)  # what a call cut off by a crash is counted as
    generated = await provider.generate(spec, timeout_s=5)

    assert before == generated.usage.estimated_cost_usd == pytest.approx(0.12)


def test_a_spec_refused_before_any_call_is_priced_at_nothing(provider: OpenAIProvider) -> None:
    assert provider.list_price_usd(ImageSpec("a harbour", "dall-e-9", 1024, 1024)) == 0.0


async def test_gpt_image_sends_no_response_format_and_is_priced_by_tokens(
    provider: OpenAIProvider, fake: FakeOpenAI
) -> None:
    generated = await provider.generate(
        ImageSpec("a quiet harbour", "gpt-image-1", 1024, 1024, "low"), timeout_s=5
    )

    [request] = fake.requests
    assert "response_format" not in request.body
    assert request.quality == "low"
    assert (generated.usage.input_tokens, generated.usage.output_tokens) == (3, 272)
    assert generated.usage.estimated_cost_usd == pytest.approx(3 * 5 / 1e6 + 272 * 40 / 1e6)
    assert generated.revised_prompt is None


async def test_an_unsupported_quality_is_refused_before_any_call(
    provider: OpenAIProvider, fake: FakeOpenAI
) -> None:
    error = await failure_of(provider, ImageSpec("a cat", "gpt-image-1", 1024, 1024, "hd"))

    assert isinstance(error, ProviderConfigError)
    assert fake.total_calls == 0


async def test_sixteen_slow_calls_run_concurrently(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    fake.set_default(ok(latency_s=0.4))
    started = time.monotonic()

    await asyncio.gather(
        *(provider.generate(ImageSpec(f"scene {n}", "dall-e-3", 1024, 1024), timeout_s=5) for n in range(16))
    )

    assert time.monotonic() - started < 1.5  # 16 × 0.4 s = 6.4 s if they were serialised
    assert fake.max_in_flight == 16
    assert fake.calls_per_prompt == {f"scene {n}": 1 for n in range(16)}


async def test_build_provider_points_the_sdk_at_the_configured_server(fake: FakeOpenAI) -> None:
    provider = build_provider(
        "openai", openai_base_url=fake.base_url, openai_api_key="sk-built", render_pool=None
    )
    try:
        await provider.generate(DALL_E_3_SQUARE, timeout_s=5)
    finally:
        await provider.aclose()

    assert provider.name == "openai"
    assert fake.requests[0].headers["authorization"] == "Bearer sk-built"
    assert SUPPORTED_MODELS["openai"] == ("dall-e-3", "dall-e-2", "gpt-image-1")


def test_build_provider_refuses_openai_without_a_key() -> None:
    with pytest.raises(ProviderConfigError):
        build_provider("openai", openai_base_url=None, openai_api_key=None, render_pool=None)
