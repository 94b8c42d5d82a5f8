"""Operators list the request DLQ and replay it: the replayed request is generated."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

from generator.bootstrap import generator_running
from writer_images.testing.fake_openai import FakeOpenAI, content_policy, ok


def run_cli(harness: Any, *args: str) -> str:
    env = {
        **os.environ,
        "WI_KAFKA_BOOTSTRAP": harness.bootstrap,
        "WI_DATABASE_URL": harness.database_url,
        "WI_REPLAY_DEADLINE_S": "120",
    }
    done = subprocess.run(
        [sys.executable, "-m", "generator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


async def test_a_dead_lettered_request_is_listed_and_replayed_into_a_generated_image(
    harness: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(content_policy("No lighthouses today."))
    fake_openai.set_default(ok())
    async with generator_running(harness.settings(openai_base_url=fake_openai.base_url)):
        await harness.publish([harness.request(1000, provider="openai", model="dall-e-2")])
        await harness.dead_letters(lambda found: len(found) == 1)

        listing = await asyncio.to_thread(run_cli, harness, "dlq", "list")
        replay = await asyncio.to_thread(run_cli, harness, "dlq", "replay")
        outcome = await harness.outcome(lambda o: len(o.of("image.generated")) == 1)

    assert "image.generation.requested" in listing
    assert "No lighthouses today." in listing
    assert "1 dead letter(s)" in listing
    assert "replayed 1 event(s)" in replay
    assert outcome.images("image.generated") == {1000}
    assert fake_openai.total_calls == 2
