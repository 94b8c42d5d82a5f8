"""Tenant isolation and role rules for EVERY route, walked from the app's route table.

A new route fails `test_every_route_is_classified` until it is placed in one of the tables below, so it
cannot ship without its cross-tenant and viewer checks:

- a route with an id in its path: another tenant's id answers 404 in the envelope and changes nothing;
- a route whose body names ids (`BODY_ID_ROUTES`): another tenant's id in the body answers 404, also
  mixed with the caller's own ids, and changes nothing (the batch publish refuses per item instead);
- an account-scoped route (`ACCOUNT_SCOPED`): no id to probe; the listing tests show it never includes
  another tenant's rows, through any filter;
- every non-GET route needs the editor or the owner role: a viewer gets 403 and nothing changes.

"Nothing changes" is a fingerprint of every row of both tenants, and of every row that points at the
victim's sites, sectors, contents, images or tasks (an intruder's row linked to the victim's data is a
change too).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from images_api.entrypoints.http.deps import current_principal, editor_principal, owner_principal
from images_api.testing import Tenant

Route = tuple[str, str]  # (method, path template)


@dataclass(frozen=True)
class World:
    """One tenant's objects, one of each kind a route can name."""

    site_id: int
    sector_id: int
    content_id: int
    image_id: int  # an in-article slot, not in any task
    task_image_id: int  # the featured slot, in `task_id`
    task_id: str
    publication_id: int
    ready_content_id: int  # publishable now (images generated, nothing in flight)
    title: str

    def path_ids(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "sector_id": self.sector_id,
            "content_id": self.content_id,
            "image_id": self.image_id,
            "task_id": self.task_id,
            "publication_id": self.publication_id,
        }


async def build_world(tenant: Tenant) -> World:
    title = f"Secret plans {uuid.uuid4().hex[:8]}"
    site = await tenant.site()
    sector = await tenant.sector(site["id"])
    content = await tenant.content(title=title, site_id=site["id"], sector_id=sector["id"])
    featured, in_article = content["images"][0]["id"], content["images"][1]["id"]
    started = await tenant.editor.post(
        "/v1/writer/images/generate_images/", json={"ids": [featured], "content_id": content["id"]}
    )
    assert started.status_code == 202, started.text
    await tenant.editor.post(
        "/v1/writer/images/bulk_update/", json={"content_id": content["id"], "status": "generated"}
    )
    published = await tenant.editor.post(
        "/v1/publisher/publish/", json={"content_id": content["id"], "allow_missing_images": True}
    )
    assert published.status_code == 202, published.text
    ready = await tenant.ready_content(site["id"], title=f"{title} (ready)")
    async with tenant.app.state.resources.pool.acquire() as conn:
        await conn.execute(
            """
            INSERT INTO ai_logs (call_id, account_id, task_id, image_id, content_id, function, provider, model,
                                 prompt, size, latency_ms, images, estimated_cost_usd, success, called_at)
            VALUES ($1, $2, $3, $4, $5, 'generate_image', 'local', 'local-v1', $6, '1024x576', 10, 1, 0, true,
                    now())
            """,
            uuid.uuid4(),
            tenant.account_id,
            uuid.UUID(started.json()["data"]["task_id"]),
            featured,
            content["id"],
            title,
        )
    settings = await tenant.owner.put(
        "/v1/system/integrations/image_generation/",
        json={"provider": "local", "model": "local-v1", "max_in_article_images": 1},
    )
    assert settings.status_code == 200, settings.text
    return World(
        site_id=site["id"],
        sector_id=sector["id"],
        content_id=content["id"],
        image_id=in_article,
        task_image_id=featured,
        task_id=started.json()["data"]["task_id"],
        publication_id=published.json()["data"]["publication_id"],
        ready_content_id=ready["id"],
        title=title,
    )


# --- the route tables ---------------------------------------------------------------------------------

# A valid body for each route that takes one, naming the objects of `w` (for the viewer walk, the viewer's
# own; for the tenancy walk, the victim's).
BODIES: dict[Route, Callable[[World], dict[str, Any]]] = {
    ("POST", "/v1/sites/"): lambda w: {
        "name": "n",
        "base_url": "https://x.example.com",
        "username": "u",
        "application_password": "p",
    },
    ("PATCH", "/v1/sites/{site_id}/"): lambda w: {"name": "mine now"},
    ("POST", "/v1/sites/{site_id}/sectors/"): lambda w: {"name": "s"},
    ("PATCH", "/v1/sectors/{sector_id}/"): lambda w: {"name": "s"},
    ("PUT", "/v1/system/integrations/image_generation/"): lambda w: {
        "provider": "local",
        "model": "local-v1",
    },
    ("POST", "/v1/writer/images/generate_images/"): lambda w: {
        "ids": [w.image_id],
        "content_id": w.content_id,
    },
    ("POST", "/v1/writer/images/bulk_update/"): lambda w: {"content_id": w.content_id, "status": "failed"},
    ("POST", "/v1/writer/contents/"): lambda w: {"title": "x", "site_id": w.site_id},
    ("PATCH", "/v1/writer/contents/{content_id}/"): lambda w: {"title": "x"},
    ("POST", "/v1/writer/contents/{content_id}/images/"): lambda w: {"prompt": "x"},
    ("PATCH", "/v1/writer/images/{image_id}/"): lambda w: {"prompt": "x"},
    ("POST", "/v1/publisher/publish/"): lambda w: {"content_id": w.ready_content_id},
    ("POST", "/v1/publisher/publish/batch/"): lambda w: {"content_ids": [w.ready_content_id]},
    ("POST", "/v1/publisher/republish/"): lambda w: {
        "content_id": w.content_id,
        "allow_missing_images": True,
    },
}

# Routes with no id in the path whose body names the tenant's objects.
BODY_ID_ROUTES: set[Route] = {
    ("POST", "/v1/writer/images/generate_images/"),
    ("POST", "/v1/writer/images/bulk_update/"),
    ("POST", "/v1/writer/contents/"),
    ("POST", "/v1/publisher/publish/"),
    ("POST", "/v1/publisher/republish/"),
}
# Refuses another tenant's ids per item (test_batch_publish_refuses_other_tenants_ids_per_item).
PER_ITEM_ROUTES: set[Route] = {("POST", "/v1/publisher/publish/batch/")}
# No id to probe: scoped to the caller's account (the listing tests below).
ACCOUNT_SCOPED: set[Route] = {
    ("GET", "/v1/sites/"),
    ("POST", "/v1/sites/"),
    ("GET", "/v1/system/integrations/image_generation/"),
    ("PUT", "/v1/system/integrations/image_generation/"),
    ("GET", "/v1/writer/images/content_images/"),
    ("GET", "/v1/writer/images/changes"),
    ("GET", "/v1/writer/images/ai_logs/"),
    ("GET", "/v1/publisher/publications/"),
}
# No token: the auth endpoints, and media by signed URL (the signature binds the account).
PUBLIC: set[Route] = {
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/media/{blob_key:path}"),
}
OWNER_ONLY: set[Route] = {
    ("POST", "/v1/sites/"),
    ("PATCH", "/v1/sites/{site_id}/"),
    ("DELETE", "/v1/sites/{site_id}/"),
    ("POST", "/v1/sites/{site_id}/sectors/"),
    ("PATCH", "/v1/sectors/{sector_id}/"),
    ("DELETE", "/v1/sectors/{sector_id}/"),
    ("PUT", "/v1/system/integrations/image_generation/"),
}


@dataclass(frozen=True)
class Probe:
    """A request by the intruder naming the victim's objects (`theirs`), maybe mixed with its own (`mine`)."""

    path_from: str  # "theirs" | "mine" | "none"
    body: Callable[[World, World], dict[str, Any] | None]
    query: dict[str, str] | None = None


# Beyond the default probe (the victim's ids in the path, or the route's body naming the victim's objects):
# the victim's objects mixed into otherwise valid requests about the intruder's own.
EXTRA_PROBES: dict[Route, list[Probe]] = {
    ("POST", "/v1/writer/contents/"): [
        Probe("none", lambda t, m: {"title": "x", "sector_id": t.sector_id}),
        Probe("none", lambda t, m: {"title": "x", "site_id": m.site_id, "sector_id": t.sector_id}),
        Probe("none", lambda t, m: {"title": "x", "site_id": t.site_id, "sector_id": m.sector_id}),
    ],
    ("PATCH", "/v1/writer/contents/{content_id}/"): [
        Probe("mine", lambda t, m: {"site_id": t.site_id, "sector_id": None}),
        Probe("mine", lambda t, m: {"sector_id": t.sector_id}),
    ],
    ("POST", "/v1/writer/images/generate_images/"): [
        Probe("none", lambda t, m: {"ids": [t.image_id]}),
        Probe("none", lambda t, m: {"ids": [t.image_id], "content_id": m.content_id}),
        Probe("none", lambda t, m: {"ids": [m.image_id], "content_id": t.content_id}),
        Probe("none", lambda t, m: {"ids": [m.image_id, t.image_id], "content_id": m.content_id}),
        Probe("none", lambda t, m: {"ids": [m.image_id, t.image_id]}),
        Probe("none", lambda t, m: {"ids": [t.image_id, m.image_id]}),
    ],
    ("POST", "/v1/publisher/publish/"): [
        Probe("none", lambda t, m: {"content_id": t.ready_content_id}, query={"wait": "true"}),
        Probe("none", lambda t, m: {"content_id": t.content_id, "allow_missing_images": True}),
    ],
    ("POST", "/v1/publisher/republish/"): [Probe("none", lambda t, m: {"content_id": t.ready_content_id})],
}


def _flat(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps included routers as such
        if included is not None:
            yield from _flat(included.routes)
        elif isinstance(route, APIRoute) and route.include_in_schema:
            yield route


def api_routes(app: FastAPI) -> list[tuple[Route, APIRoute]]:
    """Every documented (method, path) with its route; the same set as the OpenAPI document's."""
    found = [
        ((method, route.path), route)
        for route in _flat(app.routes)
        for method in sorted(route.methods - {"HEAD"})
    ]
    documented = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    assert {(m, re.sub(r":\w+}", "}", p)) for (m, p), _ in found} == documented
    return found


def path_params(path: str) -> list[str]:
    return re.findall(r"{(\w+)", path)


def fill(path: str, ids: dict[str, Any]) -> str:
    return re.sub(r"{(\w+)(:\w+)?}", lambda m: str(ids[m.group(1)]), path)


def _calls(dependant: Dependant) -> set[Any]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def required_role(route: APIRoute) -> str | None:
    calls = _calls(route.dependant)
    if owner_principal in calls:
        return "owner"
    if editor_principal in calls:
        return "editor"
    if current_principal in calls:
        return "viewer"
    return None


def probes_for(key: Route) -> list[Probe]:
    _method, path = key
    body = BODIES.get(key)
    default = Probe(
        "theirs" if path_params(path) else "none", lambda t, m: body(t) if body is not None else None
    )
    return [default, *EXTRA_PROBES.get(key, [])]


# --- fingerprints ---------------------------------------------------------------------------------------

_FINGERPRINT = """
WITH acc AS (SELECT unnest($1::bigint[]) AS id),
s AS (SELECT id FROM sites WHERE account_id IN (SELECT id FROM acc)),
sec AS (SELECT id FROM sectors WHERE account_id IN (SELECT id FROM acc)),
c AS (SELECT id FROM contents WHERE account_id IN (SELECT id FROM acc)),
i AS (SELECT id FROM images WHERE account_id IN (SELECT id FROM acc)),
t AS (SELECT id FROM tasks WHERE account_id IN (SELECT id FROM acc))
SELECT md5(concat_ws('|',
  (SELECT string_agg(x::text, ',' ORDER BY x.id) FROM sites x
     WHERE account_id IN (SELECT id FROM acc)),
  (SELECT string_agg(x::text, ',' ORDER BY x.id) FROM sectors x
     WHERE account_id IN (SELECT id FROM acc) OR site_id IN (SELECT id FROM s)),
  (SELECT string_agg(x::text, ',' ORDER BY x.id) FROM contents x
     WHERE account_id IN (SELECT id FROM acc) OR site_id IN (SELECT id FROM s)
        OR sector_id IN (SELECT id FROM sec)),
  (SELECT string_agg(x::text, ',' ORDER BY x.id) FROM images x
     WHERE account_id IN (SELECT id FROM acc) OR content_id IN (SELECT id FROM c)),
  (SELECT string_agg(x::text, ',' ORDER BY x.id) FROM tasks x
     WHERE account_id IN (SELECT id FROM acc) OR content_id IN (SELECT id FROM c)),
  (SELECT string_agg(x::text, ',' ORDER BY x.task_id, x.image_id) FROM task_items x
     WHERE task_id IN (SELECT id FROM t) OR image_id IN (SELECT id FROM i)),
  (SELECT string_agg(x::text, ',' ORDER BY x.id) FROM publications x
     WHERE account_id IN (SELECT id FROM acc) OR content_id IN (SELECT id FROM c)
        OR site_id IN (SELECT id FROM s)),
  (SELECT string_agg(x::text, ',' ORDER BY x.account_id) FROM image_settings x
     WHERE account_id IN (SELECT id FROM acc)),
  (SELECT string_agg(x::text, ',' ORDER BY x.id) FROM ai_logs x
     WHERE account_id IN (SELECT id FROM acc))
))
"""


async def fingerprint(app: FastAPI, *tenants: Tenant) -> str:
    async with app.state.resources.pool.acquire() as conn:
        value: str = await conn.fetchval(_FINGERPRINT, [t.account_id for t in tenants])
    return value


async def outbox_size(app: FastAPI) -> int:
    """How many events were ever written to the outbox: its id sequence, which the relay's deletes (they come
    at any moment) leave alone, as the table's largest id is not."""
    async with app.state.resources.pool.acquire() as conn:
        size: int = await conn.fetchval(
            "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('outbox', 'id')::regclass), 0)"
        )
    return size


# --- the walks ------------------------------------------------------------------------------------------


def test_every_route_is_classified(app: FastAPI) -> None:
    """Every route is either public, account-scoped, or names ids that the walks below probe; every write
    needs the editor role at least, and exactly the owner-only ones need the owner."""
    unclassified = []
    for key, route in api_routes(app):
        method, path = key
        role = required_role(route)
        if key in PUBLIC:
            assert role is None, f"{key} is listed as public but needs a token"
            continue
        assert role is not None, f"{key} answers without a token"
        if method != "GET":
            assert role in ("editor", "owner"), f"{key} lets a viewer write"
            assert (role == "owner") == (key in OWNER_ONLY), f"{key} needs {role}"
            has_body = route.body_field is not None
            assert has_body == (key in BODIES), f"{key}: add a valid body to BODIES"
        if not (
            path_params(path) or key in BODY_ID_ROUTES or key in PER_ITEM_ROUTES or key in ACCOUNT_SCOPED
        ):
            unclassified.append(key)
    assert not unclassified, f"classify these routes for the tenancy walk: {unclassified}"


async def test_another_tenants_ids_are_404_on_every_route_and_change_nothing(
    app: FastAPI, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await build_world(tenant)
    mine = await build_world(other_tenant)
    intruder = other_tenant.owner  # the highest role: a refusal cannot be a 403
    probed = []
    for key, _route in api_routes(app):
        method, path = key
        if key in PUBLIC or key in ACCOUNT_SCOPED or key in PER_ITEM_ROUTES:
            continue
        for probe in probes_for(key):
            source = {"theirs": theirs, "mine": mine, "none": theirs}[probe.path_from]
            url = fill(path, source.path_ids())
            body = probe.body(theirs, mine)
            before, events_before = await fingerprint(app, tenant, other_tenant), await outbox_size(app)
            response = await intruder.request(method, url, json=body, params=probe.query)
            where = (method, url, body, response.text[:300])
            assert response.status_code == 404, where
            assert response.json()["success"] is False, where
            assert await fingerprint(app, tenant, other_tenant) == before, ("changed", *where)
            assert await outbox_size(app) == events_before, ("emitted", *where)
            probed.append(key)
    assert len(set(probed)) >= 25  # the walk reached the routes (a sanity check on the tables)


async def test_viewers_get_403_on_every_write_and_change_nothing(app: FastAPI, tenant: Tenant) -> None:
    own = await build_world(tenant)
    walked = 0
    for key, route in api_routes(app):
        method, path = key
        if method == "GET" or key in PUBLIC:
            continue
        body_of = BODIES.get(key)
        url = fill(path, own.path_ids())
        body = body_of(own) if body_of else None
        before = await fingerprint(app, tenant)
        response = await tenant.viewer.request(method, url, json=body)
        assert response.status_code == 403, (method, url, response.text[:300])
        assert response.json()["success"] is False
        if required_role(route) == "owner":
            editor = await tenant.editor.request(method, url, json=body)
            assert editor.status_code == 403, (method, url, editor.text[:300])
        assert await fingerprint(app, tenant) == before, (method, url)
        walked += 1
    assert walked >= 18


async def test_batch_publish_refuses_other_tenants_ids_per_item(
    app: FastAPI, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await build_world(tenant)
    mine = await build_world(other_tenant)
    victim_before = await fingerprint(app, tenant)
    unknown = 2**62
    intruder = other_tenant.editor

    atomic = await intruder.post(
        "/v1/publisher/publish/batch/",
        json={"content_ids": [mine.ready_content_id, theirs.ready_content_id], "atomic": True},
    )
    assert atomic.status_code == 409, atomic.text
    assert atomic.json()["errors"] == {str(theirs.ready_content_id): ["Content not found"]}

    mixed = await intruder.post(
        "/v1/publisher/publish/batch/",
        json={"content_ids": [theirs.ready_content_id, mine.ready_content_id, unknown, theirs.content_id]},
    )
    assert mixed.status_code == 202, mixed.text
    results = {r["content_id"]: r for r in mixed.json()["data"]["results"]}
    assert results[mine.ready_content_id]["accepted"] is True
    for foreign in (theirs.ready_content_id, theirs.content_id):
        # the same answer as an id that exists nowhere: nothing tells the intruder the content exists
        assert {k: v for k, v in results[foreign].items() if k != "content_id"} == {
            k: v for k, v in results[unknown].items() if k != "content_id"
        }
        assert results[foreign]["accepted"] is False
    assert await fingerprint(app, tenant) == victim_before


async def _page(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/writer/images/content_images/", params={"page_size": 100, **params})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_lists_never_show_another_tenants_rows_through_any_filter(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await build_world(tenant)
    mine = await build_world(other_tenant)
    intruder = other_tenant.owner
    their_contents = {theirs.content_id, theirs.ready_content_id}

    # the victim's page first: the cache holds it under the same query string the intruder sends next
    shared_query = {"search": theirs.title}
    assert (await _page(tenant.viewer, **shared_query))["count"] == 2
    for query in (
        shared_query,
        {},
        {"site_id": theirs.site_id},
        {"sector_id": theirs.sector_id},
        {"site_id": theirs.site_id, "sector_id": theirs.sector_id},
        {"search": "Secret plans"},
        {"ordering": "-updated_at"},
    ):
        page = await _page(intruder, **query)
        shown = {g["content_id"] for g in page["results"]}
        assert not shown & their_contents, query
        if query and query != {"ordering": "-updated_at"} and query != {"search": "Secret plans"}:
            assert page["count"] == 0, query
    assert {mine.content_id, mine.ready_content_id} <= {
        g["content_id"] for g in (await _page(intruder))["results"]
    }

    sites = (await intruder.get("/v1/sites/")).json()["data"]
    assert [s["id"] for s in sites] == [mine.site_id]

    for params in ({}, {"content_id": theirs.content_id}, {"task_id": theirs.task_id}, {"provider": "local"}):
        logs = (await intruder.get("/v1/writer/images/ai_logs/", params=params)).json()["data"]
        assert theirs.title not in str(logs), params
        if params and "provider" not in params:
            assert logs["count"] == 0, params

    for params in ({}, {"status": "requested"}):
        queue = (await intruder.get("/v1/publisher/publications/", params=params)).json()["data"]
        ids = {p["publication_id"] for p in queue["results"]}
        assert theirs.publication_id not in ids and mine.publication_id in ids, params

    settings = (await intruder.get("/v1/system/integrations/image_generation/")).json()["data"]["config"]
    assert settings["max_in_article_images"] == 1  # the intruder's own setting (build_world), not shared
    await tenant.owner.put(
        "/v1/system/integrations/image_generation/",
        json={"provider": "local", "model": "local-v1", "max_in_article_images": 2},
    )
    settings = (await intruder.get("/v1/system/integrations/image_generation/")).json()["data"]["config"]
    assert settings["max_in_article_images"] == 1


async def test_a_task_stream_of_another_tenant_is_404_before_streaming(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await build_world(tenant)
    async with other_tenant.viewer.stream("GET", f"/v1/tasks/{theirs.task_id}/events") as response:
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")


def _nullable_body_fields(app: FastAPI, method: str, path: str) -> list[str]:
    """The fields of a route's JSON body that its OpenAPI schema lets be null."""
    operation = app.openapi()["paths"][path][method.lower()]
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return []
    ref = content["schema"].get("$ref", "")
    schema = app.openapi()["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else content["schema"]
    return [
        name
        for name, field in schema.get("properties", {}).items()
        if any(option.get("type") == "null" for option in field.get("anyOf", []))
    ]


async def test_every_body_field_the_schema_marks_nullable_accepts_null(app: FastAPI, tenant: Tenant) -> None:
    """What OpenAPI says about null is what the routes do: a client generated from the schema may send null
    wherever the schema allows it, and must not meet a 422 for it."""
    own = await build_world(tenant)
    probed = []
    for (method, path), _route in api_routes(app):
        if method == "GET" or (method, path) in PUBLIC:
            continue
        documented_path = re.sub(r":\w+}", "}", path)
        for field in _nullable_body_fields(app, method, documented_path):
            body = {**BODIES[(method, path)](own), field: None}
            response = await tenant.owner.request(method, fill(path, own.path_ids()), json=body)
            # Other rules may refuse the call (a state conflict): only the null must not be refused.
            refused = response.json().get("errors") or {} if response.status_code == 422 else {}
            assert response.status_code < 500 and field not in refused, (
                method,
                path,
                field,
                response.text[:300],
            )
            probed.append((method, path, field))
    assert len(probed) >= 5, probed  # the walk reached the PATCH routes' optional fields
