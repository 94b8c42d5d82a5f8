"""kill -9 of the generator process mid-batch: restarted, every image ends generated exactly once, and every
paid call the kill cut off is in the AI function log once, as interrupted and probably billed."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from writer_images.infra.ports import free_port
from writer_images.testing.fake_openai import FakeOpenAI, ok
from writer_images.testing.processes import ServiceProcess

IMAGES = 12
DALL_E_2_512_USD = 0.018  # dall-e-2's list price at 512x512, the size the harness requests


def generator_process(harness: Any, fake: FakeOpenAI, log_dir: Any) -> ServiceProcess:
    port = free_port()
    env = {
        "WI_DATABASE_URL": harness.database_url,
        "WI_KAFKA_BOOTSTRAP": harness.bootstrap,
        "WI_KAFKA_PARTITIONS": "3",
        "WI_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "WI_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "WI_BLOB_DIR": str(harness.blob_dir),
        "WI_HTTP_PORT": str(port),
        "WI_OPENAI_BASE_URL": fake.base_url,
        "WI_OPENAI_API_KEY": "sk-test",
        "WI_OPENAI_IMAGES_PER_MINUTE": "0",
        "WI_OPENAI_CONCURRENCY": "4",
        "WI_RENDER_WORKERS": "1",
        "WI_JOB_LEASE_S": "2",
        "WI_JOB_POLL_INTERVAL_S": "0.2",
    }
    return ServiceProcess(
        name="generator",
        args=["-m", "generator", "serve"],
        env=env,
        log_path=log_dir / "generator.log",
        health_url=f"http://127.0.0.1:{port}/healthz",
    )


@pytest.mark.slow
async def test_kill_9_mid_batch_then_restart_generates_every_image_once_and_logs_every_paid_call(
    harness: Any, fake_openai: FakeOpenAI, tmp_path: Any
) -> None:
    fake_openai.set_default(ok(latency_s=1.0))
    process = generator_process(harness, fake_openai, tmp_path)
    restarted = None
    await asyncio.to_thread(process.start)
    try:
        await harness.publish(
            [
                harness.request(900 + i, provider="openai", model="dall-e-2", deadline_s=300)
                for i in range(IMAGES)
            ]
        )
        await asyncio.to_thread(fake_openai.wait_for_calls, 6, 30.0)
        process.kill9()
        await asyncio.sleep(0.3)  # requests already on the wire reach the fake
        calls_by_killed_process = fake_openai.total_calls
        at_kill = await call_outcomes(harness)

        def everything_reported(o: Any) -> bool:
            calls = len(o.of("ai.function.called"))
            return len(o.images("image.generated")) == IMAGES and calls >= IMAGES + at_kill["started"]

        restarted = generator_process(harness, fake_openai, tmp_path)
        await asyncio.to_thread(restarted.start)
        outcome = await harness.outcome(everything_reported, timeout_s=60)
        await asyncio.sleep(1.0)  # anything extra would show up now
        outcome = await harness.outcome(everything_reported, timeout_s=10)
        assert restarted.health_url is not None
        ops = restarted.health_url.removesuffix("/healthz")
        async with httpx.AsyncClient() as client:
            ready = await client.get(f"{ops}/readyz")
            metrics = await client.get(f"{ops}/metrics")
    finally:
        process.kill9()
        if restarted is not None:
            restarted.stop()
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert "wi_provider_latency_seconds" in metrics.text
    generated_per_image = Counter(e.payload["image_id"] for e in outcome.of("image.generated"))
    assert generated_per_image == {900 + i: 1 for i in range(IMAGES)}
    # Every call the killed process made was recorded before it was made...
    assert calls_by_killed_process >= 6
    assert calls_by_killed_process <= at_kill["succeeded"] + at_kill["started"]
    # ...and after the restart only the images without a paid result were called again, once each.
    assert fake_openai.total_calls == calls_by_killed_process + (IMAGES - at_kill["succeeded"])
    assert fake_openai.total_calls <= IMAGES + at_kill["started"]
    # The calls the kill cut off may have been billed: each is closed as interrupted and logged once...
    assert at_kill["started"] >= 1
    final = await call_outcomes(harness)
    assert final == {"succeeded": IMAGES, "interrupted": at_kill["started"]}
    logged = outcome.of("ai.function.called")
    assert len({c.payload["call_id"] for c in logged}) == len(logged) == IMAGES + at_kill["started"]
    interrupted = [c.payload for c in logged if not c.payload["success"]]
    assert len(interrupted) == at_kill["started"]
    assert all(c["error"].startswith("interrupted:") for c in interrupted)
    # ...at its estimated cost, so the log's spend counts every call that was paid for.
    assert all(c["estimated_cost_usd"] == DALL_E_2_512_USD for c in interrupted)


async def call_outcomes(harness: Any) -> Counter[str]:
    conn = await harness.db()
    try:
        return Counter(r["outcome"] for r in await conn.fetch("SELECT outcome FROM provider_calls"))
    finally:
        await conn.close()
