"""Pure rules of generation: keys, deadlines, renditions, token buckets and failure reasons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from generator.adapters.imaging import RenditionSpec
from writer_images.events import ImageGenerationRequested

GENERATE_QUEUE = "generate"

# A paid call whose generator stopped during it: no answer was read, yet the provider may have made (and
# billed) the image. How long it ran is unknown; its log entry gives the time until it was closed.
INTERRUPTED_CALL = (
    "interrupted: the generator stopped during the call; the provider may have billed it"
    " (latency: the time until the call was closed)"
)


def job_key(image_id: int, revision: int) -> str:
    """The idempotency key of a generation: the image and its prompt/settings revision."""
    return f"image:{image_id}:{revision}"


def call_key(image_id: int, revision: int, attempt: int) -> str:
    """The idempotency key of one paid provider call."""
    return f"{job_key(image_id, revision)}:attempt:{attempt}"


def provider_key(provider: str, model: str) -> str:
    """What a rate limit counts: OpenAI limits each model separately; local has one key."""
    return provider if provider == "local" else f"{provider}:{model}"


def deadline_passed(deadline_at: datetime, now: datetime) -> bool:
    return now >= deadline_at


def seconds_left(deadline_at: datetime, now: datetime) -> float:
    return (deadline_at - now).total_seconds()


def rendition_plan(request: ImageGenerationRequested) -> list[RenditionSpec]:
    """The original (in the requested format, full size) first, then each requested rendition."""
    return [
        RenditionSpec("original", None),
        *(RenditionSpec(r.name, r.max_width) for r in request.renditions),
    ]


@dataclass(frozen=True)
class BucketState:
    tokens: float
    wait_s: float  # 0 when a token was taken


def take_token(tokens: float, elapsed_s: float, *, capacity: int, per_second: float) -> BucketState:
    """Refill for the time elapsed, then take one token, or say how long until one is there."""
    refilled = min(float(capacity), tokens + max(0.0, elapsed_s) * per_second)
    if refilled >= 1.0:
        return BucketState(tokens=refilled - 1.0, wait_s=0.0)
    return BucketState(tokens=refilled, wait_s=(1.0 - refilled) / per_second)
