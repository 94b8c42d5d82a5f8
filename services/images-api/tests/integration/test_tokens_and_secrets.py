"""Access tokens that must not work, refresh-token rotation edges, the per-IP login limit, and secrets that
never leave the server (responses and logs)."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import jwt
import orjson
import pytest
from fastapi import FastAPI

from images_api.service import auth
from images_api.settings import ImagesApiSettings
from images_api.testing import PASSWORD, Tenant, app_client, login

URL = "/v1/writer/images/content_images/"


def _claims(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "1",
        "acc": tenant.account_id,
        "role": "owner",
        "typ": "access",
        "iat": now,
        "exp": now + 600,
        **overrides,
    }


def _tampered(token: str, **changes: Any) -> str:
    """The token with its claims changed and its signature kept."""
    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(orjson.dumps({**claims, **changes})).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


async def _assert_401(app: FastAPI, token: str, why: str) -> None:
    async with app_client(app, token) as client:
        for method, url, body in (
            ("GET", URL, None),
            ("POST", "/v1/writer/contents/", {"title": "x"}),
            ("GET", "/v1/sites/", None),
        ):
            response = await client.request(method, url, json=body)
            assert response.status_code == 401, (why, method, url, response.text)
            assert response.json()["success"] is False, why
            assert response.headers["www-authenticate"] == "Bearer", why


async def test_forged_altered_and_misused_tokens_are_401(
    app: FastAPI, tenant: Tenant, other_tenant: Tenant, api_settings: ImagesApiSettings
) -> None:
    secret = api_settings.jwt_secret
    tokens = await login(app, f"viewer@{tenant.account}.test")
    access = tokens["access_token"]
    cases = {
        "alg none": jwt.encode(_claims(tenant), None, algorithm="none"),
        "wrong key": jwt.encode(_claims(tenant), "x" * 48, algorithm="HS256"),
        "HS512 with the right key": jwt.encode(_claims(tenant), secret, algorithm="HS512"),
        "another tenant's account": _tampered(access, acc=other_tenant.account_id),
        "promoted to owner": _tampered(access, role="owner"),
        "expiry pushed": _tampered(access, exp=int(time.time()) + 10**6),
        "refresh token as bearer": tokens["refresh_token"],
        "typ refresh": jwt.encode(_claims(tenant, typ="refresh"), secret, algorithm="HS256"),
        "no typ": jwt.encode(
            {k: v for k, v in _claims(tenant).items() if k != "typ"}, secret, algorithm="HS256"
        ),
        "unknown role": jwt.encode(_claims(tenant, role="admin"), secret, algorithm="HS256"),
        "no account": jwt.encode(
            {k: v for k, v in _claims(tenant).items() if k != "acc"}, secret, algorithm="HS256"
        ),
        "no expiry": jwt.encode(
            {k: v for k, v in _claims(tenant).items() if k != "exp"}, secret, algorithm="HS256"
        ),
        "expired": jwt.encode(_claims(tenant, exp=int(time.time()) - 5), secret, algorithm="HS256"),
    }
    for why, token in cases.items():
        await _assert_401(app, token, why)
    # the untouched token still works (the failures above are the tokens', not the test's)
    async with app_client(app, access) as client:
        assert (await client.get(URL)).status_code == 200


async def test_an_access_token_is_not_a_refresh_token_and_expired_refresh_tokens_die(
    app: FastAPI, tenant: Tenant
) -> None:
    tokens = await login(app, tenant.owner_email)
    async with app_client(app) as client:
        misused = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["access_token"]})
        assert misused.status_code == 401 and misused.json()["success"] is False
        async with app.state.resources.pool.acquire() as conn:
            await conn.execute(
                "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
                auth.token_digest(tokens["refresh_token"]),
            )
        expired = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert expired.status_code == 401 and "expired" in expired.json()["error"]


async def test_logout_with_any_token_of_the_session_ends_the_whole_session(
    app: FastAPI, tenant: Tenant
) -> None:
    first = await login(app, tenant.owner_email)
    async with app_client(app) as client:
        second = (
            await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        ).json()
        other_session = await login(app, tenant.owner_email)
        # logging out with the rotated (already used) token still ends the session it belongs to
        assert (
            await client.post("/v1/auth/logout", json={"refresh_token": first["refresh_token"]})
        ).status_code == 200
        dead = await client.post("/v1/auth/refresh", json={"refresh_token": second["data"]["refresh_token"]})
        assert dead.status_code == 401 and "revoked" in dead.json()["error"]
        alive = await client.post("/v1/auth/refresh", json={"refresh_token": other_session["refresh_token"]})
        assert alive.status_code == 200  # another device's session is its own


async def test_a_role_change_or_deleted_user_takes_effect_at_the_next_refresh(
    app: FastAPI, tenant: Tenant
) -> None:
    editor_email = f"editor@{tenant.account}.test"
    tokens = await login(app, editor_email)
    pool = app.state.resources.pool
    async with pool.acquire() as conn:
        await conn.execute("UPDATE users SET role = 'viewer' WHERE lower(email) = lower($1)", editor_email)
    async with app_client(app) as client:
        refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200 and refreshed.json()["data"]["role"] == "viewer"
        async with app_client(app, refreshed.json()["data"]["access_token"]) as demoted:
            assert (await demoted.post("/v1/writer/contents/", json={"title": "x"})).status_code == 403
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM users WHERE lower(email) = lower($1)", editor_email)
        gone = await client.post(
            "/v1/auth/refresh", json={"refresh_token": refreshed.json()["data"]["refresh_token"]}
        )
        assert gone.status_code == 401 and gone.json()["success"] is False


async def test_failed_logins_are_limited_per_ip_across_emails(
    app: FastAPI, tenant: Tenant, api_settings: ImagesApiSettings, password_checks: list[str]
) -> None:
    checked = password_checks
    ip = f"203.0.113.{uuid.uuid4().int % 250 + 1}-{uuid.uuid4().hex[:6]}"  # this run's own address
    limit = api_settings.login_max_failures_per_ip
    async with app_client(app, ip=ip) as client:
        for n in range(limit):
            body = {"email": f"nobody-{n}-{uuid.uuid4().hex[:6]}@example.test", "password": "guess"}
            assert (await client.post("/v1/auth/login", json=body)).status_code == 401
        right = await client.post("/v1/auth/login", json={"email": tenant.owner_email, "password": PASSWORD})
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0
    assert right.json()["success"] is False
    assert len(checked) == limit
    # another address is not held back by this one's failures
    async with app_client(app, ip=f"{ip}-b") as client:
        fine = await client.post("/v1/auth/login", json={"email": tenant.owner_email, "password": PASSWORD})
    assert fine.status_code == 200


async def test_the_email_limit_ignores_letter_case(app: FastAPI, tenant: Tenant) -> None:
    email = f"editor@{tenant.account}.test"
    async with app_client(app, ip=f"198.51.100.{uuid.uuid4().hex[:6]}") as client:
        for variant in (email.upper(), email.title(), email, email.capitalize(), email.swapcase()):
            response = await client.post("/v1/auth/login", json={"email": variant, "password": "wrong"})
            assert response.status_code == 401
        limited = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert limited.status_code == 429


async def test_site_credentials_and_tokens_never_reach_responses_or_logs(
    app: FastAPI, tenant: Tenant, capfd: pytest.CaptureFixture[str]
) -> None:
    password = f"app-pass-{uuid.uuid4().hex}"
    rotated = f"app-pass-{uuid.uuid4().hex}"
    capfd.readouterr()
    site = await tenant.site(application_password=password)
    webhook_secret = site.pop("webhook_secret")
    responses = [
        str(site),
        (await tenant.owner.get("/v1/sites/")).text,
        (await tenant.viewer.get(f"/v1/sites/{site['id']}/")).text,
        (await tenant.owner.patch(f"/v1/sites/{site['id']}/", json={"application_password": rotated})).text,
        (await tenant.owner.patch(f"/v1/sites/{site['id']}/", json={"base_url": "ftp://x"})).text,
    ]
    tokens = await login(app, tenant.owner_email)
    async with app_client(app) as client:
        bad = await client.post("/v1/auth/login", json={"email": tenant.owner_email, "password": password})
        responses.append(bad.text)
        await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        await client.post(
            "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )  # reuse: logged
        await client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    for text in responses:
        for secret in (password, rotated, webhook_secret):
            assert secret not in text
    logs = "".join(capfd.readouterr())
    assert "refresh token reuse" in logs  # the logs were captured
    for secret in (password, rotated, webhook_secret, tokens["refresh_token"], PASSWORD):
        assert secret not in logs
