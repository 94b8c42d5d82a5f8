"""Pure rules: idempotency keys, rendition plans, the token bucket and failure reasons."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from generator.adapters.providers import (
    ContentPolicyError,
    InvalidProviderOutputError,
    ProviderUnavailableError,
    RateLimitedError,
)
from generator.domain.rules import call_key, job_key, provider_key, rendition_plan, take_token
from generator.service.generation import failure_reason, job_error
from writer_images.events import ImageGenerationRequested, RenditionRequest, utcnow
from writer_images.jobs import FailJob, RetryJob


def request(**overrides: object) -> ImageGenerationRequested:
    values: dict[str, object] = dict(
        task_id=uuid.uuid4(),
        image_id=1,
        content_id=2,
        revision=3,
        prompt="a lighthouse",
        image_type="featured",
        position=0,
        provider="openai",
        model="dall-e-3",
        width=1024,
        height=1024,
        image_format="webp",
        renditions=[RenditionRequest(name="mobile", max_width=640)],
        deadline_at=utcnow() + timedelta(minutes=5),
    )
    values.update(overrides)
    return ImageGenerationRequested.model_validate(values)


def test_a_generation_is_keyed_by_image_and_revision_and_each_paid_call_by_its_attempt() -> None:
    assert job_key(41, 3) == "image:41:3"
    assert call_key(41, 3, 2) == "image:41:3:attempt:2"


def test_openai_is_rate_limited_per_model_and_local_as_one_key() -> None:
    assert provider_key("openai", "dall-e-3") == "openai:dall-e-3"
    assert provider_key("local", "local-v1") == "local"


def test_the_original_comes_first_then_only_the_requested_renditions() -> None:
    plan = rendition_plan(request())
    assert [(r.name, r.max_width) for r in plan] == [("original", None), ("mobile", 640)]


def test_a_full_bucket_gives_a_token_at_once() -> None:
    state = take_token(5.0, 0.0, capacity=5, per_second=5 / 60)
    assert state.wait_s == 0
    assert state.tokens == pytest.approx(4.0)


def test_an_empty_bucket_says_how_long_until_the_next_token() -> None:
    state = take_token(0.0, 0.0, capacity=5, per_second=5 / 60)  # 5 per minute: one every 12 s
    assert state.wait_s == pytest.approx(12.0)


def test_the_bucket_refills_with_time_but_never_beyond_its_capacity() -> None:
    assert take_token(0.0, 6.0, capacity=5, per_second=5 / 60).wait_s == pytest.approx(6.0)
    assert take_token(0.0, 3600.0, capacity=5, per_second=5 / 60).tokens == pytest.approx(4.0)


def test_rate_limits_and_outages_are_retried_honouring_retry_after() -> None:
    retry = job_error(RateLimitedError("slow down", retry_after_s=7))
    assert isinstance(retry, RetryJob)
    assert retry.retry_after_s == 7
    assert isinstance(job_error(ProviderUnavailableError("502 bad gateway")), RetryJob)


def test_content_policy_and_unusable_images_are_final_with_the_providers_words() -> None:
    refusal = job_error(ContentPolicyError("Your prompt was flagged."))
    assert isinstance(refusal, FailJob)
    assert refusal.reason == "refused by the provider's content policy: Your prompt was flagged."
    assert isinstance(job_error(InvalidProviderOutputError("empty image")), FailJob)
    assert failure_reason(InvalidProviderOutputError("empty image")).startswith("the provider returned")
