"""Use cases: accept a generation request (consumer) and generate one image (job).

Accepting is database work only: the request becomes a durable job in the transaction that records the
event in the inbox. Generating runs in the job runner: provider call (rate-limited, bounded, timed out,
recorded before it is made), bytes into the blob store at once, renditions in the render pool, then one
transaction with the result, the `ai.function.called` and `image.generated` events and the job's completion.
A paid call that an earlier attempt left open (its process died during it) is closed and reported as
interrupted by the next attempt, or by the job's failure, before anything else.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from generator.adapters import repository
from generator.adapters.imaging import RenditionSpec
from generator.adapters.provider_registry import ProviderRegistry
from generator.adapters.providers import (
    ContentPolicyError,
    GeneratedImage,
    ImageProvider,
    ImageSpec,
    InvalidProviderOutputError,
    LocalProvider,
    ProviderConfigError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
)
from generator.adapters.rate_limit import Limit, PostgresTokenBucket
from generator.adapters.render_pool import RenderPool
from generator.adapters.rendition_files import render_renditions_to_files
from generator.domain.rules import (
    GENERATE_QUEUE,
    INTERRUPTED_CALL,
    deadline_passed,
    job_key,
    provider_key,
    rendition_plan,
    seconds_left,
)
from generator.service import messages
from writer_images import jobs, metrics
from writer_images.blobstore import FilesystemBlobStore
from writer_images.consumer import IncomingEvent
from writer_images.events import (
    Envelope,
    ImageGenerated,
    ImageGenerationRequested,
    OutgoingEvent,
    utcnow,
)
from writer_images.events import Rendition as StoredRendition
from writer_images.group_writer import GroupWriter
from writer_images.jobs import FailJob, Job, RetryJob
from writer_images.logging import get_logger
from writer_images.outbox import Outbox

log = get_logger(__name__)


async def accept_requests(
    conn: asyncpg.Connection, batch: Sequence[IncomingEvent], *, schema: str, outbox: Outbox
) -> None:
    """`image.generation.requested` → jobs keyed by image and revision, and their `queued` notices, in two
    statements for the whole batch; a request past its deadline with no stored result fails cleanly."""
    accepted: list[tuple[Envelope, ImageGenerationRequested]] = []
    refused: list[OutgoingEvent] = []
    for event in batch:
        request = event.payload
        assert isinstance(request, ImageGenerationRequested)
        if deadline_passed(request.deadline_at, utcnow()) and (
            await repository.stored_result(conn, request.image_id, request.revision) is None
        ):
            reason = f"deadline passed before generation started (deadline {request.deadline_at.isoformat()})"
            refused.append(
                messages.failed(event.envelope, request, reason=reason, retryable=True, attempts=0)
            )
        else:
            accepted.append((event.envelope, request))
    armed = await jobs.enqueue_many(
        conn,
        schema,
        GENERATE_QUEUE,
        [
            jobs.NewJob(
                dedupe_key=job_key(request.image_id, request.revision),
                group_key=str(envelope.account_id),
                payload={"envelope": envelope.model_dump(mode="json")},
            )
            for envelope, request in accepted
        ],
    )
    queued = []
    for envelope, request in accepted:
        key = job_key(request.image_id, request.revision)
        if key in armed:
            armed.discard(key)  # a request given twice in the batch is announced once
            queued.append(messages.progress(envelope, request, "queued"))
    await outbox.write(conn, [*refused, *queued])


@dataclass(frozen=True)
class GenerationLimits:
    provider_timeout_s: float
    concurrency: dict[str, int]
    rate: dict[str, Limit]
    consumer_group: str
    result_linger_s: float = 0.0

    def concurrency_of(self, provider: str) -> int:
        return self.concurrency.get(provider, 4)

    def rate_of(self, provider: str) -> Limit:
        return self.rate.get(provider, Limit(per_minute=0, burst=1))


@dataclass(frozen=True)
class ProviderOutput:
    data: bytes
    call_id: uuid.UUID
    called_at: datetime
    revised_prompt: str | None
    latency_ms: int
    estimated_cost_usd: float
    input_tokens: int | None
    output_tokens: int | None

    @classmethod
    def of(
        cls, image: GeneratedImage, call_id: uuid.UUID, called_at: datetime, latency_ms: int
    ) -> ProviderOutput:
        return cls(
            data=image.data,
            call_id=call_id,
            called_at=called_at,
            revised_prompt=image.revised_prompt,
            latency_ms=latency_ms,
            estimated_cost_usd=image.usage.estimated_cost_usd,
            input_tokens=image.usage.input_tokens,
            output_tokens=image.usage.output_tokens,
        )


class ImageGeneration:
    """The job handler of the `generate` queue and its exhaustion handler."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        outbox: Outbox,
        blobs: FilesystemBlobStore,
        providers: ProviderRegistry,
        buckets: PostgresTokenBucket,
        render_pool: RenderPool,
        limits: GenerationLimits,
    ) -> None:
        self._pool = pool
        self._outbox = outbox
        self._blobs = blobs
        self._providers = providers
        self._buckets = buckets
        self._render_pool = render_pool
        self._limits = limits
        self._slots: dict[str, asyncio.Semaphore] = {}
        # Jobs start in bursts (a claim takes several): each burst's `generating` announcements are written in
        # one statement. They finish one at a time (a render pool returns one result at a time), so results
        # linger a little for company before their statement is written.
        self._announcements: GroupWriter[repository.Announcement, ImageGenerated | None] = GroupWriter(
            self._announce_group
        )
        self._results: GroupWriter[repository.FinishedResult, bool] = GroupWriter(
            self._commit_group, linger_s=limits.result_linger_s
        )

    async def handle(self, job: Job) -> None:
        envelope = Envelope.model_validate(job.payload["envelope"])
        request = ImageGenerationRequested.model_validate(envelope.payload)
        stored = await self._begin(job, envelope, request)
        if stored is not None:
            await self._reemit(job, envelope, request, stored)
            return
        output, renditions = await self._generate(job, envelope, request)
        result = ImageGenerated(
            task_id=request.task_id,
            image_id=request.image_id,
            content_id=request.content_id,
            revision=request.revision,
            provider=request.provider,
            model=request.model,
            revised_prompt=output.revised_prompt,
            renditions=renditions,
        )
        called = messages.ai_function_called(
            envelope,
            request,
            call_id=output.call_id,
            called_at=output.called_at,
            latency_ms=output.latency_ms,
            estimated_cost_usd=output.estimated_cost_usd,
            input_tokens=output.input_tokens,
            output_tokens=output.output_tokens,
            error=None,
        )
        completed = await self._results.submit(
            repository.FinishedResult(
                result=result,
                account_id=envelope.account_id,
                job_id=job.id,
                lease_owner=job.lease_owner,
                events=[called],
                # Only for a result not stored before: another runner whose lease overlapped ours announced it.
                events_if_new=[messages.generated(envelope, result)],
            )
        )
        if not completed:
            raise jobs.LeaseLost(job)

    async def on_exhausted(self, conn: asyncpg.Connection, job: Job, reason: str, retryable: bool) -> None:
        """After the last attempt: `image.generation.failed` for the user, the request to the DLQ for operators,
        and the report of a paid call the last attempt left open (its worker died during it)."""
        envelope = Envelope.model_validate(job.payload["envelope"])
        request = ImageGenerationRequested.model_validate(envelope.payload)
        # The runner has just failed the job under this attempt's lease, in this transaction.
        await self._close_interrupted_calls(conn, envelope, request)
        await self._outbox.write(
            conn,
            [
                messages.failed(envelope, request, reason=reason, retryable=retryable, attempts=job.attempts),
                messages.dead_letter(
                    envelope, reason=reason, attempts=job.attempts, group_id=self._limits.consumer_group
                ),
            ],
        )
        log.warning(
            "image generation failed", image_id=request.image_id, reason=reason, attempts=job.attempts
        )

    async def _begin(
        self, job: Job, envelope: Envelope, request: ImageGenerationRequested
    ) -> ImageGenerated | None:
        """The stored result if there is one; else check the deadline and announce the `generating` stage."""
        if deadline_passed(request.deadline_at, utcnow()):
            stored = await repository.stored_result(self._pool, request.image_id, request.revision)
            if stored is not None:
                return stored
            raise FailJob(
                f"deadline passed after {job.attempts - 1} attempt(s) (deadline {request.deadline_at.isoformat()})"
            )
        return await self._announcements.submit(
            repository.Announcement(
                request.image_id,
                request.revision,
                messages.progress(envelope, request, "generating", job.attempts),
            )
        )

    async def _announce_group(
        self, announcements: Sequence[repository.Announcement]
    ) -> list[ImageGenerated | None]:
        return await repository.stored_results_or_announce(self._pool, announcements, self._outbox.channel)

    async def _commit_group(self, finished: Sequence[repository.FinishedResult]) -> list[bool]:
        return await repository.commit_results(self._pool, finished, self._outbox.channel)

    async def _reemit(
        self, job: Job, envelope: Envelope, request: ImageGenerationRequested, stored: ImageGenerated
    ) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            result = messages.generated_for_request(stored, request)
            await self._outbox.write(conn, [messages.generated(envelope, result)])
            await jobs.complete(conn, job)
        log.info(
            "result re-emitted without a provider call", image_id=request.image_id, revision=request.revision
        )

    def _slot(self, provider: str) -> asyncio.Semaphore:
        if provider not in self._slots:
            self._slots[provider] = asyncio.Semaphore(self._limits.concurrency_of(provider))
        return self._slots[provider]

    def _timeout(self, request: ImageGenerationRequested) -> float:
        left = seconds_left(request.deadline_at, utcnow())
        return max(0.1, min(self._limits.provider_timeout_s, left))

    async def _generate(
        self, job: Job, envelope: Envelope, request: ImageGenerationRequested
    ) -> tuple[ProviderOutput, list[StoredRendition]]:
        """The provider's image and its renditions, stored."""
        try:
            provider = self._providers.get(request.provider)
        except ProviderConfigError as error:
            raise FailJob(failure_reason(error)) from error
        spec = spec_of(request)
        if isinstance(provider, LocalProvider):
            return await self._local_call(provider, spec, envelope, request)
        output = await self._provider_output(job, provider, spec, envelope, request)
        return output, await self._render(output.data, request)

    async def _provider_output(
        self,
        job: Job,
        provider: ImageProvider,
        spec: ImageSpec,
        envelope: Envelope,
        request: ImageGenerationRequested,
    ) -> ProviderOutput:
        """Bytes of a call already paid for (a crash came between call and result), else a new paid call;
        first, the report of any call an earlier attempt left open."""
        async with self._pool.acquire() as conn, conn.transaction():
            # Only the lease's holder closes calls: an attempt overtaken while it waited (its lease ran out)
            # must not close the call that the job's new holder has in flight.
            await jobs.hold_lease(conn, job)
            await self._close_interrupted_calls(conn, envelope, request)
        paid = await repository.unused_paid_output(self._pool, request.image_id, request.revision)
        if paid is not None:  # a crash came between the paid call and the result: not paid again
            log.info("reusing the output of a paid call", call_id=str(paid.call_id))
            return ProviderOutput(
                data=await self._blobs.get(paid.raw_blob_key),
                call_id=paid.call_id,
                called_at=paid.started_at,
                revised_prompt=paid.revised_prompt,
                latency_ms=paid.latency_ms,
                estimated_cost_usd=paid.estimated_cost_usd,
                input_tokens=paid.input_tokens,
                output_tokens=paid.output_tokens,
            )
        return await self._paid_call(job, provider, spec, envelope, request)

    async def _local_call(
        self, provider: LocalProvider, spec: ImageSpec, envelope: Envelope, request: ImageGenerationRequested
    ) -> tuple[ProviderOutput, list[StoredRendition]]:
        """Free to redo, so no paid-call row and no raw bytes kept; rendered and converted in one pool trip."""
        call_id, called_at = uuid.uuid4(), utcnow()
        async with self._slot(request.provider):
            started = time.monotonic()
            try:
                renditions = await provider.generate_and_finish(
                    spec,
                    render_renditions_to_files,
                    request.image_format,
                    rendition_plan(request),
                    str(self._blobs.root),
                    timeout_s=self._timeout(request),
                )
            except ProviderError as error:
                latency_ms = round((time.monotonic() - started) * 1000)
                await self._record_failure(
                    envelope, request, call_id, called_at, latency_ms, error, paid=False
                )
                raise job_error(error) from error
        latency_ms = round((time.monotonic() - started) * 1000)
        metrics.PROVIDER_LATENCY.labels(request.provider, request.model, "succeeded").observe(
            latency_ms / 1000
        )
        output = ProviderOutput(
            data=b"",  # never leaves the worker: only the renditions come back
            call_id=call_id,
            called_at=called_at,
            revised_prompt=None,
            latency_ms=latency_ms,
            estimated_cost_usd=0.0,
            input_tokens=None,
            output_tokens=None,
        )
        return output, renditions

    async def _paid_call(
        self,
        job: Job,
        provider: ImageProvider,
        spec: ImageSpec,
        envelope: Envelope,
        request: ImageGenerationRequested,
    ) -> ProviderOutput:
        """Rate-limited, bounded, recorded before it is made; its bytes are stored as soon as it answers."""
        async with self._slot(request.provider):
            await self._buckets.acquire(
                provider_key(request.provider, request.model), self._limits.rate_of(request.provider)
            )
            # The call's idempotency key is not sent: OpenAI's image API documents none (the SDK takes one
            # only for endpoints that do), and a retry is a new call with a key of its own anyway.
            call = await repository.start_call(
                self._pool,
                job,
                image_id=request.image_id,
                revision=request.revision,
                account_id=envelope.account_id,
                provider=request.provider,
                model=request.model,
                estimated_cost_usd=provider.list_price_usd(spec),
            )
            called_at = utcnow()
            started = time.monotonic()
            try:
                image = await provider.generate(spec, timeout_s=self._timeout(request))
            except ProviderError as error:
                latency_ms = round((time.monotonic() - started) * 1000)
                await self._record_failure(
                    envelope, request, call.call_id, called_at, latency_ms, error, paid=True
                )
                raise job_error(error) from error
        latency_ms = round((time.monotonic() - started) * 1000)
        metrics.PROVIDER_LATENCY.labels(request.provider, request.model, "succeeded").observe(
            latency_ms / 1000
        )
        metrics.PROVIDER_COST.labels(request.provider, request.model).inc(image.usage.estimated_cost_usd)
        # Stored before anything else can fail: the call is paid for and a provider URL would expire.
        raw_key = (await self._blobs.put(image.data, extension="img")).key
        async with self._pool.acquire() as conn, conn.transaction():
            finished = await repository.finish_call(
                conn,
                call.call_id,
                succeeded=True,
                latency_ms=latency_ms,
                estimated_cost_usd=image.usage.estimated_cost_usd,
                input_tokens=image.usage.input_tokens,
                output_tokens=image.usage.output_tokens,
                raw_blob_key=raw_key,
                revised_prompt=image.revised_prompt,
            )
            if not finished:  # closed as interrupted by the runner that took the job over: it was reported
                raise jobs.LeaseLost(job)
            await self._outbox.write(conn, [messages.progress(envelope, request, "storing")])
        return ProviderOutput.of(image, call.call_id, called_at, latency_ms)

    async def _record_failure(
        self,
        envelope: Envelope,
        request: ImageGenerationRequested,
        call_id: uuid.UUID,
        called_at: datetime,
        latency_ms: int,
        error: ProviderError,
        *,
        paid: bool,
    ) -> None:
        """A failed call is data too: its row (if paid) and its `ai.function.called`, committed at once."""
        reason = failure_reason(error)
        metrics.PROVIDER_LATENCY.labels(request.provider, request.model, "failed").observe(latency_ms / 1000)
        event = messages.ai_function_called(
            envelope,
            request,
            call_id=call_id,
            called_at=called_at,
            latency_ms=latency_ms,
            estimated_cost_usd=0.0,
            input_tokens=None,
            output_tokens=None,
            error=reason,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            if paid and not await repository.finish_call(
                conn, call_id, succeeded=False, latency_ms=latency_ms, estimated_cost_usd=0.0, error=reason
            ):
                return  # closed as interrupted by the runner that took the job over: reported already
            await self._outbox.write(conn, [event])

    async def _close_interrupted_calls(
        self, conn: asyncpg.Connection, envelope: Envelope, request: ImageGenerationRequested
    ) -> None:
        """Close the paid calls of this image revision that an earlier attempt left open and report each in
        this transaction: failed, at its estimated cost, since the provider probably billed it."""
        closed = await repository.close_interrupted_calls(
            conn, request.image_id, request.revision, fallback_cost_usd=self._list_price(request)
        )
        await self._outbox.write(
            conn,
            [
                messages.ai_function_called(
                    envelope,
                    request,
                    call_id=call.call_id,
                    called_at=call.started_at,
                    latency_ms=call.open_ms,
                    estimated_cost_usd=call.estimated_cost_usd,
                    input_tokens=None,
                    output_tokens=None,
                    error=INTERRUPTED_CALL,
                )
                for call in closed
            ],
        )
        for call in closed:
            log.warning("paid call interrupted, reported as probably billed", call_id=str(call.call_id))
            metrics.PROVIDER_COST.labels(request.provider, request.model).inc(call.estimated_cost_usd)

    def _list_price(self, request: ImageGenerationRequested) -> float:
        try:
            return self._providers.get(request.provider).list_price_usd(spec_of(request))
        except ProviderConfigError:  # not configured now: only a row priced when its call started has a price
            return 0.0

    async def _render(self, data: bytes, request: ImageGenerationRequested) -> list[StoredRendition]:
        plan: list[RenditionSpec] = rendition_plan(request)
        try:
            return await self._render_pool.run(
                render_renditions_to_files,
                data,
                request.image_format,
                plan,
                str(self._blobs.root),
            )
        except InvalidProviderOutputError as error:
            raise FailJob(failure_reason(error)) from error
        except BrokenProcessPool as error:
            # A render worker died; the paid call's bytes are stored, so the retry renders them without paying.
            raise RetryJob(f"a render worker died: {error}") from error


def spec_of(request: ImageGenerationRequested) -> ImageSpec:
    return ImageSpec(prompt=request.prompt, model=request.model, width=request.width, height=request.height)


def failure_reason(error: ProviderError) -> str:
    """A sentence for the user and the operator: what kind of failure, then the provider's own words."""
    kind = {
        RateLimitedError: "rate limited by the provider",
        ProviderTimeoutError: "timed out",
        ProviderUnavailableError: "provider unavailable",
        ContentPolicyError: "refused by the provider's content policy",
        InvalidProviderOutputError: "the provider returned an unusable image",
        ProviderConfigError: "provider configuration error",
    }.get(type(error), "provider error")
    return f"{kind}: {error.message}"


def job_error(error: ProviderError) -> RetryJob | FailJob:
    if error.retryable:
        return RetryJob(failure_reason(error), retry_after_s=error.retry_after_s)
    return FailJob(failure_reason(error))
