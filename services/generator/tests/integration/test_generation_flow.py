"""The generator in this process, fed through the real broker and Postgres as images-api would feed it."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

from generator.bootstrap import generator_running
from generator.domain.rules import job_key
from writer_images.testing.fake_openai import FakeOpenAI, content_policy, hang, ok, rate_limited
from writer_images.testing.waiting import eventually


def _blob_exists(blob_dir: Path, key: str) -> bool:
    return (blob_dir / key).is_file()


async def test_four_images_with_the_local_provider_are_generated_with_renditions_in_the_blob_store(
    harness: Any,
) -> None:
    requests = [harness.request(100 + i, position=i) for i in range(4)]

    async with generator_running(harness.settings()):
        await harness.publish(requests)
        outcome = await harness.outcome(
            lambda o: len(o.images("image.generated")) == 4 and len(o.of("ai.function.called")) == 4
        )

    generated = outcome.of("image.generated")
    assert sorted(e.payload["image_id"] for e in generated) == [100, 101, 102, 103]
    for event in generated:
        renditions = {r["name"]: r for r in event.payload["renditions"]}
        assert set(renditions) == {"original", "desktop", "mobile"}
        assert (
            renditions["original"]["width"],
            renditions["desktop"]["width"],
            renditions["mobile"]["width"],
        ) == (
            512,
            512,
            256,
        )
        assert all(r["content_type"] == "image/jpeg" for r in renditions.values())
        assert all(_blob_exists(harness.blob_dir, r["blob_key"]) for r in renditions.values())
    calls = outcome.of("ai.function.called")
    assert all(c.payload["success"] and c.payload["provider"] == "local" for c in calls)
    assert {c.payload["image_id"] for c in calls} == {100, 101, 102, 103}
    for image_id in range(100, 104):
        stages = [p.payload["stage"] for p in outcome.of("image.generation.progress", image_id)]
        assert stages == [
            "queued",
            "generating",
        ]  # local renders are not paid calls: no separate storing step


async def test_a_finished_job_is_deleted_once_its_retention_has_passed_and_its_result_stays(
    harness: Any,
) -> None:
    settings = harness.settings(job_retention_s=3600)
    key = job_key(300, 1)
    async with generator_running(settings):
        await harness.publish([harness.request(300)])
        await harness.outcome(lambda o: len(o.images("image.generated")) == 1)
    conn = await harness.db()
    try:
        assert await conn.fetchval("SELECT status FROM jobs WHERE dedupe_key = $1", key) == "done"
        await conn.execute(
            "UPDATE jobs SET updated_at = now() - interval '2 hours' WHERE dedupe_key = $1", key
        )

        async with generator_running(settings):  # the pruner's first turn comes as the service starts
            await eventually(
                lambda: conn.fetchval("SELECT count(*) FROM jobs WHERE dedupe_key = $1", key),
                lambda left: left == 0,
                what="the finished job's prune",
                timeout_s=10,
            )

        assert await conn.fetchval("SELECT count(*) FROM results WHERE image_id = 300") == 1
    finally:
        await conn.close()


async def test_a_duplicated_request_re_emits_the_stored_result_without_a_second_provider_call(
    harness: Any, fake_openai: FakeOpenAI
) -> None:
    first = harness.request(200, provider="openai", model="dall-e-2")
    later_task = uuid.uuid4()
    re_request = harness.request(200, provider="openai", model="dall-e-2", task_id=later_task)

    async with generator_running(harness.settings(openai_base_url=fake_openai.base_url)):
        await harness.publish([first, first])  # a redelivery: same event id
        await harness.outcome(lambda o: len(o.of("image.generated")) == 1)
        await harness.publish([re_request])  # the sweeper or a new task: same revision, new event id
        outcome = await harness.outcome(lambda o: len(o.of("image.generated")) == 2)

    assert fake_openai.total_calls == 1
    generated = outcome.of("image.generated")
    assert generated[0].payload["renditions"] == generated[1].payload["renditions"]
    assert generated[1].payload["task_id"] == str(later_task)
    assert len(outcome.of("ai.function.called")) == 1


async def test_a_429_with_retry_after_is_waited_out_then_the_image_is_generated(
    harness: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(rate_limited(retry_after_s=1), ok())
    async with generator_running(harness.settings(openai_base_url=fake_openai.base_url)):
        await harness.publish([harness.request(300, provider="openai", model="dall-e-2")])
        # Both calls' log events too: they travel on another topic and may arrive after the result.
        outcome = await harness.outcome(
            lambda o: len(o.of("image.generated")) == 1 and len(o.of("ai.function.called")) == 2
        )
        conn = await harness.db()
        starts = await conn.fetch("SELECT started_at, outcome FROM provider_calls ORDER BY attempt")
        await conn.close()

    assert fake_openai.total_calls == 2
    assert [s["outcome"] for s in starts] == ["failed", "succeeded"]
    assert (starts[1]["started_at"] - starts[0]["started_at"]).total_seconds() >= 1.0
    calls = sorted(outcome.of("ai.function.called"), key=lambda c: c.payload["called_at"])
    assert [c.payload["success"] for c in calls] == [False, True]
    assert "rate limited" in calls[0].payload["error"]


async def test_a_hanging_provider_ends_failed_with_a_timeout_reason_and_a_dead_letter(
    harness: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.set_default(hang())
    settings = harness.settings(
        openai_base_url=fake_openai.base_url, provider_timeout_s=0.5, job_max_attempts=2
    )
    async with generator_running(settings):
        await harness.publish([harness.request(400, provider="openai", model="dall-e-2")])
        outcome = await harness.outcome(lambda o: len(o.of("image.generation.failed")) == 1)
        fake_openai.reset()

    failure = outcome.of("image.generation.failed")[0].payload
    assert failure["reason"].startswith("timed out")
    assert "0.5s" in failure["reason"]
    assert failure["retryable"] is True
    assert failure["attempts"] == 2
    letters = await harness.dead_letters(lambda found: len(found) == 1)
    assert letters[0]["original"]["payload"]["image_id"] == 400
    assert letters[0]["reason"].startswith("timed out")


async def test_a_content_policy_refusal_fails_at_once_with_the_providers_message(
    harness: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.set_default(content_policy("Your prompt mentions a forbidden lighthouse."))
    async with generator_running(harness.settings(openai_base_url=fake_openai.base_url)):
        await harness.publish([harness.request(500, provider="openai", model="dall-e-2")])
        outcome = await harness.outcome(
            lambda o: len(o.of("image.generation.failed")) == 1 and len(o.of("ai.function.called")) == 1
        )

    failure = outcome.of("image.generation.failed")[0].payload
    assert failure["retryable"] is False
    assert failure["attempts"] == 1
    assert "Your prompt mentions a forbidden lighthouse." in failure["reason"]
    assert fake_openai.total_calls == 1
    assert outcome.of("ai.function.called")[0].payload["success"] is False


async def test_a_request_past_its_deadline_fails_without_a_provider_call(
    harness: Any, fake_openai: FakeOpenAI
) -> None:
    async with generator_running(harness.settings(openai_base_url=fake_openai.base_url)):
        await harness.publish([harness.request(600, provider="openai", model="dall-e-2", deadline_s=-1)])
        outcome = await harness.outcome(lambda o: len(o.of("image.generation.failed")) == 1)

    assert "deadline passed" in outcome.of("image.generation.failed")[0].payload["reason"]
    assert fake_openai.total_calls == 0


async def test_a_poison_request_lands_in_the_dlq_and_the_consumer_keeps_going(harness: Any) -> None:
    async with generator_running(harness.settings()):
        await harness.publish_raw([("image.generation.requested", b"501", b'{"not": "an envelope"')])
        await harness.publish([harness.request(700)])
        outcome = await harness.outcome(lambda o: len(o.of("image.generated")) == 1)
        letters = await harness.dead_letters(lambda found: len(found) == 1)

    assert outcome.images("image.generated") == {700}
    assert letters[0]["reason"].startswith("malformed event")


async def test_the_rate_limit_is_shared_by_two_generator_instances(
    harness: Any, fake_openai: FakeOpenAI
) -> None:
    per_second = 4
    settings = harness.settings(
        openai_base_url=fake_openai.base_url,
        openai_images_per_minute=per_second * 60,
        openai_burst=1,
        per_account_limit=4,  # so that each instance takes only half of the account's images
    )
    used: dict[str, int] = {"consumer": 0, "runner_only": 0}
    async with generator_running(settings) as first, generator_running(settings, consume=False) as second:
        for name, service in (("consumer", first), ("runner_only", second)):
            original_get = service.providers.get

            def counting_get(provider: str, name: str = name, original_get: Any = original_get) -> Any:
                used[name] += 1
                return original_get(provider)

            service.providers.get = counting_get  # type: ignore[method-assign]
        await harness.publish(
            [harness.request(800 + i, provider="openai", model="dall-e-2") for i in range(8)]
        )
        await harness.outcome(lambda o: len(o.images("image.generated")) == 8)
        conn = await harness.db()
        starts = [
            r["started_at"]
            for r in await conn.fetch("SELECT started_at FROM provider_calls ORDER BY started_at")
        ]
        await conn.close()

    assert len(starts) == 8
    # One bucket for both: 8 calls need 7 refills (1.75 s). Two separate buckets would have needed 0.75 s.
    # (Single gaps are not compared: under load the recorded start of a call lags its token by a few ms.)
    span = (starts[-1] - starts[0]).total_seconds()
    assert span >= 7 / per_second * 0.9, [s.isoformat() for s in starts]
    assert used["consumer"] > 0 and used["runner_only"] > 0, used


async def test_calls_to_one_provider_never_exceed_its_concurrency_bound(
    harness: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.set_default(ok(latency_s=0.3))
    async with generator_running(
        harness.settings(openai_base_url=fake_openai.base_url, openai_concurrency=2)
    ):
        await harness.publish(
            [harness.request(1100 + i, provider="openai", model="dall-e-2") for i in range(6)]
        )
        await harness.outcome(lambda o: len(o.images("image.generated")) == 6)

    assert fake_openai.max_in_flight == 2


async def test_a_render_worker_killed_by_the_os_costs_no_image(harness: Any, fake_openai: FakeOpenAI) -> None:
    local = [harness.request(1200 + i, position=i) for i in range(4)]
    paid = harness.request(1210, provider="openai", model="dall-e-2")  # its renditions use the pool too

    async with generator_running(harness.settings(openai_base_url=fake_openai.base_url)) as service:
        worker = await service.render_pool.run(os.getpid)
        os.kill(worker, signal.SIGKILL)  # as the OOM killer would
        await harness.publish([*local, paid])
        outcome = await harness.outcome(
            lambda o: len(o.images("image.generated") | o.images("image.generation.failed")) == 5
        )

    assert outcome.images("image.generation.failed") == set()
    assert outcome.images("image.generated") == {1200, 1201, 1202, 1203, 1210}
