"""Login, refresh-token rotation (reuse revokes the family), logout, users."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from images_api.adapters.security import (
    Principal,
    Role,
    hash_password,
    issue_access_token,
    new_refresh_token,
    token_digest,
    verify_password,
)
from images_api.settings import ImagesApiSettings
from writer_images.events import utcnow
from writer_images.http import AppError
from writer_images.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user_id: int
    account_id: int
    role: Role


def unauthorized(message: str) -> AppError:
    return AppError(401, message, headers={"WWW-Authenticate": "Bearer"})


async def _seconds_until_allowed(
    conn: asyncpg.Connection, email: str, ip: str, settings: ImagesApiSettings
) -> int | None:
    """Failed attempts in the window, per email and per IP; None when another attempt is allowed."""
    row = await conn.fetchrow(
        """
        SELECT
          count(*) FILTER (WHERE lower(email) = lower($1)) AS by_email,
          min(attempted_at) FILTER (WHERE lower(email) = lower($1)) AS first_email,
          count(*) FILTER (WHERE ip = $2) AS by_ip,
          min(attempted_at) FILTER (WHERE ip = $2) AS first_ip
        FROM login_attempts
        WHERE NOT succeeded AND attempted_at > now() - make_interval(secs => $3)
          AND (lower(email) = lower($1) OR ip = $2)
        """,
        email,
        ip,
        float(settings.login_window_s),
    )
    now = utcnow()
    window = timedelta(seconds=settings.login_window_s)
    waits = []
    if row["by_email"] >= settings.login_max_failures_per_email:
        waits.append((row["first_email"] + window - now).total_seconds())
    if row["by_ip"] >= settings.login_max_failures_per_ip:
        waits.append((row["first_ip"] + window - now).total_seconds())
    return max(1, int(max(waits)) + 1) if waits else None


async def _issue_pair(
    conn: asyncpg.Connection, principal: Principal, family_id: uuid.UUID, settings: ImagesApiSettings
) -> TokenPair:
    refresh = new_refresh_token()
    await conn.execute(
        """
        INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)
        VALUES ($1, $2, $3, now() + make_interval(secs => $4))
        """,
        principal.user_id,
        family_id,
        token_digest(refresh),
        float(settings.refresh_token_ttl_s),
    )
    access = issue_access_token(principal, settings.jwt_secret, settings.access_token_ttl_s)
    return TokenPair(
        access, refresh, settings.access_token_ttl_s, principal.user_id, principal.account_id, principal.role
    )


async def login(
    pool: asyncpg.Pool, email: str, password: str, ip: str, settings: ImagesApiSettings
) -> TokenPair:
    async with pool.acquire() as conn:
        attempt_id, user = await _admit_attempt(conn, email, ip, settings)
    # argon2 takes tens of milliseconds of CPU: off the event loop, and with no connection held
    ok = await asyncio.to_thread(verify_password, user["password_hash"] if user else None, password)
    if not ok or user is None:
        log.info("login failed", ip=ip)
        raise unauthorized("Invalid email or password")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE login_attempts SET succeeded = true WHERE id = $1", attempt_id)
        principal = Principal(user["id"], user["account_id"], user["role"])
        return await _issue_pair(conn, principal, uuid.uuid4(), settings)


# Advisory-lock classes (the first key of the two-key form), apart from every other lock in the database.
_EMAIL_LOCK = 0x4C47_4E45  # "LGNE"
_IP_LOCK = 0x4C47_4E49  # "LGNI"


async def _admit_attempt(
    conn: asyncpg.Connection, email: str, ip: str, settings: ImagesApiSettings
) -> tuple[int, asyncpg.Record | None]:
    """Record the attempt as failed, before its password is checked, or refuse it (429); returns the
    attempt's id and the user. Checking the count and recording the attempt hold the email's and the
    IP's locks, so concurrent attempts each count the others: at most the limit reach the password check
    in a window. A refused attempt is not recorded (it does not extend the lockout)."""
    async with conn.transaction():
        # always email then IP: every login takes them in the same order, so they cannot deadlock
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext(lower($2)))", _EMAIL_LOCK, email)
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _IP_LOCK, ip)
        wait_s = await _seconds_until_allowed(conn, email, ip, settings)
        if wait_s is not None:
            raise AppError(
                429, "Too many failed login attempts; try again later", headers={"Retry-After": str(wait_s)}
            )
        attempt_id: int = await conn.fetchval(
            "INSERT INTO login_attempts (email, ip, succeeded) VALUES ($1, $2, false) RETURNING id", email, ip
        )
        user = await conn.fetchrow(
            "SELECT id, account_id, role, password_hash FROM users WHERE lower(email) = lower($1)", email
        )
    return attempt_id, user


async def refresh(pool: asyncpg.Pool, token: str, settings: ImagesApiSettings) -> TokenPair:
    async with pool.acquire() as conn:
        async with conn.transaction():
            row = await conn.fetchrow(
                """
                SELECT t.id, t.family_id, t.expires_at, t.used_at, t.revoked_at,
                       u.id AS user_id, u.account_id, u.role
                FROM refresh_tokens t JOIN users u ON u.id = t.user_id
                WHERE t.token_hash = $1 FOR UPDATE OF t
                """,
                token_digest(token),
            )
            if row is None:
                raise unauthorized("Refresh token invalid")
            if row["revoked_at"] is not None:
                raise unauthorized("Refresh token revoked")
            if row["expires_at"] < utcnow():
                raise unauthorized("Refresh token expired")
            if row["used_at"] is None:
                await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE id = $1", row["id"])
                principal = Principal(row["user_id"], row["account_id"], row["role"])
                return await _issue_pair(conn, principal, row["family_id"], settings)
            # A rotated token came back: someone holds a copy. Revoke the whole family (committed).
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
                row["family_id"],
            )
        log.warning("refresh token reuse; family revoked", user_id=row["user_id"])
        raise unauthorized("Refresh token reused; the session has been revoked")


async def logout(pool: asyncpg.Pool, token: str) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            """
            UPDATE refresh_tokens SET revoked_at = now()
            WHERE revoked_at IS NULL
              AND family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)
            """,
            token_digest(token),
        )


async def ensure_account(conn: asyncpg.Connection, name: str) -> int:
    account_id: int = await conn.fetchval(
        """
        WITH ins AS (INSERT INTO accounts (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id)
        SELECT id FROM ins UNION ALL SELECT id FROM accounts WHERE name = $1 LIMIT 1
        """,
        name,
    )
    return account_id


async def create_user(
    conn: asyncpg.Connection, account_name: str, email: str, password: str, role: Role
) -> int:
    """Create the account if needed and a user in it; an existing email is refused."""
    if role not in ("owner", "editor", "viewer"):
        raise ValueError(f"unknown role {role!r}")
    account_id = await ensure_account(conn, account_name)
    exists = await conn.fetchval("SELECT 1 FROM users WHERE lower(email) = lower($1)", email)
    if exists:
        raise AppError(409, f"a user with email {email} already exists")
    password_hash = await asyncio.to_thread(hash_password, password)
    user_id: int = await conn.fetchval(
        "INSERT INTO users (account_id, email, password_hash, role) VALUES ($1, $2, $3, $4) RETURNING id",
        account_id,
        email,
        password_hash,
        role,
    )
    return user_id
