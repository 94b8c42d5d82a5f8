"""The HTTP routes of images-api: thin adapters from HTTP to the use cases in `images_api.service`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, Response
from sse_starlette.sse import EventSourceResponse

from images_api.adapters.grouped_view import ORDERINGS, GroupFilters, PageRequest, content_groups
from images_api.adapters.notifier import account_topic, publication_topic, task_topic, wait_for
from images_api.adapters.page_cache import CachedPage, page_key
from images_api.adapters.security import media_signature_valid
from images_api.entrypoints.http import schemas as s
from images_api.entrypoints.http.deps import (
    ApiState,
    Conn,
    Editor,
    Owner,
    Reader,
    State,
    conditional_bytes,
    conditional_json,
    envelope_bytes,
    etag_of,
)
from images_api.service import ai_logs, auth, contents, generation, image_settings, publishing, sites
from writer_images.blobstore import CONTENT_TYPES, BlobNotFoundError
from writer_images.events import MAX_EVENT_BYTES
from writer_images.http import AppError, Ok, Problem, current_request_id, not_found, ok

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The request body is not JSON"},
    401: {"model": Problem, "description": "Token missing, invalid or expired (the message says which)"},
    403: {"model": Problem, "description": "The role may not do this"},
    404: {"model": Problem, "description": "Not found (also for other tenants' ids)"},
    413: {"model": Problem, "description": "The request body is too large"},
    422: {"model": Problem, "description": "Invalid input, with `errors` per field"},
}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Problem, "description": "Refused in this state"}}
TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {
        "model": Problem,
        "description": f"The content is too large to publish (an event is at most {MAX_EVENT_BYTES:,} bytes)",
    }
}

IdPath = Annotated[int, Path(ge=1, le=2**62)]
NO_NUL = s.NO_NUL
router = APIRouter(responses=ERRORS)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --- auth ---------------------------------------------------------------------------------------


@router.post(
    "/v1/auth/login",
    tags=["auth"],
    response_model=Ok[s.TokensOut],
    responses={429: {"model": Problem, "description": "Too many failed attempts (Retry-After)"}},
)
async def login(body: s.LoginIn, request: Request, state: State) -> Ok[Any]:
    """Access token (15 min) + refresh token. Failed attempts are limited per email and per IP."""
    pair = await auth.login(
        state.resources.pool, body.email, body.password, client_ip(request), state.settings
    )
    return ok(pair.__dict__)


@router.post("/v1/auth/refresh", tags=["auth"], response_model=Ok[s.TokensOut])
async def refresh(body: s.RefreshIn, state: State) -> Ok[Any]:
    """Rotates the refresh token; presenting a rotated token again revokes the whole session family."""
    pair = await auth.refresh(state.resources.pool, body.refresh_token, state.settings)
    return ok(pair.__dict__)


@router.post("/v1/auth/logout", tags=["auth"], response_model=Ok[s.LoggedOut])
async def logout(body: s.RefreshIn, state: State) -> Ok[Any]:
    await auth.logout(state.resources.pool, body.refresh_token)
    return ok({"logged_out": True})


# --- sites and sectors --------------------------------------------------------------------------


@router.get("/v1/sites/", tags=["sites"], response_model=Ok[list[s.SiteOut]])
async def list_sites(who: Reader, conn: Conn) -> Ok[Any]:
    return ok(await sites.list_sites(conn, who.account_id))


@router.post("/v1/sites/", tags=["sites"], status_code=201, response_model=Ok[s.SiteCreatedOut])
async def create_site(body: s.SiteIn, who: Owner, conn: Conn, state: State) -> Ok[Any]:
    """Credentials are sealed at rest and never returned; the webhook secret is shown once."""
    site = await sites.create_site(
        conn,
        state.resources.outbox,
        state.box,
        who.account_id,
        name=body.name,
        base_url=body.base_url,
        username=body.username,
        application_password=body.application_password,
        allow_private=state.settings.allow_private_urls,
    )
    return ok(site)


@router.get("/v1/sites/{site_id}/", tags=["sites"], response_model=Ok[s.SiteOut])
async def get_site(site_id: IdPath, who: Reader, conn: Conn) -> Ok[Any]:
    return ok(sites.site_view(await sites.get_site_row(conn, who.account_id, site_id)))


@router.patch("/v1/sites/{site_id}/", tags=["sites"], response_model=Ok[s.SiteOut])
async def update_site(site_id: IdPath, body: s.SitePatch, who: Owner, conn: Conn, state: State) -> Ok[Any]:
    changes = body.model_dump(exclude_unset=True)
    site = await sites.update_site(
        conn,
        state.resources.outbox,
        state.box,
        who.account_id,
        site_id,
        changes,
        allow_private=state.settings.allow_private_urls,
    )
    return ok(site)


@router.delete("/v1/sites/{site_id}/", tags=["sites"], response_model=Ok[s.Deleted])
async def delete_site(site_id: IdPath, who: Owner, conn: Conn, state: State) -> Ok[Any]:
    await sites.delete_site(conn, state.resources.outbox, who.account_id, site_id)
    return ok({"deleted": True})


@router.get("/v1/sites/{site_id}/sectors/", tags=["sites"], response_model=Ok[list[s.SectorOut]])
async def list_sectors(site_id: IdPath, who: Reader, conn: Conn) -> Ok[Any]:
    return ok(await sites.list_sectors(conn, who.account_id, site_id))


@router.post("/v1/sites/{site_id}/sectors/", tags=["sites"], status_code=201, response_model=Ok[s.SectorOut])
async def create_sector(site_id: IdPath, body: s.SectorIn, who: Owner, conn: Conn) -> Ok[Any]:
    return ok(await sites.create_sector(conn, who.account_id, site_id, body.name))


@router.get("/v1/sectors/{sector_id}/", tags=["sites"], response_model=Ok[s.SectorOut])
async def get_sector(sector_id: IdPath, who: Reader, conn: Conn) -> Ok[Any]:
    return ok(await sites.get_sector(conn, who.account_id, sector_id))


@router.patch("/v1/sectors/{sector_id}/", tags=["sites"], response_model=Ok[s.SectorOut])
async def rename_sector(sector_id: IdPath, body: s.SectorIn, who: Owner, conn: Conn) -> Ok[Any]:
    return ok(await sites.rename_sector(conn, who.account_id, sector_id, body.name))


@router.delete("/v1/sectors/{sector_id}/", tags=["sites"], response_model=Ok[s.Deleted])
async def delete_sector(sector_id: IdPath, who: Owner, conn: Conn) -> Ok[Any]:
    await sites.delete_sector(conn, who.account_id, sector_id)
    return ok({"deleted": True})


# --- image generation settings -------------------------------------------------------------------


@router.get(
    "/v1/system/integrations/image_generation/",
    tags=["settings"],
    response_model=Ok[s.ImageGenerationConfig],
    responses={304: {"description": "Not modified (If-None-Match)"}},
)
async def get_image_settings(request: Request, who: Reader, conn: Conn) -> Response:
    """The seed's shape: `data: {config: {...}}`."""
    settings = await image_settings.load(conn, who.account_id)
    return conditional_json(request, {"config": settings.model_dump()})


@router.put(
    "/v1/system/integrations/image_generation/",
    tags=["settings"],
    response_model=Ok[s.ImageGenerationConfig],
)
async def put_image_settings(body: image_settings.ImageGenerationSettings, who: Owner, conn: Conn) -> Ok[Any]:
    """The body is the config itself; the answer is what a read gives. Unknown provider, model (for that
    provider) or format → 422 with field errors."""
    await image_settings.save(conn, who.account_id, body)
    return ok({"config": body.model_dump()})


# --- the seed's endpoints -----------------------------------------------------------------------


@router.get(
    "/v1/writer/images/content_images/",
    tags=["writer images"],
    response_model=Ok[s.ContentImagesPage],
    responses={304: {"description": "Not modified (If-None-Match)"}},
)
async def content_images(
    request: Request,
    who: Reader,
    state: State,
    site_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    sector_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    search: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="Case-insensitive title search")
    ] = None,
    overall_status: s.OverallStatus | None = None,
    status: s.ContentStatus | None = None,
    sync_status: s.SyncStatus | None = None,
    image_type: s.ImageType | None = None,
    image_status: s.ImageStatus | None = None,
    ordering: Annotated[
        str, Query(pattern="^-?(content_title|overall_status|updated_at)$")
    ] = "content_title",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int | None, Query(ge=1, le=100)] = None,
    cursor: Annotated[
        str | None, Query(max_length=500, pattern=NO_NUL, description="next_cursor of the previous page")
    ] = None,
) -> Response:
    """The seed's grouped view, filtered, sorted and paginated server-side (page or keyset cursor).
    Conditional: send If-None-Match with the last ETag to get 304 while nothing changed."""
    assert ordering in ORDERINGS
    filters = GroupFilters(
        site_id, sector_id, search or None, overall_status, status, sync_status, image_type, image_status
    )
    page_request = PageRequest(ordering, page, page_size or state.settings.default_page_size, cursor)
    now = time.time()
    key = page_key(request.scope.get("query_string", b""), now, state.settings.media_url_ttl_s)
    cache = state.page_cache
    use_cache = cache.enabled and state.notifier.listening
    cached = cache.get(who.account_id, key) if use_cache else None
    if cached is None:
        generation = cache.generation(who.account_id)
        async with state.resources.pool.acquire() as conn:
            data = await content_groups(conn, who.account_id, filters, page_request, state.signer, now)
        data_bytes = orjson.dumps(data)
        cached = CachedPage(data_bytes, etag_of(data_bytes))
        if use_cache:
            cache.put(who.account_id, key, cached, generation)
    return conditional_bytes(request, cached.data, cached.etag)


@router.post(
    "/v1/writer/images/generate_images/",
    tags=["writer images"],
    status_code=202,
    response_model=Ok[s.GenerateOut],
    responses=CONFLICT,
)
async def generate_images(body: s.GenerateIn, who: Editor, conn: Conn, state: State) -> Ok[Any]:
    """One transaction: task, task items and one `image.generation.requested` per image. `content_id` is
    optional (default: the images' own content; 422 if they belong to several). 404 for ids that are not
    this content's; 409 for images already queued or generating."""
    result = await generation.request_generation(
        conn,
        state.resources.outbox,
        who.account_id,
        body.content_id,
        body.ids,
        sizes=state.settings.model_sizes(),
        timeout_s=state.settings.generation_timeout_s,
        correlation_id=current_request_id(),
    )
    return ok(result)


@router.get(
    "/v1/writer/images/changes",
    tags=["writer images"],
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "ready, then changed"}},
)
async def grouped_view_changes(who: Reader, state: State) -> EventSourceResponse:
    """Server-sent events for a page that shows the grouped view: `ready` once listening (a client that
    reconnects reloads then: it may have missed changes), then `changed` when any of the account's contents
    or images changed (generation progress, a publication's result, a status that came back from WordPress),
    so that the page reloads what it shows. A burst of changes is one event per `WI_CHANGES_COALESCE_S`.
    Woken by Postgres NOTIFY, so any API instance works."""
    coalesce_s = state.settings.changes_coalesce_s

    async def stream() -> AsyncIterator[dict[str, str]]:
        with state.notifier.subscribe(account_topic(who.account_id)) as wake:
            yield {"event": "ready", "data": "{}"}
            while True:
                if await wait_for(wake, 15.0):
                    yield {"event": "changed", "data": "{}"}
                    await asyncio.sleep(coalesce_s)

    return EventSourceResponse(stream(), ping=10)


@router.post("/v1/writer/images/bulk_update/", tags=["writer images"], response_model=Ok[s.BulkUpdateOut])
async def bulk_update(body: s.BulkUpdateIn, who: Editor, conn: Conn) -> Ok[Any]:
    """Sets every image of the content to pending, generated or failed (the seed's status modal)."""
    count = await generation.bulk_update_status(conn, who.account_id, body.content_id, body.status)
    return ok({"updated_count": count})


@router.get("/v1/writer/images/ai_logs/", tags=["writer images"], response_model=Ok[s.AiLogsPage])
async def list_ai_logs(
    who: Reader,
    conn: Conn,
    content_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    task_id: uuid.UUID | None = None,
    provider: Annotated[str | None, Query(max_length=50, pattern=NO_NUL)] = None,
    success: bool | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 25,
) -> Ok[Any]:
    return ok(
        await ai_logs.list_logs(
            conn,
            who.account_id,
            content_id=content_id,
            task_id=task_id,
            provider=provider,
            success=success,
            page=page,
            page_size=page_size,
        )
    )


# --- content and images -------------------------------------------------------------------------


@router.post("/v1/writer/contents/", tags=["content"], status_code=201, response_model=Ok[s.ContentOut])
async def create_content(body: s.ContentIn, who: Editor, conn: Conn, state: State) -> Ok[Any]:
    """Creates the content with one featured slot (prompt from the title) and N in-article slots
    (prompts from the H2 headings in order; N = settings `max_in_article_images`)."""
    content = await contents.create_content(
        conn,
        who.account_id,
        title=body.title,
        html=body.html,
        status=body.status,
        site_id=body.site_id,
        sector_id=body.sector_id,
        publish_at=body.publish_at,
        signer=state.signer,
    )
    return ok(content)


@router.get("/v1/writer/contents/{content_id}/", tags=["content"], response_model=Ok[s.ContentOut])
async def get_content(content_id: IdPath, who: Reader, conn: Conn, state: State) -> Ok[Any]:
    return ok(await contents.content_detail(conn, who.account_id, content_id, state.signer))


@router.patch(
    "/v1/writer/contents/{content_id}/", tags=["content"], response_model=Ok[s.ContentOut], responses=CONFLICT
)
async def update_content(
    content_id: IdPath, body: s.ContentPatch, who: Editor, conn: Conn, state: State
) -> Ok[Any]:
    """A new `site_id` drops the link to the old site's post (external id and URL, sync and WordPress
    status, publication key): the content is publishable on the new site. 409 while a publication of
    the content is in flight."""
    changes = body.model_dump(exclude_unset=True)
    return ok(await contents.update_content(conn, who.account_id, content_id, changes, state.signer))


@router.delete("/v1/writer/contents/{content_id}/", tags=["content"], response_model=Ok[s.Deleted])
async def delete_content(content_id: IdPath, who: Editor, conn: Conn) -> Ok[Any]:
    await contents.delete_content(conn, who.account_id, content_id)
    return ok({"deleted": True})


@router.get(
    "/v1/writer/contents/{content_id}/publications/",
    tags=["publisher"],
    response_model=Ok[list[s.PublicationOut]],
)
async def list_publications(content_id: IdPath, who: Reader, conn: Conn) -> Ok[Any]:
    """The history of publish attempts of one content."""
    return ok(await publishing.list_publications(conn, who.account_id, content_id))


@router.post(
    "/v1/writer/contents/{content_id}/images/",
    tags=["content"],
    status_code=201,
    response_model=Ok[s.ImageOut],
)
async def add_image(content_id: IdPath, body: s.NewImageIn, who: Editor, conn: Conn, state: State) -> Ok[Any]:
    return ok(
        await contents.add_in_article_image(conn, who.account_id, content_id, body.prompt, state.signer)
    )


@router.get("/v1/writer/images/{image_id}/", tags=["content"], response_model=Ok[s.ImageOut])
async def get_image(image_id: IdPath, who: Reader, conn: Conn, state: State) -> Ok[Any]:
    row = await contents.get_image_row(conn, who.account_id, image_id)
    return ok(contents.image_detail(row, who.account_id, state.signer, time.time()))


@router.patch("/v1/writer/images/{image_id}/", tags=["content"], response_model=Ok[s.ImageOut])
async def update_image(
    image_id: IdPath, body: s.ImagePatch, who: Editor, conn: Conn, state: State
) -> Ok[Any]:
    """A new prompt bumps the image's revision and marks it for regeneration (status pending)."""
    changes = body.model_dump(exclude_unset=True)
    return ok(await contents.update_image(conn, who.account_id, image_id, changes, state.signer))


@router.delete(
    "/v1/writer/images/{image_id}/", tags=["content"], response_model=Ok[s.Deleted], responses=CONFLICT
)
async def delete_image(image_id: IdPath, who: Editor, conn: Conn) -> Ok[Any]:
    """An in-article slot. 409 for the featured slot, and for an image queued or generating (wait for
    it, or set the content's image status with bulk_update, then delete it)."""
    await contents.delete_image(conn, who.account_id, image_id)
    return ok({"deleted": True})


@router.post(
    "/v1/writer/images/{image_id}/regenerate/",
    tags=["generation"],
    status_code=202,
    response_model=Ok[s.GenerateOut],
    responses=CONFLICT,
)
async def regenerate_image(image_id: IdPath, who: Editor, conn: Conn, state: State) -> Ok[Any]:
    row = await contents.get_image_row(conn, who.account_id, image_id)
    result = await generation.request_generation(
        conn,
        state.resources.outbox,
        who.account_id,
        row["content_id"],
        [image_id],
        sizes=state.settings.model_sizes(),
        timeout_s=state.settings.generation_timeout_s,
        correlation_id=current_request_id(),
    )
    return ok(result)


# --- tasks --------------------------------------------------------------------------------------


@router.get("/v1/tasks/{task_id}/", tags=["generation"], response_model=Ok[s.TaskOut])
async def get_task(task_id: uuid.UUID, who: Reader, conn: Conn) -> Ok[Any]:
    """State and per-image progress of a generation task."""
    return ok(await generation.task_view(conn, who.account_id, task_id))


@router.get(
    "/v1/tasks/{task_id}/events",
    tags=["generation"],
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "snapshot, progress, image_done, task_done",
        }
    },
)
async def task_events(task_id: uuid.UUID, who: Reader, state: State) -> EventSourceResponse:
    """Server-sent events: `snapshot` on connect (the current state), then `progress` and `image_done`
    per item change and `task_done` at the end. Woken by Postgres NOTIFY, so any API instance works."""
    pool = state.resources.pool
    async with pool.acquire() as conn:
        await generation.task_view(conn, who.account_id, task_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[dict[str, str]]:
        seen: dict[int, tuple[str, int]] = {}
        first = True
        with state.notifier.subscribe(task_topic(task_id)) as wake:
            while True:
                async with pool.acquire() as conn:
                    view = await generation.task_view(conn, who.account_id, task_id)
                if first:
                    yield {"event": "snapshot", "data": orjson.dumps(view).decode()}
                    first = False
                for item in view["items"]:
                    key = (item["state"], item["percent"])
                    if seen.get(item["image_id"]) == key:
                        continue
                    seen[item["image_id"]] = key
                    done = item["state"] in ("generated", "failed", "superseded")
                    yield {"event": "image_done" if done else "progress", "data": orjson.dumps(item).decode()}
                if view["state"] != "running":
                    yield {"event": "task_done", "data": orjson.dumps(view).decode()}
                    return
                await wait_for(wake, 15.0)

    return EventSourceResponse(stream(), ping=10)


# --- publishing ---------------------------------------------------------------------------------


@router.post(
    "/v1/publisher/publish/",
    tags=["publisher"],
    status_code=202,
    response_model=Ok[s.PublishRequestedOut | s.PublishedOut],
    responses={
        **CONFLICT,
        **TOO_LARGE,
        200: {"model": Ok[s.PublishedOut], "description": "With ?wait=true: WordPress answered"},
        502: {"model": Problem, "description": "With ?wait=true: publishing failed (reason)"},
    },
)
async def publish(
    body: s.PublishIn,
    who: Editor,
    state: State,
    wait: Annotated[
        bool, Query(description="Wait (bounded) for WordPress and return the seed's shape")
    ] = False,
) -> Response:
    """The seed's rule is enforced (409 with the reason); images must be generated unless
    `allow_missing_images`; 413 when the content is too large to publish. 202 with the publication id, or
    the result with `?wait=true`."""
    # no connection is held while waiting: a wait is long, the pool is small
    async with state.resources.pool.acquire() as conn:
        requested = await publishing.request_publication(
            conn,
            state.resources.outbox,
            who.account_id,
            body.content_id,
            "publish",
            allow_missing_images=body.allow_missing_images,
            publish_at=body.publish_at,
            timeout_s=state.settings.publish_timeout_s,
            correlation_id=current_request_id(),
        )
    if wait:
        return await _wait_for_publication(state, who.account_id, requested)
    return Response(envelope_bytes(requested), status_code=202, media_type="application/json")


async def _wait_for_publication(state: ApiState, account_id: int, requested: dict[str, Any]) -> Response:
    publication_id = requested["publication_id"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.settings.publish_wait_s
    with state.notifier.subscribe(publication_topic(account_id, publication_id)) as wake:
        while True:
            async with state.resources.pool.acquire() as conn:
                view = await publishing.publication_view(conn, account_id, publication_id)
            if view["status"] == "published":
                result = {k: view[k] for k in ("content_id", "external_id", "external_url", "sync_status")}
                return Response(envelope_bytes(result), media_type="application/json")
            if view["status"] == "failed":
                raise AppError(
                    502, f"Publishing failed: {view['reason']}", errors={"content_id": [view["reason"]]}
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Response(envelope_bytes(requested), status_code=202, media_type="application/json")
            await wait_for(wake, min(remaining, 2.0))


@router.post(
    "/v1/publisher/publish/batch/",
    tags=["publisher"],
    status_code=202,
    response_model=Ok[s.BatchOut],
    responses=CONFLICT,
)
async def publish_batch(body: s.PublishBatchIn, who: Editor, conn: Conn, state: State) -> Ok[Any]:
    """Each content accepted or refused with its reason (partial success); the accepted ones are
    requested in one transaction. With `atomic`, one refusal requests none (409, reasons by content id)."""
    result = await publishing.request_batch(
        conn,
        state.resources.outbox,
        who.account_id,
        body.content_ids,
        allow_missing_images=body.allow_missing_images,
        publish_at=body.publish_at,
        atomic=body.atomic,
        timeout_s=state.settings.publish_timeout_s,
        correlation_id=current_request_id(),
    )
    return ok(result)


@router.post(
    "/v1/publisher/republish/",
    tags=["publisher"],
    status_code=202,
    response_model=Ok[s.PublishRequestedOut],
    responses={**CONFLICT, **TOO_LARGE},
)
async def republish(body: s.RepublishIn, who: Editor, conn: Conn, state: State) -> Ok[Any]:
    """Update the existing WordPress post after an edit (a separate, explicit action). 409 with the reason
    when it may not be republished; 413 when the content is too large to publish."""
    result = await publishing.request_publication(
        conn,
        state.resources.outbox,
        who.account_id,
        body.content_id,
        "republish",
        allow_missing_images=body.allow_missing_images,
        publish_at=None,
        timeout_s=state.settings.publish_timeout_s,
        correlation_id=current_request_id(),
    )
    return ok(result)


@router.get("/v1/publisher/publications/", tags=["publisher"], response_model=Ok[s.PublicationQueuePage])
async def publication_queue(
    who: Reader,
    conn: Conn,
    status: Literal["requested", "published", "failed"] | None = None,
    scheduled_from: Annotated[
        s.Moment | None, Query(description="Scheduled posts going live at or after this time")
    ] = None,
    scheduled_to: Annotated[s.Moment | None, Query(description="… and before this time")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 25,
) -> Ok[Any]:
    """The publishing queue: every publication of the account, newest first (`status=requested` for what
    is in flight, `failed` for what needs attention); with a schedule window, the scheduled posts in it by
    the time they go live (the page's calendar). The WebSocket `/v1/publisher/publications/live` pushes each
    change of these rows as it happens (see the images-api README)."""
    if scheduled_from is not None and scheduled_to is not None and scheduled_to <= scheduled_from:
        raise AppError(
            422, "Invalid schedule window", errors={"scheduled_to": ["must be after scheduled_from"]}
        )
    filters = publishing.QueueFilters(status, scheduled_from, scheduled_to)
    return ok(
        await publishing.publication_queue(conn, who.account_id, filters, page=page, page_size=page_size)
    )


@router.get(
    "/v1/publisher/publications/{publication_id}/", tags=["publisher"], response_model=Ok[s.PublicationOut]
)
async def get_publication(publication_id: IdPath, who: Reader, conn: Conn) -> Ok[Any]:
    return ok(await publishing.publication_view(conn, who.account_id, publication_id))


# --- media --------------------------------------------------------------------------------------

media_router = APIRouter()


@media_router.get(
    "/v1/media/{blob_key:path}",
    tags=["media"],
    response_class=FileResponse,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}},
        403: {"model": Problem, "description": "Signature invalid or expired"},
        404: {"model": Problem, "description": "No such blob"},
        422: {"model": Problem, "description": "Invalid input"},
    },
)
async def media(
    blob_key: str,
    state: State,
    acc: Annotated[int, Query(ge=1, le=2**62)],
    exp: Annotated[int, Query(ge=0, le=2**62)],
    sig: Annotated[str, Query(max_length=64, pattern="^[0-9a-f]*$", description="Hex digest")],
) -> Response:
    """A blob by its signed URL (as handed out in `image_url`): the signature binds the account, the
    key and the expiry, and is only issued for the tenant's own images."""
    if not media_signature_valid(state.settings.jwt_secret, acc, blob_key, exp, sig, time.time()):
        raise AppError(403, "Media link invalid or expired")
    extension = blob_key.rsplit(".", 1)[-1].lower()
    if extension not in CONTENT_TYPES:
        raise not_found("Media")
    try:
        path = state.resources.blobs.path_of(blob_key)
    except BlobNotFoundError:
        raise not_found("Media") from None
    if not path.is_file():
        raise not_found("Media")
    max_age = max(0, min(exp - int(time.time()), 3600))
    return FileResponse(
        path,
        media_type=CONTENT_TYPES[extension],
        headers={"Cache-Control": f"private, max-age={max_age}, immutable"},
    )
