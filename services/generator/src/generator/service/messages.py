"""The events the generator emits, each caused by the request envelope it answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from writer_images.dlq import dead_letter_event
from writer_images.events import (
    AiFunctionCalled,
    Envelope,
    ImageGenerated,
    ImageGenerationFailed,
    ImageGenerationProgress,
    ImageGenerationRequested,
    OutgoingEvent,
    Payload,
    make_event,
)

Stage = Literal["queued", "generating", "storing"]
_PERCENT: dict[Stage, int] = {"queued": 0, "generating": 10, "storing": 80}


def _answer(envelope: Envelope, payload: Payload) -> OutgoingEvent:
    return make_event(
        payload,
        account_id=envelope.account_id,
        correlation_id=envelope.correlation_id,
        causation_id=str(envelope.event_id),
    )


def progress(
    envelope: Envelope, request: ImageGenerationRequested, stage: Stage, attempt: int = 1
) -> OutgoingEvent:
    return _answer(
        envelope,
        ImageGenerationProgress(
            task_id=request.task_id,
            image_id=request.image_id,
            content_id=request.content_id,
            revision=request.revision,
            stage=stage,
            percent=_PERCENT[stage],
            attempt=max(1, attempt),
        ),
    )


def generated(envelope: Envelope, result: ImageGenerated) -> OutgoingEvent:
    return _answer(envelope, result)


def generated_for_request(stored: ImageGenerated, request: ImageGenerationRequested) -> ImageGenerated:
    """A stored result answering a later request for the same revision: it belongs to that request's task."""
    return stored.model_copy(update={"task_id": request.task_id})


def failed(
    envelope: Envelope, request: ImageGenerationRequested, *, reason: str, retryable: bool, attempts: int
) -> OutgoingEvent:
    return _answer(
        envelope,
        ImageGenerationFailed(
            task_id=request.task_id,
            image_id=request.image_id,
            content_id=request.content_id,
            revision=request.revision,
            reason=reason,
            retryable=retryable,
            attempts=attempts,
        ),
    )


def ai_function_called(
    envelope: Envelope,
    request: ImageGenerationRequested,
    *,
    call_id: uuid.UUID,
    called_at: datetime,
    latency_ms: int,
    estimated_cost_usd: float,
    input_tokens: int | None,
    output_tokens: int | None,
    error: str | None,
) -> OutgoingEvent:
    return _answer(
        envelope,
        AiFunctionCalled(
            call_id=call_id,
            task_id=request.task_id,
            image_id=request.image_id,
            content_id=request.content_id,
            provider=request.provider,
            model=request.model,
            prompt=request.prompt,
            size=f"{request.width}x{request.height}",
            latency_ms=latency_ms,
            images=0 if error else 1,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            estimated_cost_usd=estimated_cost_usd,
            success=error is None,
            error=error,
            called_at=called_at,
        ),
    )


def dead_letter(envelope: Envelope, *, reason: str, attempts: int, group_id: str) -> OutgoingEvent:
    """A DLQ record shaped like the consumer's own dead letters, carrying the original envelope."""
    return dead_letter_event(envelope, reason=reason, attempts=attempts, group_id=group_id)
