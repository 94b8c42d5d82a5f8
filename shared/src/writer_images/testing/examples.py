"""One valid example payload per event contract (tests and docs use them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from writer_images import events

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TASK = uuid.UUID("01937000-0000-7000-8000-000000000001")

EXAMPLES: dict[type[events.Payload], dict[str, Any]] = {
    events.SiteChanged: dict(
        site_id=3,
        site_key="k",
        name="Blog",
        base_url="https://blog.example",
        username="bot",
        application_password_encrypted="x",
        webhook_secret_encrypted="y",
        revision=1,
    ),
    events.ImageGenerationRequested: dict(
        task_id=TASK,
        image_id=7,
        content_id=42,
        revision=1,
        prompt="a fox",
        image_type="featured",
        position=0,
        provider="local",
        model="local-v1",
        width=512,
        height=512,
        image_format="jpg",
        renditions=[{"name": "desktop", "max_width": 1280}],
        deadline_at=NOW,
    ),
    events.ImageGenerationProgress: dict(
        task_id=TASK, image_id=7, content_id=42, revision=1, stage="generating", percent=30
    ),
    events.ImageGenerated: dict(
        task_id=TASK,
        image_id=7,
        content_id=42,
        revision=1,
        provider="local",
        model="local-v1",
        renditions=[
            {
                "name": "desktop",
                "blob_key": "ab/cd.jpg",
                "width": 512,
                "height": 512,
                "format": "jpg",
                "content_type": "image/jpeg",
                "bytes": 100,
                "sha256": "abcd",
            }
        ],
    ),
    events.ImageGenerationFailed: dict(
        task_id=TASK, image_id=7, content_id=42, revision=1, reason="timeout", retryable=True, attempts=3
    ),
    events.AiFunctionCalled: dict(
        call_id=TASK,
        task_id=TASK,
        image_id=7,
        content_id=42,
        provider="openai",
        model="dall-e-3",
        prompt="a fox",
        size="1024x1024",
        latency_ms=1200,
        images=1,
        estimated_cost_usd=0.04,
        success=True,
        called_at=NOW,
    ),
    events.ContentPublishRequested: dict(
        publication_id=1,
        attempt_id=TASK,
        content_id=42,
        site_id=3,
        publication_key="wi-1-42-3",
        action="publish",
        title="T",
        html="<p>x</p>",
        wp_status="publish",
        images=[],
        deadline_at=NOW,
    ),
    events.ContentPublished: dict(
        publication_id=1,
        attempt_id=TASK,
        content_id=42,
        site_id=3,
        external_id="5678",
        external_url="https://blog.example/t/",
        wp_status="publish",
        sync_status="published",
        featured_media_id=9,
        media_ids={"7": 9},
    ),
    events.ContentPublishFailed: dict(
        publication_id=1,
        attempt_id=TASK,
        content_id=42,
        site_id=3,
        reason="401",
        code="auth",
        retryable=False,
        attempts=1,
    ),
    events.WordPressPostChanged: dict(
        site_id=3,
        post_id="5678",
        wp_status="draft",
        modified_gmt=NOW,
        link=None,
        source="webhook",
        observed_at=NOW,
    ),
}


def example(model: type[events.Payload]) -> events.Payload:
    return model.model_validate(EXAMPLES[model])
